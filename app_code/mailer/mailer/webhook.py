"""The directory's webhook Lambda: Clerk events, delivered and signed by Svix, keep `mailer.directory`.

Route `POST /mail/webhooks/clerk` on the mail HTTP API, without the JWT authorizer (Clerk has no
session token to send); the signature is the authentication instead. Verification follows Svix's
"Verifying Webhooks Manually" (https://docs.svix.com/receiving/verifying-payloads/how-manual):

- the signed content is `{svix-id}.{svix-timestamp}.{raw body}`, HMAC-SHA256 with the key that is
  the base64 text after the secret's `whsec_` prefix, base64-encoded;
- `svix-signature` is a space-separated list of `v1,<signature>` (several while a secret rotates):
  one constant-time match is enough;
- `svix-timestamp` must be within 5 minutes of now, so a captured delivery cannot be replayed later;
- inside that window a replay is caught by its `svix-id` (the same on Svix's own retries), which the
  directory records with a conditional write: a second delivery of one id is refused.

The signing secret comes from Secrets Manager (`WEBHOOK_SECRET_ARN` names it, never holds it),
cached per process and fetched again when a signature does not verify (a rotated secret), at most
once per `SECRET_REFRESH_SECONDS` so forged requests cannot turn into a Secrets Manager call each.

Events (Clerk's payloads, https://clerk.com/docs/webhooks/sync-data): `user.created` and
`user.updated` (`data.id`, `data.email_addresses[].{id, email_address}`,
`data.primary_email_address_id`, `data.first_name`, `data.last_name`, `data.username`),
`user.deleted` (`data.id`), `organizationMembership.created` / `.deleted`
(`data.organization.id`, `data.public_user_data.user_id`). A Motion project is a Clerk
organization: the project ids in the session token's `projects` claim are organization ids.
Other event types are acknowledged (200, outcome `ignored`), so Svix does not retry them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mailer.directory import UserDirectory
from mailer.logs import get_logger, log
from mailer.message import MAX_USER_ID_CHARS
from mailer.validation import normalize_address

TOLERANCE_SECONDS = 5 * 60
SECRET_REFRESH_SECONDS = 30
SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
# Delivery ids are kept well past the tolerance window: after it, the timestamp check refuses a replay.
DELIVERY_MEMORY_SECONDS = 24 * 3600
MAX_DISPLAY_NAME_CHARS = 100


class WebhookRefused(ValueError):
    """The delivery is not one Clerk signed just now; `status` is the answer, the message the reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The `v1,<base64>` signature Svix puts in `svix-signature` (also used by the local Clerk stand-in)."""
    key = decode_secret(secret)
    content = delivery_id.encode() + b"." + timestamp.encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def decode_secret(secret: str) -> bytes:
    text = secret.strip()
    if text.startswith(SECRET_PREFIX):
        text = text[len(SECRET_PREFIX) :]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the webhook signing secret is not whsec_<base64>") from None


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not isinstance(value, str) or not value.strip():
        raise WebhookRefused(400, f"missing {name} header")
    return value.strip()


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> str:
    """The delivery id if the headers sign `body` with `secret` and the timestamp is fresh."""
    delivery_id = _header(headers, "svix-id")
    timestamp = _header(headers, "svix-timestamp")
    signatures = _header(headers, "svix-signature")
    if not timestamp.isascii() or not timestamp.isdigit():
        raise WebhookRefused(400, "svix-timestamp is not a number of seconds")
    if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        raise WebhookRefused(401, "svix-timestamp is more than 5 minutes away from now")
    expected = sign(secret, delivery_id, timestamp, body).partition(",")[2].encode()
    for entry in signatures.split():
        version, _, signature = entry.partition(",")
        if version == "v1" and hmac.compare_digest(signature.encode(), expected):
            return delivery_id
    raise WebhookRefused(401, "no valid signature in svix-signature")


class SecretCache:
    """The signing secret from Secrets Manager, fetched on first use and again after a failed check."""

    def __init__(self, fetch: Callable[[], str], clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._value: str | None = None
        self._fetched_at = 0.0

    def get(self) -> str:
        with self._lock:
            if self._value is None:
                self._value, self._fetched_at = self._fetch(), self._clock()
            return self._value

    def refresh(self) -> bool:
        """Fetch again unless that happened moments ago; True if the secret changed."""
        with self._lock:
            if self._value is not None and self._clock() - self._fetched_at < SECRET_REFRESH_SECONDS:
                return False
            old, self._value, self._fetched_at = self._value, self._fetch(), self._clock()
            return self._value != old


def secrets_manager_fetch(client: Any, secret_id: str) -> Callable[[], str]:
    def fetch() -> str:
        return str(client.get_secret_value(SecretId=secret_id)["SecretString"])

    return fetch


@dataclass(frozen=True, slots=True)
class Profile:
    user_id: str
    email: str | None
    display_name: str | None


def _user_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_USER_ID_CHARS:
        raise WebhookRefused(400, f"{field} must be a user id")
    return value


def parse_profile(data: Mapping[str, Any]) -> Profile:
    """The primary address (verified by Clerk, or it is not primary) and a display name."""
    user_id = _user_id(data.get("id"), "data.id")
    email = None
    primary = data.get("primary_email_address_id")
    for entry in data.get("email_addresses") or []:
        if (
            isinstance(entry, dict)
            and entry.get("id") == primary
            and isinstance(entry.get("email_address"), str)
        ):
            email = normalize_address(entry["email_address"])
    parts = [data.get("first_name"), data.get("last_name")]
    name = " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
    if not name and isinstance(data.get("username"), str):
        name = data["username"].strip()
    # The name goes into subjects and bodies: no control characters, bounded length.
    name = "".join(ch for ch in name if ch.isprintable())[:MAX_DISPLAY_NAME_CHARS].strip()
    return Profile(user_id=user_id, email=email, display_name=name or None)


def _membership(data: Mapping[str, Any]) -> tuple[str, str]:
    organization = data.get("organization")
    public = data.get("public_user_data")
    project = organization.get("id") if isinstance(organization, dict) else None
    if not isinstance(project, str) or not project.strip():
        raise WebhookRefused(400, "data.organization.id must be an organization id")
    user = public.get("user_id") if isinstance(public, dict) else None
    return _user_id(user, "data.public_user_data.user_id"), project


def apply_event(directory: UserDirectory, event: Mapping[str, Any]) -> str:
    """Apply one Clerk event to the directory; the outcome's name, for the log."""
    kind = event.get("type")
    data = event.get("data")
    if not isinstance(kind, str) or not isinstance(data, dict):
        raise WebhookRefused(400, "an event needs a string type and an object data")
    if kind in ("user.created", "user.updated"):
        profile = parse_profile(data)
        directory.put_profile(profile.user_id, profile.email, profile.display_name)
        return "profile"
    if kind == "user.deleted":
        directory.delete_user(_user_id(data.get("id"), "data.id"))
        return "deleted"
    if kind == "organizationMembership.created":
        directory.add_membership(*_membership(data))
        return "joined"
    if kind == "organizationMembership.deleted":
        directory.remove_membership(*_membership(data))
        return "left"
    return "ignored"


