"""The directory webhook: Clerk's events, signed as Svix signs them, verified and applied, or refused.

Every attack here is performed against the real receiver, the real directory table and the
signing secret in the local Secrets Manager.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from mailer import webhook as mailer_webhook
from mailer.webhook import SecretCache, WebhookReceiver, secrets_manager_fetch, sign

from devstack.mail_resources import new_webhook_secret
from tests.services.mailer.support import MailEnv

ROUTE = "POST /mail/webhooks/clerk"


def user_created(user_id: str, email: str, first: str = "Bob", kind: str = "user.created") -> dict[str, Any]:
    """A `user.created` payload in Clerk's shape (trimmed to the fields the directory reads)."""
    return {
        "object": "event",
        "type": kind,
        "data": {
            "id": user_id,
            "object": "user",
            "first_name": first,
            "last_name": "Builder",
            "username": None,
            "primary_email_address_id": "idn_primary",
            "email_addresses": [
                {"id": "idn_other", "email_address": "old@example.org", "object": "email_address"},
                {"id": "idn_primary", "email_address": email, "object": "email_address"},
            ],
        },
    }


def membership(kind: str, user_id: str, organization: str) -> dict[str, Any]:
    return {
        "object": "event",
        "type": f"organizationMembership.{kind}",
        "data": {
            "id": f"orgmem_{uuid.uuid4().hex[:8]}",
            "object": "organization_membership",
            "role": "org:member",
            "organization": {"id": organization, "name": "Demo", "slug": "demo", "object": "organization"},
            "public_user_data": {"user_id": user_id, "identifier": "bob@example.org"},
        },
    }


def delivery(
    secret: str,
    document: dict[str, Any],
    *,
    delivery_id: str | None = None,
    timestamp: int | None = None,
    signature: str | None = None,
) -> dict[str, Any]:
    """The payload 2.0 event API Gateway passes on for one Svix delivery."""
    body = json.dumps(document)
    delivery_id = delivery_id or f"msg_{uuid.uuid4().hex}"
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "version": "2.0",
        "routeKey": ROUTE,
        "rawPath": "/mail/webhooks/clerk",
        "headers": {
            "content-type": "application/json",
            "svix-id": delivery_id,
            "svix-timestamp": stamp,
            "svix-signature": signature or sign(secret, delivery_id, stamp, body.encode()),
        },
        "requestContext": {"http": {"method": "POST", "path": "/mail/webhooks/clerk"}},
        "body": body,
        "isBase64Encoded": False,
    }


