"""The mailing service end to end on the local AWS API, and its delivery guarantees.

API (through the local gateway, over HTTP) -> SQS -> poller -> worker -> SES -> readable via the API;
redelivery and duplicates never send a second e-mail; one failing record is the only one retried;
malformed events end in the dead-letter queue; an unknown SES outcome is never resent.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from mailer import api as mailer_api
from mailer import worker as mailer_worker
from mailer.message import MailMessage
from mailer.store import CLAIMED, Claim, MessageStore
from motion_common.auth import TokenVerifier

from devstack.apigw import LocalHttpApi, make_app
from devstack.identity import Issuer
from devstack.sqs_poller import SqsPoller
from tests.services.mailer.support import MailEnv, Outbox, claims_event, sqs_record


class FaultySes:
    """Wraps the real SES client; fails sends to chosen recipients the way SES or the network would.

    moto cannot throttle, so the fault is injected here, in front of a real local SES.
    """

    def __init__(self, ses: Any, fail_for: set[str], error: Callable[[], Exception]) -> None:
        self._ses = ses
        self.fail_for = fail_for
        self._error = error
        self.calls: list[list[str]] = []
        self._lock = threading.Lock()

    def send_email(self, **request: Any) -> Any:
        recipients = request["Destination"]["ToAddresses"]
        with self._lock:
            self.calls.append(recipients)
        if self.fail_for & set(recipients):
            raise self._error()
        return self._ses.send_email(**request)


def throttled() -> Exception:
    return ClientError(
        {"Error": {"Code": "TooManyRequestsException", "Message": "Maximum sending rate exceeded."}},
        "SendEmail",
    )


def read_timeout() -> Exception:
    return ReadTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com/v2/email/outbound-emails")


def bearer(issuer: Issuer, user_id: str, **claims: Any) -> dict[str, str]:
    return {"authorization": f"Bearer {issuer.mint(user_id, **claims)}"}


def test_message_goes_from_api_through_queue_to_ses_and_back_to_the_mailboxes(
    deployed: MailEnv,
    issuer: Issuer,
    verifier: TokenVerifier,
    outbox: Outbox,
    capsys: pytest.CaptureFixture[str],
) -> None:
    subject = f"Sprint review {deployed.token}"
    deployed.add_user("user_alice", "alice@example.org", name="Alice")
    deployed.add_user("user_bob", "Bob@Example.org".lower())
    deployed.add_user("user_carol", "carol@example.org")
    deployed.add_user("user_dave", "dave@example.org", projects=("p_elsewhere",))
    with LocalHttpApi(make_app(mailer_api.handler, verifier)) as gateway:
        client = httpx.Client(base_url=gateway.url, timeout=10)
        posted = client.post(
            "/mail/messages",
            json={
                "recipients": ["user_bob", "user_carol"],
                "subject": subject,
                "body": "Room 4, 10:00.",
            },
            # The `email` claim is someone else's: it is not used for anything.
            headers=bearer(issuer, "user_alice", email="dave@example.org"),
        )
        assert posted.status_code == 202, posted.text
        message_id = posted.json()["id"]

        poller = SqsPoller(deployed.resources.queue_url, mailer_worker.handler, wait_time_seconds=1)
        result = poller.run_once()
        assert result.received == 1 and len(result.succeeded) == 1 and not result.failed

        # One e-mail per recipient, nobody else in To:, each saying who sent it.
        emails = outbox.sent(deployed.token)
        assert sorted(e["destinations"]["ToAddresses"] for e in emails) == [
            ["bob@example.org"],
            ["carol@example.org"],
        ]
        for email in emails:
            assert email["source"] == deployed.resources.sender_address
            assert email["subject"] == f"Alice via Motion: {subject}"
            assert email["body"] == "Alice sent you this message through Motion.\n\nRoom 4, 10:00."
        assert deployed.queue_depth(deployed.resources.queue_url) == 0

        sent = client.get("/mail/messages", headers=bearer(issuer, "user_alice", email="alice@example.org"))
        assert sent.status_code == 200
        assert [(m["id"], m["folders"], m["subject"]) for m in sent.json()["messages"]] == [
            (message_id, ["sent"], subject)
        ]
        received = client.get("/mail/messages", headers=bearer(issuer, "user_bob"))
        [entry] = received.json()["messages"]
        assert entry["id"] == message_id and entry["folders"] == ["received"]
        assert entry["from"] == {"user_id": "user_alice", "name": "Alice", "email": "alice@example.org"}
        # Bob sees himself as the recipient, not who else got it; Alice's sent entry lists both.
        assert entry["to"] == ["user_bob"]
        assert sent.json()["messages"][0]["to"] == ["user_bob", "user_carol"]
        stranger = client.get("/mail/messages", headers=bearer(issuer, "user_dave", email="bob@example.org"))
        assert stranger.json() == {"messages": [], "next_cursor": None}

    item = deployed.store().get_message_item(message_id)
    assert item is not None and item["send_state"]["S"] == "sent"
    for recipient in ("user_bob", "user_carol"):
        delivery = deployed.store().get_delivery_item(message_id, recipient)
        assert (
            delivery is not None and delivery["send_state"]["S"] == "sent" and delivery["ses_message_id"]["S"]
        )
    logs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert any(log["message"] == "queued" and log.get("message_id") == message_id for log in logs)
    assert any(log.get("outcome") == "sent" and log.get("message_id") == message_id for log in logs)


def test_redelivered_and_duplicated_events_send_one_email(mail_env: MailEnv, outbox: Outbox) -> None:
    message = mail_env.message()
    body = message.to_event()
    worker = mail_env.worker()

    first = worker.handle({"Records": [sqs_record(body, "sqs-1")]})
    # The same event again (redelivery), and twice within one batch (SQS duplicates).
    again = worker.handle({"Records": [sqs_record(body, "sqs-1", receive_count=2)]})
    twice = worker.handle({"Records": [sqs_record(body, "sqs-2"), sqs_record(body, "sqs-3")]})

    assert first == {"batchItemFailures": []}
    assert again == {"batchItemFailures": []}
    assert twice == {"batchItemFailures": []}
    assert len(outbox.sent(mail_env.token)) == 1
    item = mail_env.store().get_delivery_item(message.message_id, "u_bob")
    assert item is not None and item["attempts"]["N"] == "1"


def test_concurrent_duplicates_in_one_batch_send_one_email(mail_env: MailEnv, outbox: Outbox) -> None:
    body = mail_env.message().to_event()
    worker = mail_env.worker()
    records = [sqs_record(body, f"dup-{i}") for i in range(6)]

    result = worker.handle({"Records": records})

    # Whoever lost the race either saw "sent" or saw a live claim and asked for a retry; a retry
    # then finds the e-mail sent. Either way: one e-mail.
    retry = [r for r in records if {"itemIdentifier": r["messageId"]} in result["batchItemFailures"]]
    assert len(retry) < len(records)
    assert worker.handle({"Records": retry}) == {"batchItemFailures": []}
    assert len(outbox.sent(mail_env.token)) == 1


def test_one_failing_record_is_the_only_one_reported_and_retried(mail_env: MailEnv, outbox: Outbox) -> None:
    ses = FaultySes(mail_env.session.client("sesv2"), {"throttled@example.org"}, throttled)
    worker = mail_env.worker(ses=ses)
    messages = [
        mail_env.message(recipients=("ann@example.org",)),
        mail_env.message(recipients=("throttled@example.org",)),
        mail_env.message(recipients=("ben@example.org",)),
    ]
    records = [sqs_record(m.to_event(), f"rec-{i}") for i, m in enumerate(messages)]

    result = worker.handle({"Records": records})

    assert result == {"batchItemFailures": [{"itemIdentifier": "rec-1"}]}
    assert sorted(e["destinations"]["ToAddresses"][0] for e in outbox.sent(mail_env.token)) == [
        "ann@example.org",
        "ben@example.org",
    ]
    failed = mail_env.store().get_delivery_item(messages[1].message_id, "u_throttled")
    assert failed is not None and failed["send_state"]["S"] == "pending"
    assert failed["last_error"]["S"] == "SES TooManyRequestsException"

    # SES recovers; even if the whole batch came back, only the failed message is sent.
    ses.fail_for.clear()
    assert worker.handle({"Records": records}) == {"batchItemFailures": []}
    assert sorted(e["destinations"]["ToAddresses"][0] for e in outbox.sent(mail_env.token)) == [
        "ann@example.org",
        "ben@example.org",
        "throttled@example.org",
    ]
    # The retried batch called SES for the failed message only.
    assert sorted(calls[0] for calls in ses.calls) == [
        "ann@example.org",
        "ben@example.org",
        "throttled@example.org",
        "throttled@example.org",
    ]


def test_records_of_a_batch_are_handled_concurrently(mail_env: MailEnv, outbox: Outbox) -> None:
    real = mail_env.session.client("sesv2")
    # Every send waits for all three: only possible if the three records are in flight together.
    barrier = threading.Barrier(3, timeout=5)

    class GatedSes:
        def send_email(self, **request: Any) -> Any:
            barrier.wait()
            return real.send_email(**request)

    worker = mail_env.worker(ses=GatedSes())
    records = [sqs_record(mail_env.message(recipients=(f"r{i}@example.org",)).to_event()) for i in range(3)]

    assert worker.handle({"Records": records}) == {"batchItemFailures": []}
    assert len(outbox.sent(mail_env.token)) == 3


def test_malformed_events_reach_the_dead_letter_queue_after_max_receives(
    make_mail_env: Callable[..., MailEnv], outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = make_mail_env(max_receive_count=2, visibility_timeout=1)
    good = env.message()
    for body in ("not json at all", json.dumps({"version": 1, "message_id": "x"}), good.to_event()):
        env.sqs.send_message(QueueUrl=env.resources.queue_url, MessageBody=body)
    worker = env.worker()
    seen: list[str] = []

    def handler(event: dict[str, Any], context: Any) -> Any:
        seen.extend(r["body"] for r in event["Records"])
        return worker.handle(event, context)

    poller = SqsPoller(env.resources.queue_url, handler, wait_time_seconds=0)
    deadline = time.monotonic() + 15
    while env.queue_depth(env.resources.queue_url) and time.monotonic() < deadline:
        poller.run_once()
        time.sleep(0.2)

    dead = env.sqs.receive_message(
        QueueUrl=env.resources.dlq_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
    )["Messages"]
    assert sorted(m["Body"] for m in dead) == sorted(
        ["not json at all", json.dumps({"version": 1, "message_id": "x"})]
    )
    assert env.queue_depth(env.resources.queue_url) == 0
    # Each malformed event was handed to the function exactly maxReceiveCount times, the good one once.
    assert seen.count("not json at all") == 2
    assert seen.count(good.to_event()) == 1
    assert len(outbox.sent(env.token)) == 1


def test_an_unanswered_ses_call_is_never_retried(mail_env: MailEnv, outbox: Outbox) -> None:
    message = mail_env.message()
    record = sqs_record(message.to_event(), "rec-timeout")
    ses = FaultySes(mail_env.session.client("sesv2"), {"bob@example.org"}, read_timeout)

    assert mail_env.worker(ses=ses).handle({"Records": [record]}) == {
        "batchItemFailures": [{"itemIdentifier": "rec-timeout"}]
    }
    # SES is fine again, but the first call may have been delivered: redeliveries must not send.
    healthy = mail_env.worker()
    for _ in range(2):
        assert healthy.handle({"Records": [record]}) == {
            "batchItemFailures": [{"itemIdentifier": "rec-timeout"}]
        }

    item = mail_env.store().get_message_item(message.message_id)
    assert item is not None and item["send_state"]["S"] == "unknown"
    assert len(ses.calls) == 1 and outbox.sent(mail_env.token) == []


def expired_claim(mail_env: MailEnv) -> tuple[MailMessage, MessageStore, Claim]:
    """A stored message whose e-mail to u_bob an invocation claimed before dying: its lease is over."""
    message = mail_env.message()
    store = mail_env.store()
    store.save(message)
    now_ms = int(time.time() * 1000)
    crashed = store.claim(message.message_id, "u_bob", lease_until_ms=now_ms - 1, now_ms=now_ms)
    assert crashed.outcome == "claimed"
    return message, store, crashed


def test_a_claim_whose_holder_died_before_calling_ses_is_taken_over_and_sent_once(
    mail_env: MailEnv, outbox: Outbox
) -> None:
    # An invocation claimed the e-mail and died before calling SES; its lease has run out.
    message, store, crashed = expired_claim(mail_env)

    result = mail_env.worker().handle({"Records": [sqs_record(message.to_event(), "after-crash")]})

    assert result == {"batchItemFailures": []}
    item = store.get_delivery_item(message.message_id, "u_bob")
    assert item is not None and item["send_state"]["S"] == "sent" and item["attempts"]["N"] == "2"
    assert len(outbox.sent(mail_env.token)) == 1
    # The dead holder, were it to wake up, could no longer send.
    assert crashed.claim_id is not None
    assert store.begin_send(message.message_id, "u_bob", crashed.claim_id) is False


def test_a_holder_that_died_after_calling_ses_leaves_unknown_reported_not_resent(
    mail_env: MailEnv, outbox: Outbox, capsys: pytest.CaptureFixture[str]
) -> None:
    message, store, crashed = expired_claim(mail_env)
    assert crashed.claim_id is not None
    assert store.begin_send(message.message_id, "u_bob", crashed.claim_id)  # then it died

    record = sqs_record(message.to_event(), "after-crash")
    for _ in range(2):
        assert mail_env.worker().handle({"Records": [record]}) == {
            "batchItemFailures": [{"itemIdentifier": "after-crash"}]
        }
    item = store.get_message_item(message.message_id)
    assert item is not None and item["send_state"]["S"] == "unknown"
    assert outbox.sent(mail_env.token) == []
    logs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    unknown = [line for line in logs if line.get("outcome") == "unknown"]
    # Reported with its reason, and counted once (the second redelivery counts 0).
    assert [line["DeliveriesUnknown"] for line in unknown] == [1, 0]
    assert all("starting the SES call" in line["reason"] for line in unknown)


def test_a_live_claim_makes_a_duplicate_wait_not_send(mail_env: MailEnv, outbox: Outbox) -> None:
    message = mail_env.message()
    store = mail_env.store()
    store.save(message)
    now_ms = int(time.time() * 1000)
    holder = store.claim(message.message_id, "u_bob", lease_until_ms=now_ms + 60_000, now_ms=now_ms)
    assert holder.outcome == "claimed" and holder.claim_id is not None

    record = sqs_record(message.to_event(), "while-in-flight")
    assert mail_env.worker().handle({"Records": [record]}) == {
        "batchItemFailures": [{"itemIdentifier": "while-in-flight"}]
    }
    item = store.get_delivery_item(message.message_id, "u_bob")
    assert item is not None and item["send_state"]["S"] == CLAIMED

    # The holder finishes; the redelivered duplicate is then acknowledged without sending.
    store.mark_sent(message.message_id, "u_bob", holder.claim_id, "ses-123", "2030-01-01T00:00:00.000Z")
    assert mail_env.worker().handle({"Records": [record]}) == {"batchItemFailures": []}
    assert outbox.sent(mail_env.token) == []


def test_a_storage_failure_fails_only_its_record(mail_env: MailEnv, outbox: Outbox) -> None:
    good = mail_env.message()
    unlucky = mail_env.message(recipients=("erin@example.org",))

    class FlakyStore(MessageStore):
        def save(self, message: MailMessage) -> bool:
            if message.message_id == unlucky.message_id:
                raise ClientError(
                    {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                    "TransactWriteItems",
                )
            return super().save(message)

    worker = mail_env.worker(store=FlakyStore(mail_env.dynamodb, mail_env.resources.table_name))
    result = worker.handle(
        {"Records": [sqs_record(good.to_event(), "ok"), sqs_record(unlucky.to_event(), "bad")]}
    )

    assert result == {"batchItemFailures": [{"itemIdentifier": "bad"}]}
    assert [e["destinations"]["ToAddresses"] for e in outbox.sent(mail_env.token)] == [["bob@example.org"]]


def test_an_event_that_is_not_from_sqs_fails_the_invocation(mail_env: MailEnv) -> None:
    worker = mail_env.worker()
    events: list[Any] = [{}, {"Records": "nope"}, {"Records": [{"body": "{}"}]}, []]
    for event in events:
        with pytest.raises(ValueError, match="SQS event"):
            worker.handle(event)


class CountingDb:
    """The real DynamoDB client, counting calls per operation."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: dict[str, int] = {}
        self.fail_next: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name == "exceptions" or not callable(attribute):
            return attribute

        def call(**kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            if name in self.fail_next:
                self.fail_next.discard(name)
                raise ClientError({"Error": {"Code": "InternalServerError", "Message": "crash"}}, name)
            return attribute(**kwargs)

        return call


def test_a_crash_between_message_and_mailboxes_is_repaired_by_redelivery(
    mail_env: MailEnv, outbox: Outbox
) -> None:
    db = CountingDb(mail_env.dynamodb)
    worker = mail_env.worker(store=MessageStore(db, mail_env.resources.table_name))
    message = mail_env.message(sender_email="alice@example.org")
    record = sqs_record(message.to_event(), "half-written")

    db.fail_next = {"batch_write_item"}
    assert worker.handle({"Records": [record]}) == {"batchItemFailures": [{"itemIdentifier": "half-written"}]}
    item = mail_env.store().get_message_item(message.message_id)
    assert item is not None and item["send_state"]["S"] == "pending" and outbox.sent(mail_env.token) == []

    assert worker.handle({"Records": [record]}) == {"batchItemFailures": []}
    api = mail_env.api()
    for event in (
        claims_event("GET /mail/messages", sub="user_alice"),
        claims_event("GET /mail/messages", sub="u_bob"),
    ):
        listed = api.handle(event)
        assert [m["id"] for m in json.loads(listed["body"])["messages"]] == [message.message_id]
    assert len(outbox.sent(mail_env.token)) == 1

    # Once sent, a duplicate is settled by the one conditional write: mailboxes are not rewritten.
    writes_before = db.calls["batch_write_item"]
    assert worker.handle({"Records": [record]}) == {"batchItemFailures": []}
    assert db.calls["batch_write_item"] == writes_before


def mailbox_items(env: MailEnv, partition: str) -> list[dict[str, Any]]:
    """Every entry in one mailbox partition, read from the table (listing would merge duplicates)."""
    items: list[dict[str, Any]] = env.dynamodb.query(
        TableName=env.resources.table_name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": partition}},
        ConsistentRead=True,
    )["Items"]
    return items


def test_a_post_retried_with_its_idempotency_key_sends_one_email(
    make_mail_env: Callable[..., MailEnv], issuer: Issuer, verifier: TokenVerifier, outbox: Outbox
) -> None:
    env = make_mail_env(visibility_timeout=1)
    for user in ("alice", "bob", "carol", "dave"):
        env.add_user(f"user_{user}", f"{user}@example.org")
    request = {"recipients": ["user_bob"], "subject": f"Retried {env.token}", "body": "Once."}
    headers = {**bearer(issuer, "user_alice", email="alice@example.org"), "Idempotency-Key": "retry-me"}
    with LocalHttpApi(make_app(env.api().handle, verifier)) as gateway:
        client = httpx.Client(base_url=gateway.url, timeout=10)
        # The client lost the first answer and retries a moment later (so a later `created_at`).
        first = client.post("/mail/messages", json=request, headers=headers)
        time.sleep(0.01)
        retry = client.post("/mail/messages", json=request, headers=headers)
        # The same key from another user is another message.
        other = client.post(
            "/mail/messages",
            json={**request, "recipients": ["user_carol"]},
            headers={**bearer(issuer, "user_dave"), "Idempotency-Key": "retry-me"},
        )
    assert first.status_code == retry.status_code == other.status_code == 202, (first.text, retry.text)
    message_id = first.json()["id"]
    assert retry.json()["id"] == message_id and other.json()["id"] != message_id

    # Both events may come in one batch; one may lose the claim race and be redelivered.
    poller = SqsPoller(env.resources.queue_url, env.worker().handle, wait_time_seconds=0)
    deadline = time.monotonic() + 15
    while env.queue_depth(env.resources.queue_url) and time.monotonic() < deadline:
        poller.run_once()
        time.sleep(0.2)
    assert env.queue_depth(env.resources.queue_url) == 0

    emails = outbox.sent(env.token)
    assert sorted(e["destinations"]["ToAddresses"][0] for e in emails) == [
        "bob@example.org",
        "carol@example.org",
    ]
    item = env.store().get_message_item(message_id)
    assert item is not None and item["send_state"]["S"] == "sent"
    delivery = env.store().get_delivery_item(message_id, "user_bob")
    assert delivery is not None and delivery["attempts"]["N"] == "1"
    assert item["created_at"]["S"] in {first.json()["created_at"], retry.json()["created_at"]}
    for partition in ("USER#user_alice", "INBOX#user_bob"):
        assert [i["message_id"]["S"] for i in mailbox_items(env, partition)] == [message_id]


def test_events_sharing_an_id_store_and_send_the_first_stored(mail_env: MailEnv, outbox: Outbox) -> None:
    # Two requests with one idempotency key: same id, another time (and here another body).
    first = mail_env.message(body="first", now=1_700_000_000, idempotency_key="k")
    second = mail_env.message(body="second", now=1_700_000_005, idempotency_key="k")
    assert first.message_id == second.message_id and first.created_at != second.created_at
    store = mail_env.store()
    assert store.save(first)  # stored, not yet claimed: the next event finds it pending

    worker = mail_env.worker()
    assert worker.handle({"Records": [sqs_record(second.to_event(), "second")]}) == {"batchItemFailures": []}
    assert worker.handle({"Records": [sqs_record(first.to_event(), "first")]}) == {"batchItemFailures": []}

    assert [e["body"].rpartition("\n")[2] for e in outbox.sent(mail_env.token)] == ["first"]
    for partition in ("USER#user_alice", "INBOX#u_bob"):
        [entry] = mailbox_items(mail_env, partition)
        assert (entry["created_at"]["S"], entry["body"]["S"]) == (first.created_at, "first")


def test_each_recipient_gets_an_e_mail_of_their_own_and_a_failure_retries_only_theirs(
    mail_env: MailEnv, outbox: Outbox
) -> None:
    """Three recipients, SES throttles one: the other two get exactly one e-mail each, addressed to
    them alone; the redelivery sends only the throttled one's."""
    message = mail_env.message(recipients=("ann@example.org", "throttled@example.org", "ben@example.org"))
    record = sqs_record(message.to_event(), "three")
    ses = FaultySes(mail_env.session.client("sesv2"), {"throttled@example.org"}, throttled)

    assert mail_env.worker(ses=ses).handle({"Records": [record]}) == {
        "batchItemFailures": [{"itemIdentifier": "three"}]
    }
    assert sorted(ses.calls) == [["ann@example.org"], ["ben@example.org"], ["throttled@example.org"]]
    item = mail_env.store().get_message_item(message.message_id)
    assert item is not None and item["send_state"]["S"] == "pending"

    ses.fail_for = set()
    assert mail_env.worker(ses=ses).handle({"Records": [record]}) == {"batchItemFailures": []}
    assert ses.calls[3:] == [["throttled@example.org"]]
    assert sorted(e["destinations"]["ToAddresses"] for e in outbox.sent(mail_env.token)) == [
        ["ann@example.org"],
        ["ben@example.org"],
        ["throttled@example.org"],
    ]
    item = mail_env.store().get_message_item(message.message_id)
    assert item is not None and item["send_state"]["S"] == "sent"
