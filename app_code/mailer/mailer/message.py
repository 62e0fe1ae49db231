"""The mail event: what the API publishes to the queue and the worker consumes.

Everything that must be identical on every delivery (message id, creation time) is decided by the
API before publishing, so a redelivered event always produces the very same stored items.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

from mailer.settings import SES_MAX_DESTINATIONS
from mailer.validation import (
    CREATED_AT,
    MESSAGE_ID,
    Problem,
    SendRequest,
    ValidationError,
    check_body,
    check_recipients,
    check_subject,
    normalize_address,
)

EVENT_VERSION = 1
MAX_USER_ID_CHARS = 255
# Versioned, so that a future change of the derivation cannot map an old key onto a new message.
_KEYED_ID_NAMESPACE = "motion-mailer-idempotency-key/v1"


class MalformedEvent(ValueError):
    """The event cannot be processed, now or ever; it belongs in the dead-letter queue."""


def _text(document: dict[str, Any], key: str) -> str:
    """The field if it is a string, else "" (which every caller's check then reports)."""
    value = document.get(key)
    return value if isinstance(value, str) else ""


def new_message_id(now: float | None = None) -> str:
    """32 hex characters: milliseconds since the epoch, then 80 random bits.

    Time first, so ids sort roughly by creation; random bits from the OS, so two API instances
    never collide. (Cheaper to import than `uuid` or `secrets`, which matters for cold starts.)
    """
    millis = int((time.time() if now is None else now) * 1000)
    return f"{millis:012x}{os.urandom(10).hex()}"


def keyed_message_id(sender_id: str, idempotency_key: str) -> str:
    """The message id for a request carrying an `Idempotency-Key`: the same 32 hex characters as
    `new_message_id`, but the first half of a SHA-256 of (namespace, sender, key).

    A retried request thus gets the same id and the worker stores and sends it once; the sender is
    part of the hash, so two users' keys never meet. (JSON keeps the three parts unambiguous.)
    """
    import hashlib

    material = json.dumps([_KEYED_ID_NAMESPACE, sender_id, idempotency_key]).encode()
    return hashlib.sha256(material).hexdigest()[:32]


def utc_timestamp(now: float | None = None) -> str:
    moment = time.time() if now is None else now
    seconds = int(moment)
    millis = int((moment - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


@dataclass(frozen=True, slots=True)
class MailMessage:
    message_id: str
    sender_id: str
    sender_email: str | None
    recipients: tuple[str, ...]
    subject: str
    body: str
    created_at: str

    @property
    def mailbox_sort_key(self) -> str:
        return f"{self.created_at}#{self.message_id}"

    @classmethod
    def accept(
        cls,
        request: SendRequest,
        sender_id: str,
        sender_email: str | None,
        now: float | None = None,
        idempotency_key: str | None = None,
    ) -> MailMessage:
        moment = time.time() if now is None else now
        return cls(
            message_id=new_message_id(moment)
            if idempotency_key is None
            else keyed_message_id(sender_id, idempotency_key),
            sender_id=sender_id,
            sender_email=sender_email,
            recipients=request.recipients,
            subject=request.subject,
            body=request.body,
            created_at=utc_timestamp(moment),
        )

    def to_event(self) -> str:
        return json.dumps(
            {
                "version": EVENT_VERSION,
                "message_id": self.message_id,
                "sender_id": self.sender_id,
                "sender_email": self.sender_email,
                "recipients": list(self.recipients),
                "subject": self.subject,
                "body": self.body,
                "created_at": self.created_at,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @classmethod
    def from_event(cls, raw: Any) -> MailMessage:
        """Parse and re-validate an event body: the queue accepts anything, so trust nothing."""
        if not isinstance(raw, str):
            raise MalformedEvent("record body is not a string")
        try:
            document = json.loads(raw)
        except ValueError as err:
            raise MalformedEvent(f"record body is not JSON: {err}") from None
        if not isinstance(document, dict):
            raise MalformedEvent("record body is not a JSON object")
        if document.get("version") != EVENT_VERSION:
            raise MalformedEvent(f"unsupported event version {document.get('version')!r}")

        problems: list[Problem] = []
        message_id = _text(document, "message_id")
        if not MESSAGE_ID.fullmatch(message_id):
            problems.append(Problem("message_id", "must be 32 lower-case hex characters"))
        sender_id = _text(document, "sender_id")
        if not 0 < len(sender_id) <= MAX_USER_ID_CHARS:
            problems.append(Problem("sender_id", "must be a non-empty user id"))
        sender_email = document.get("sender_email")
        if sender_email is not None and (
            not isinstance(sender_email, str) or normalize_address(sender_email) != sender_email
        ):
            problems.append(Problem("sender_email", "must be null or a normalised e-mail address"))
        created_at = _text(document, "created_at")
        if not CREATED_AT.fullmatch(created_at):
            problems.append(Problem("created_at", "must be a UTC timestamp like 2025-01-31T12:00:00.000Z"))
        recipients = check_recipients(document.get("recipients"), SES_MAX_DESTINATIONS, problems)
        subject = check_subject(document.get("subject"), problems)
        body = check_body(document.get("body"), problems)
        if problems:
            raise MalformedEvent(str(ValidationError(problems)))
        return cls(
            message_id=message_id,
            sender_id=sender_id,
            sender_email=sender_email,
            recipients=recipients,
            subject=subject,
            body=body,
            created_at=created_at,
        )