def answer(receiver: WebhookReceiver, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    result = receiver.handle(event)
    return result["statusCode"], json.loads(result["body"])


@pytest.fixture
def receiver(mail_env: MailEnv) -> WebhookReceiver:
    fetch = secrets_manager_fetch(
        mail_env.session.client("secretsmanager"), mail_env.resources.webhook_secret_arn
    )
    return WebhookReceiver(mail_env.directory(), SecretCache(fetch))


@pytest.fixture
def secret(mail_env: MailEnv) -> str:
    return mail_env.resources.webhook_secret


def test_signed_deliveries_keep_the_directory(
    mail_env: MailEnv, receiver: WebhookReceiver, secret: str
) -> None:
    directory = mail_env.directory()
    # Svix does not promise order: the membership may come before the user it belongs to.
    assert answer(receiver, delivery(secret, membership("created", "user_bob", "org_demo"))) == (
        200,
        {"outcome": "joined"},
    )
    bob = directory.get("user_bob")
    assert bob is not None and bob.email is None and not bob.mailable and bob.projects == {"org_demo"}

    assert answer(receiver, delivery(secret, user_created("user_bob", "Bob@Example.org")))[0] == 200
    assert answer(receiver, delivery(secret, membership("created", "user_bob", "org_two")))[0] == 200
    bob = directory.get("user_bob")
    assert bob is not None
    assert (bob.email, bob.display_name, bob.projects) == (
        "bob@example.org",
        "Bob Builder",
        {"org_demo", "org_two"},
    )

    updated = user_created("user_bob", "robert@example.org", first="Robert", kind="user.updated")
    assert answer(receiver, delivery(secret, updated))[0] == 200
    assert answer(receiver, delivery(secret, membership("deleted", "user_bob", "org_demo")))[0] == 200
    bob = directory.get("user_bob")
    assert bob is not None
    assert (bob.email, bob.display_name, bob.projects) == (
        "robert@example.org",
        "Robert Builder",
        {"org_two"},
    )

    deleted = {"type": "user.deleted", "object": "event", "data": {"id": "user_bob", "deleted": True}}
    assert answer(receiver, delivery(secret, deleted)) == (200, {"outcome": "deleted"})
    assert directory.get("user_bob") is None
    # Events the directory does not follow are acknowledged, so Svix stops retrying them.
    other = {"type": "session.created", "object": "event", "data": {"id": "sess_1"}}
    assert answer(receiver, delivery(secret, other)) == (200, {"outcome": "ignored"})


def test_a_forged_signature_is_refused_and_logged(
    mail_env: MailEnv, receiver: WebhookReceiver, secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    forged = delivery(new_webhook_secret(), user_created("user_mallory", "mallory@example.org"))
    status, body = answer(receiver, forged)
    assert (status, body) == (401, {"message": "no valid signature in svix-signature"})
    # A body changed after signing is a forgery too.
    tampered = delivery(secret, user_created("user_bob", "bob@example.org"))
    tampered["body"] = tampered["body"].replace("bob@example.org", "mallory@example.org")
    assert answer(receiver, tampered)[0] == 401
    assert mail_env.directory().get_many(["user_mallory", "user_bob"]) == {}
    logs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    refused = [log for log in logs if log["message"] == "webhook refused"]
    assert [log["status"] for log in refused] == [401, 401] and refused[0]["svix_id"] == forged["headers"][
        "svix-id"
    ]


def test_one_valid_signature_among_several_is_enough(receiver: WebhookReceiver, secret: str) -> None:
    """While a secret rotates, Svix signs with both: `v1,<old> v1,<new>`, space-separated."""
    event = delivery(secret, user_created("user_bob", "bob@example.org"))
    good = event["headers"]["svix-signature"]
    event["headers"]["svix-signature"] = f"v1,{'A' * 43}= v2,whatever {good}"
    assert answer(receiver, event)[0] == 200


@pytest.mark.parametrize("age", [301, -301, 3600])
def test_a_stale_timestamp_is_refused(receiver: WebhookReceiver, secret: str, age: int) -> None:
    event = delivery(secret, user_created("user_bob", "bob@example.org"), timestamp=int(time.time()) - age)
    assert answer(receiver, event) == (
        401,
        {"message": "svix-timestamp is more than 5 minutes away from now"},
    )


def test_a_replayed_delivery_id_is_refused(mail_env: MailEnv, receiver: WebhookReceiver, secret: str) -> None:
    """An attacker who captured a genuine delivery (say, Bob joining a project) and replays it
    after Bob left gets a 409, inside the timestamp window as well as outside it."""
    joined = delivery(secret, membership("created", "user_bob", "org_demo"), delivery_id="msg_captured")
    assert answer(receiver, joined)[0] == 200
    assert answer(receiver, delivery(secret, membership("deleted", "user_bob", "org_demo")))[0] == 200
    assert answer(receiver, joined) == (409, {"message": "this svix-id was delivered before"})
    bob = mail_env.directory().get("user_bob")
    assert bob is not None and bob.projects == frozenset()


@pytest.mark.parametrize("missing", ["svix-id", "svix-timestamp", "svix-signature"])
def test_missing_headers_are_refused(receiver: WebhookReceiver, secret: str, missing: str) -> None:
    event = delivery(secret, user_created("user_bob", "bob@example.org"))
    del event["headers"][missing]
    assert answer(receiver, event) == (400, {"message": f"missing {missing} header"})


def test_a_signed_but_malformed_event_is_refused_and_can_be_redelivered(
    receiver: WebhookReceiver, secret: str
) -> None:
    bad = delivery(secret, {"type": "user.created", "data": {"id": ""}}, delivery_id="msg_bad")
    assert answer(receiver, bad) == (400, {"message": "data.id must be a user id"})
    # Not applied, so not remembered: a corrected retry under the same id is not a replay.
    fixed = delivery(secret, user_created("user_bob", "bob@example.org"), delivery_id="msg_bad")
    assert answer(receiver, fixed)[0] == 200


def test_a_rotated_secret_is_fetched_again_after_a_failed_check(mail_env: MailEnv, secret: str) -> None:
    secrets = mail_env.session.client("secretsmanager")
    arn = mail_env.resources.webhook_secret_arn
    now = [1000.0]
    cache = SecretCache(secrets_manager_fetch(secrets, arn), clock=lambda: now[0])
    receiver = WebhookReceiver(mail_env.directory(), cache)
    assert answer(receiver, delivery(secret, user_created("user_a", "a@example.org")))[0] == 200

    rotated = new_webhook_secret()
    secrets.put_secret_value(SecretId=arn, SecretString=rotated)
    # Just fetched: a failure does not refetch yet (forgeries must not cost a Secrets Manager call each).
    assert answer(receiver, delivery(rotated, user_created("user_b", "b@example.org")))[0] == 401
    now[0] += 31
    assert answer(receiver, delivery(rotated, user_created("user_b", "b@example.org")))[0] == 200
    assert answer(receiver, delivery(secret, user_created("user_c", "c@example.org")))[0] == 401


def test_the_lambda_entry_point_reads_the_secret_by_arn(
    mail_env: MailEnv, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in mail_env.resources.webhook_env().items():
        monkeypatch.setenv(key, value)
    mailer_webhook.reset()
    try:
        result = mailer_webhook.handler(delivery(secret, user_created("user_bob", "bob@example.org")), None)
    finally:
        mailer_webhook.reset()
    assert result["statusCode"] == 200
    assert mail_env.directory().get("user_bob") is not None


def test_the_local_clerk_stand_in_signs_as_svix_does() -> None:
    """devstack's signer is written independently of the receiver's; both follow Svix's recipe."""
    from devstack.identity import svix_signature

    secret = new_webhook_secret()
    body = json.dumps(user_created("user_bob", "bob@example.org")).encode()
    assert svix_signature(secret, "msg_1", "1700000000", body) == sign(secret, "msg_1", "1700000000", body)