def _response(status: int, document: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(document or {}, separators=(",", ":")),
        "isBase64Encoded": False,
    }


class WebhookReceiver:
    def __init__(
        self,
        directory: UserDirectory,
        secret: SecretCache,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._directory = directory
        self._secret = secret
        self._log = logger or get_logger()
        self._clock = clock

    def handle(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        request_id = getattr(context, "aws_request_id", None)
        headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
        fields: dict[str, Any] = {"svix_id": headers.get("svix-id"), "aws_request_id": request_id}
        try:
            body = self._raw_body(event)
            delivery_id = self._verify(headers, body)
            if not self._directory.remember_delivery(
                delivery_id, int(self._clock()) + DELIVERY_MEMORY_SECONDS
            ):
                raise WebhookRefused(409, "this svix-id was delivered before")
            try:
                document = json.loads(body)
                if not isinstance(document, dict):
                    raise WebhookRefused(400, "body must be a JSON object")
                outcome = apply_event(self._directory, document)
            except ValueError as err:
                self._directory.forget_delivery(delivery_id)
                if isinstance(err, WebhookRefused):
                    raise
                raise WebhookRefused(400, f"body is not valid JSON: {err}") from None
            except Exception:
                # Not applied: let Svix's retry (same svix-id) be applied instead of refused.
                self._directory.forget_delivery(delivery_id)
                raise
        except WebhookRefused as refused:
            log(
                self._log,
                logging.WARNING,
                "webhook refused",
                status=refused.status,
                reason=refused.reason,
                **fields,
            )
            return _response(refused.status, {"message": refused.reason})
        except Exception:
            log(self._log, logging.ERROR, "webhook failed", exc_info=True, **fields)
            return _response(503, {"message": "the directory could not be updated; retry later"})
        log(
            self._log,
            logging.INFO,
            "webhook applied",
            event_type=document.get("type"),
            outcome=outcome,
            **fields,
        )
        return _response(200, {"outcome": outcome})

    @staticmethod
    def _raw_body(event: Mapping[str, Any]) -> bytes:
        body = event.get("body")
        if not isinstance(body, str):
            raise WebhookRefused(400, "a JSON body is required")
        if event.get("isBase64Encoded"):
            try:
                return base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError):
                raise WebhookRefused(400, "body is not valid base64") from None
        return body.encode("utf-8")

    def _verify(self, headers: Mapping[str, str], body: bytes) -> str:
        now = self._clock()
        try:
            return verify(self._secret.get(), headers, body, now)
        except WebhookRefused as refused:
            if refused.status != 401 or "signature" not in refused.reason or not self._secret.refresh():
                raise
        return verify(self._secret.get(), headers, body, now)


_lock = threading.Lock()
_receiver: WebhookReceiver | None = None


def _default_receiver() -> WebhookReceiver:
    global _receiver
    with _lock:
        if _receiver is None:
            from mailer import aws
            from mailer.settings import Settings

            settings = Settings.from_env("webhook")
            assert settings.users_table is not None and settings.webhook_secret_arn is not None
            secret = SecretCache(
                secrets_manager_fetch(aws.client("secretsmanager"), settings.webhook_secret_arn)
            )
            _receiver = WebhookReceiver(
                UserDirectory(aws.client("dynamodb"), settings.users_table),
                secret,
                get_logger(settings.log_level),
            )
        return _receiver


def reset() -> None:
    global _receiver
    with _lock:
        _receiver = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _default_receiver().handle(event, context)
