"""The mail API handler: validation, authorization, publishing and the paginated mailbox."""

from __future__ import annotations

import base64
import json
from typing import Any

import mailer
import pytest
from mailer.api import MailApi
from mailer.message import EVENT_VERSION
from mailer.validation import MESSAGE_ID, encode_cursor

from tests.recording import Recording
from tests.services.mailer.support import MailEnv, claims_event

SEND = "POST /mail/messages"
LIST = "GET /mail/messages"
VALID = {"recipients": ["user_bob"], "subject": "Hello", "body": "Hi Bob"}


@pytest.fixture(autouse=True)
def people(mail_env: MailEnv) -> None:
    """The directory as Clerk's webhooks leave it: Alice, Bob and Carol share a project; Dave and
    Eve are in another one; Mallory is in none."""
    mail_env.add_user("user_alice", "alice@example.org", ("p_demo",), name="Alice Liddell")
    mail_env.add_user("user_bob", "bob@example.org", ("p_demo", "p_other"))
    mail_env.add_user("user_carol", "carol@example.org", ("p_demo",))
    mail_env.add_user("user_dave", "dave@example.org", ("p_other",))
    mail_env.add_user("user_eve", "eve@example.org", ("p_other",))
    mail_env.add_user("user_mallory", "mallory@example.org", ())


