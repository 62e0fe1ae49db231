"""The mail event: what the API publishes to the queue and the worker consumes.

Everything that must be identical on every delivery (message id, creation time, the recipients'
addresses and the sender's name as the directory had them) is decided by the API before
publishing, so a redelivered event always produces the very same stored items and e-mails.

Version 2 names recipients by user id with the address the directory resolved; version 1 events
(raw addresses taken from the request) are refused and go to the dead-letter queue, where the
alarm shows them: nothing the API no longer allows is ever sent.
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
    USER_ID,
    Problem,
    SendRequest,
    ValidationError,
    check_body,
    check_subject,
    normalize_address,
)

EVENT_VERSION = 2
MAX_USER_ID_CHARS = 255
MAX_SENDER_NAME_CHARS = 100
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
class Recipient:
    user_id: str
    email: str  # from the directory when the message was accepted

    def as_dict(self) -> dict[str, str]:
        return {"user_id": self.user_id, "email": self.email}


def _recipients(value: Any, problems: list[Problem]) -> tuple[Recipient, ...]:
    if not isinstance(value, list) or not 0 < len(value) <= SES_MAX_DESTINATIONS:
        problems.append(Problem("recipients", f"must be a list of 1 to {SES_MAX_DESTINATIONS} recipients"))
        return ()
    found: dict[str, Recipient] = {}
    for index, entry in enumerate(value):
        user_id = entry.get("user_id") if isinstance(entry, dict) else None
        email = entry.get("email") if isinstance(entry, dict) else None
        if not isinstance(user_id, str) or not USER_ID.fullmatch(user_id):
            problems.append(Problem(f"recipients[{index}].user_id", "must be a user id"))
        elif not isinstance(email, str) or normalize_address(email) != email:
            problems.append(Problem(f"recipients[{index}].email", "must be a normalised e-mail address"))
        elif user_id in found:
            problems.append(Problem(f"recipients[{index}]", "duplicate recipient"))
        else:
            found[user_id] = Recipient(user_id, email)
    return tuple(found.values())


@dataclass(frozen=True, slots=True)
class MailMessage:
    message_id: str
    sender_id: str
    sender_email: str | None  # Reply-To: the sender's primary address in the directory
    sender_name: str | None  # the directory's display name, shown in the e-mail
    recipients: tuple[Recipient, ...]
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
        recipients: tuple[Recipient, ...],
        sender_name: str | None = None,
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
            sender_name=sender_name,
            recipients=recipients,
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
                "sender_name": self.sender_name,
                "recipients": [r.as_dict() for r in self.recipients],
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
        sender_name = document.get("sender_name")
        if sender_name is not None and (
            not isinstance(sender_name, str)
            or not 0 < len(sender_name) <= MAX_SENDER_NAME_CHARS
            or not sender_name.isprintable()
        ):
            problems.append(Problem("sender_name", "must be null or a printable display name"))
        created_at = _text(document, "created_at")
        if not CREATED_AT.fullmatch(created_at):
            problems.append(Problem("created_at", "must be a UTC timestamp like 2025-01-31T12:00:00.000Z"))
        recipients = _recipients(document.get("recipients"), problems)
        subject = check_subject(document.get("subject"), problems)
        body = check_body(document.get("body"), problems)
        if problems:
            raise MalformedEvent(str(ValidationError(problems)))
        return cls(
            message_id=message_id,
            sender_id=sender_id,
            sender_email=sender_email,
            sender_name=sender_name,
            recipients=recipients,
            subject=subject,
            body=body,
            created_at=created_at,
        )