def call(api: MailApi, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = api.handle(event)
    assert response["headers"]["content-type"] == "application/json"
    return response["statusCode"], json.loads(response["body"])


def problems(body: dict[str, Any]) -> dict[str, str]:
    return {p["field"]: p["problem"] for p in body["problems"]}


def test_send_publishes_the_event_and_answers_202(mail_env: MailEnv) -> None:
    status, body = call(mail_env.api(), claims_event(SEND, body=VALID, email="Alice@Example.org"))

    assert status == 202 and body["status"] == "queued"
    [queued] = mail_env.sqs.receive_message(QueueUrl=mail_env.resources.queue_url, WaitTimeSeconds=1)[
        "Messages"
    ]
    event = json.loads(queued["Body"])
    assert event["version"] == EVENT_VERSION
    assert event["message_id"] == body["id"] and event["created_at"] == body["created_at"]
    # Reply-To and the name come from the directory, not from the token's `email` claim.
    assert (event["sender_id"], event["sender_email"], event["sender_name"]) == (
        "user_alice",
        "alice@example.org",
        "Alice Liddell",
    )
    assert (event["recipients"], event["subject"], event["body"]) == (
        [{"user_id": "user_bob", "email": "bob@example.org"}],
        "Hello",
        "Hi Bob",
    )


def test_base64_encoded_bodies_are_decoded(mail_env: MailEnv) -> None:
    event = claims_event(SEND, body=base64.b64encode(json.dumps(VALID).encode()).decode())
    event["isBase64Encoded"] = True
    assert call(mail_env.api(), event)[0] == 202

    event["body"] = "%%% not base64 %%%"
    status, body = call(mail_env.api(), event)
    assert status == 400 and "base64" in problems(body)[""]


@pytest.mark.parametrize(
    ("payload", "field", "reason"),
    [
        (None, "", "JSON body"),
        ("{not json", "", "not valid JSON"),
        ("[1, 2]", "", "JSON object"),
        ({**VALID, "recipients": ["bob@example.org"]}, "recipients[0]", "not an e-mail address"),
        ({**VALID, "recipients": ["Bob <bob@example.org>"]}, "recipients[0]", "not an e-mail address"),
        ({**VALID, "recipients": ["user bob"]}, "recipients[0]", "not a user id"),
        ({**VALID, "recipients": ["u" * 256]}, "recipients[0]", "not a user id"),
        ({**VALID, "recipients": ["user_bob", 7]}, "recipients[1]", "must be a string"),
        ({**VALID, "recipients": []}, "recipients", "at least one"),
        ({**VALID, "recipients": "user_bob"}, "recipients", "list of user ids"),
        ({**VALID, "recipients": [f"user_{i}" for i in range(51)]}, "recipients", "at most 50"),
        ({"subject": "s", "body": "b"}, "recipients", "required"),
        ({**VALID, "subject": "x" * 201}, "subject", "at most 200 characters, got 201"),
        ({**VALID, "subject": "   "}, "subject", "must not be empty"),
        ({**VALID, "subject": "Hi\r\nBcc: everyone@example.org"}, "subject", "line breaks"),
        ({**VALID, "subject": 42}, "subject", "must be a string"),
        ({"recipients": ["user_bob"], "body": "b"}, "subject", "required"),
        ({**VALID, "body": "x" * 10_001}, "body", "at most 10000 characters, got 10001"),
        ({**VALID, "body": "nul\x00byte"}, "body", "control characters"),
        ({**VALID, "body": "lone \ud800 surrogate"}, "body", "unpaired surrogates"),
        ({"recipients": ["user_bob"], "subject": "s"}, "body", "required"),
        ({**VALID, "cc": ["eve@example.org"]}, "cc", "unexpected field"),
    ],
)
def test_invalid_requests_get_400_saying_what_is_wrong(
    mail_env: MailEnv, payload: Any, field: str, reason: str
) -> None:
    status, body = call(mail_env.api(), claims_event(SEND, body=payload))

    assert status == 400 and body["message"] == "invalid request"
    assert reason in problems(body)[field]
    assert mail_env.queue_depth(mail_env.resources.queue_url) == 0


def test_every_problem_is_reported_at_once(mail_env: MailEnv) -> None:
    status, body = call(
        mail_env.api(),
        claims_event(SEND, body={"recipients": ["no@pe", "user_bob"], "subject": "", "body": 1}),
    )
    assert status == 400 and set(problems(body)) == {"recipients[0]", "subject", "body"}


def test_recipient_limit_follows_max_recipients(mail_env: MailEnv) -> None:
    api = mail_env.api(MAX_RECIPIENTS=2)
    three = {**VALID, "recipients": ["user_bob", "user_carol", "user_alice"]}
    status, body = call(api, claims_event(SEND, body=three))
    assert status == 400 and problems(body)["recipients"] == "at most 2 recipients are allowed, got 3"
    # Duplicates are one recipient.
    two = {**VALID, "recipients": ["user_bob", "user_bob"]}
    assert call(api, claims_event(SEND, body=two))[0] == 202


@pytest.mark.parametrize("route", [SEND, LIST])
@pytest.mark.parametrize("sub", [None, "", "   ", "u" * 256])
def test_missing_caller_claims_get_401(mail_env: MailEnv, route: str, sub: str | None) -> None:
    status, body = call(mail_env.api(), claims_event(route, sub=sub, body=VALID))
    assert (status, body) == (401, {"message": "Unauthorized"})


def test_no_authorizer_context_at_all_gets_401(mail_env: MailEnv) -> None:
    event = claims_event(SEND, body=VALID)
    del event["requestContext"]["authorizer"]
    assert call(mail_env.api(), event) == (401, {"message": "Unauthorized"})
    assert mail_env.queue_depth(mail_env.resources.queue_url) == 0


def test_unknown_routes_get_404(mail_env: MailEnv) -> None:
    assert call(mail_env.api(), claims_event("DELETE /mail/messages"))[0] == 404


def test_publish_failure_is_a_503_not_a_lost_message(mail_env: MailEnv) -> None:
    class DownSqs:
        def send_message(self, **kwargs: Any) -> Any:
            raise ConnectionError("queue unreachable")

    status, body = call(mail_env.api(sqs=DownSqs()), claims_event(SEND, body=VALID))
    assert status == 503 and "try again" in body["message"]


def list_page(api: MailApi, user: str, email: str | None = None, **query: str) -> tuple[int, dict[str, Any]]:
    claims = {"email": email} if email else {}
    return call(api, claims_event(LIST, sub=user, query=query or None, **claims))


def test_a_token_claiming_someone_elses_address_reads_none_of_their_mail(mail_env: MailEnv) -> None:
    """The attack: Mallory's token carries `email` = Bob's address (an identity provider that lets
    users set an unverified address, a token template mistake). Bob's inbox is keyed by his user
    id, so she sees nothing of his, and her messages' Reply-To is her own directory address."""
    api = mail_env.api()
    assert call(api, claims_event(SEND, sub="user_alice", body=VALID))[0] == 202
    mail_env.worker().handle(
        {
            "Records": [
                {"messageId": m["MessageId"], "body": m["Body"]}
                for m in mail_env.sqs.receive_message(
                    QueueUrl=mail_env.resources.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                )["Messages"]
            ]
        }
    )
    assert [m["folders"] for m in list_page(api, "user_bob")[1]["messages"]] == [["received"]]

    status, body = list_page(api, "user_mallory", "bob@example.org")
    assert (status, body["messages"]) == (200, [])

    mail_env.add_user("user_mallory", "mallory@example.org", ("p_demo",))
    call(api, claims_event(SEND, sub="user_mallory", body=VALID, email="bob@example.org"))
    [event] = queued_events(mail_env)
    assert event["sender_email"] == "mallory@example.org"


def test_mailbox_lists_sent_and_received_newest_first_in_pages(mail_env: MailEnv) -> None:
    store = mail_env.store()
    stored = []
    # Alice and Bob write to each other; Alice also writes to herself. One second apart, oldest first.
    plan = [
        ("u_alice", "alice@example.org", ("bob@example.org",)),
        ("u_bob", "bob@example.org", ("alice@example.org",)),
        ("u_alice", "alice@example.org", ("alice@example.org", "bob@example.org")),
        ("u_bob", "bob@example.org", ("alice@example.org", "carol@example.org")),
        ("u_alice", "alice@example.org", ("carol@example.org",)),
    ]
    for second, (sender, email, recipients) in enumerate(plan):
        message = mail_env.message(
            sender=sender, recipients=recipients, sender_email=email, now=1_700_000_000 + second
        )
        assert store.save(message)
        stored.append(message)
    newest_first = [m.message_id for m in reversed(stored)]
    api = mail_env.api()

    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        status, body = list_page(api, "u_alice", **query)
        assert status == 200 and len(body["messages"]) <= 2
        seen.extend(body["messages"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert pages == 3
    assert [m["id"] for m in seen] == newest_first
    assert [m["folders"] for m in seen] == [
        ["sent"],
        ["received"],
        ["received", "sent"],
        ["received"],
        ["sent"],
    ]
    assert seen[1]["from"] == {"user_id": "u_bob", "name": None, "email": "bob@example.org"}
    assert seen[2]["to"] == ["u_alice", "u_bob"]

    status, body = list_page(api, "u_bob")
    assert [m["id"] for m in body["messages"]] == [m.message_id for m in reversed(stored[:4])]
    # Carol never sent anything but received two messages; an `email` claim changes nothing.
    status, body = list_page(api, "u_carol", "alice@example.org")
    assert [m["id"] for m in body["messages"]] == [stored[4].message_id, stored[3].message_id]
    assert body["next_cursor"] is None


def test_a_full_last_page_has_no_next_cursor(mail_env: MailEnv) -> None:
    store = mail_env.store()
    ids = []
    for offset in range(4):
        message = mail_env.message(now=1_700_000_000 + offset)
        store.save(message)
        ids.append(message.message_id)
    api = mail_env.api()
    first = list_page(api, "user_alice", limit="2")[1]
    assert first["next_cursor"] is not None
    last = list_page(api, "user_alice", limit="2", cursor=first["next_cursor"])[1]
    assert [m["id"] for m in first["messages"] + last["messages"]] == ids[::-1]
    assert last["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"cursor": "garbage"}, "cursor"),
        ({"cursor": encode_cursor("USER#someone-else")}, "cursor"),
        ({"cursor": ""}, "cursor"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "²"}, "limit"),
        ({"page": "2"}, "page"),
    ],
)
def test_bad_list_parameters_get_400(mail_env: MailEnv, query: dict[str, str], field: str) -> None:
    status, body = list_page(mail_env.api(), "user_alice", **query)
    assert status == 400 and field in problems(body)


def keyed(key: str | None, sub: str = "user_alice", payload: Any = VALID) -> dict[str, Any]:
    event = claims_event(SEND, sub=sub, body=payload)
    if key is not None:
        event["headers"]["idempotency-key"] = key
    return event


def queued_events(mail_env: MailEnv) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while messages := mail_env.sqs.receive_message(
        QueueUrl=mail_env.resources.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
    ).get("Messages"):
        found += [json.loads(m["Body"]) for m in messages]
    return found


def test_a_retry_with_the_same_idempotency_key_publishes_the_same_message_id(mail_env: MailEnv) -> None:
    api = mail_env.api()
    first_status, first = call(api, keyed("order-42/attempt"))
    retry_status, retry = call(api, keyed("order-42/attempt"))

    assert first_status == retry_status == 202
    assert first["id"] == retry["id"] and MESSAGE_ID.fullmatch(first["id"])
    # Both requests are published (the worker settles the duplicate), under the one id.
    assert [e["message_id"] for e in queued_events(mail_env)] == [first["id"], first["id"]]


def test_idempotency_keys_are_scoped_to_the_caller(mail_env: MailEnv) -> None:
    api = mail_env.api()
    alice = call(api, keyed("same-key", sub="user_alice"))[1]["id"]
    bob = call(api, keyed("same-key", sub="user_bob"))[1]["id"]
    other_key = call(api, keyed("other-key", sub="user_alice"))[1]["id"]
    assert len({alice, bob, other_key}) == 3


def test_without_an_idempotency_key_every_request_is_a_new_message(mail_env: MailEnv) -> None:
    api = mail_env.api()
    ids = {call(api, keyed(None))[1]["id"] for _ in range(5)}
    assert len(ids) == 5 and all(MESSAGE_ID.fullmatch(i) for i in ids)


@pytest.mark.parametrize("key", ["", "k" * 129, "cl\u00e9", "tab\there", "nl\nhere", "\x7f"])
def test_a_bad_idempotency_key_gets_400(mail_env: MailEnv, key: str) -> None:
    status, body = call(mail_env.api(), keyed(key))
    assert status == 400
    assert problems(body) == {"Idempotency-Key": "must be 1 to 128 printable ASCII characters"}
    assert mail_env.queue_depth(mail_env.resources.queue_url) == 0


@pytest.mark.parametrize(
    "key", ["k", "k" * 128, " spaced ~!@#$%^&*()_+ key ", "3f2c9a1e-8b7d-4c6a-9e5f-0a1b2c3d4e5f"]
)
def test_good_idempotency_keys_are_accepted(mail_env: MailEnv, key: str) -> None:
    assert call(mail_env.api(), keyed(key))[0] == 202


def test_the_api_reads_exactly_the_request_headers_the_mailer_declares(mail_env: MailEnv) -> None:
    """`mailer.REQUEST_HEADERS` is what the program allows in the HTTP API's CORS configuration
    (components/mailing/cors.py): a header read here but not declared there would be refused to browsers,
    and one declared but never read would be allowed for nothing."""
    api = mail_env.api()
    asked: set[str] = set()
    for event in (keyed("retry-me"), claims_event(LIST)):
        headers = Recording({**event["headers"], "x-unread": "1"})
        event["headers"] = headers
        assert call(api, event)[0] in (200, 202)
        asked |= headers.asked
    assert asked == set(mailer.REQUEST_HEADERS)
    # Header names arrive lower-cased (payload format 2.0), so the declared names must be too.
    assert all(name == name.lower() for name in mailer.REQUEST_HEADERS)


def test_recipients_must_be_users_sharing_a_project_with_the_sender(mail_env: MailEnv) -> None:
    api = mail_env.api()
    # Alice shares p_demo with Bob and Carol, nothing with Dave, and nobody is called user_zed.
    status, body = call(
        api,
        claims_event(SEND, body={**VALID, "recipients": ["user_bob", "user_dave", "user_zed", "user_carol"]}),
    )
    assert status == 403 and body["message"] == "some recipients cannot be mailed"
    # Unknown and unrelated users get the same reason: the API does not tell who exists.
    assert problems(body) == {
        "recipients[1]": "not a user who shares a project with you",
        "recipients[2]": "not a user who shares a project with you",
    }
    # Dave and Bob share p_other.
    assert call(api, claims_event(SEND, sub="user_dave", body=VALID))[0] == 202
    assert mail_env.queue_depth(mail_env.resources.queue_url) == 1


def test_the_reviewed_attack_a_new_user_with_no_projects_mails_nobody(mail_env: MailEnv) -> None:
    """A brand-new user (no projects) posting 50 external addresses, then 50 user ids: 400, then 403."""
    api = mail_env.api()
    outsiders = {**VALID, "recipients": [f"victim{i}@example.net" for i in range(50)]}
    status, body = call(api, claims_event(SEND, sub="user_mallory", body=outsiders))
    assert status == 400 and all("not an e-mail address" in p for p in problems(body).values())
    members = {**VALID, "recipients": ["user_alice", "user_bob", "user_carol", "user_dave"]}
    status, body = call(api, claims_event(SEND, sub="user_mallory", body=members))
    assert status == 403 and len(problems(body)) == 4
    # A user Clerk never told us about (no directory entry) cannot send at all.
    status, body = call(api, claims_event(SEND, sub="user_unknown", body=VALID))
    assert (status, body["message"]) == (403, "your account is not in the mail directory yet")
    assert mail_env.queue_depth(mail_env.resources.queue_url) == 0


def test_a_membership_removed_stops_mail_at_once(mail_env: MailEnv) -> None:
    api = mail_env.api()
    assert call(api, claims_event(SEND, body=VALID))[0] == 202
    mail_env.directory().remove_membership("user_bob", "p_demo")
    assert call(api, claims_event(SEND, body=VALID))[0] == 403
