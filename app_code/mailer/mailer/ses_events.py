"""The SES events Lambda: the configuration set's sending events in, each recipient's outcome out.

SES publishes an event for every e-mail sent with the configuration set (event publishing to an
SNS topic the mailing component owns; the topic delivers to a queue this function reads). The
record body is the event document itself (the subscription uses raw message delivery) or, should
raw delivery be off, SNS's notification envelope with the document as its `Message`; both are
read. The document's shape is SES's ("Contents of event data that Amazon SES publishes to Amazon
SNS", SES Developer Guide): `eventType` (Send, Delivery, Bounce, Complaint, Reject, DeliveryDelay,
Rendering Failure; Open, Click and Subscription are not published to us), `mail` (with `messageId`
and `tags`, which carry the e-mail tags the mailer set: our message id and the recipient's
position, `mailer.worker`), and one object named after the type.

Each event moves its delivery's outcome up one ladder, never down, so SNS's at-least-once
delivery and out-of-order arrival change nothing: accepted < delayed < delivered < bounced,
rejected, failed < complained (a complaint can follow a delivery; a late permanent bounce can
follow a delivery too, a soft one, Transient or Undetermined, ranks with `delayed` and never
replaces `delivered`). The API shows the sender each recipient's outcome (`mailer.store`).

Any event is also SES's evidence that it accepted the e-mail: a delivery whose state the mailer
could not record (`sending` past its holder, or `unknown`) becomes `sent` with that evidence, and
the message's state is summed up again. Suppression is SES's own: the configuration set adds an
address to the account-level suppression list on a hard bounce or a complaint, and SES then
drops later e-mails to it, reporting a Bounce of subtype `OnAccountSuppressionList`, recorded here
as `suppressed`.

A record that cannot be read is left failed until the redrive policy moves it to the events
dead-letter queue (alarmed); an event for a message or recipient we do not know is logged and
dropped, since no retry can make it known, and counted (`EventsDropped`, alarmed: our tags on an
e-mail that names nothing of ours are a bug or a forgery).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Final

from mailer.logs import get_logger, log
from mailer.message import MalformedEvent
from mailer.metrics import (
    EMAILS_BOUNCED,
    EMAILS_COMPLAINED,
    EMAILS_DELIVERED,
    EVENTS_DROPPED,
    SENDS_CONFIRMED,
    emf,
)
from mailer.settings import Settings
from mailer.sqs import sqs_records
from mailer.store import MessageStore

# eventType -> (outcome, rank on the ladder). The object holding the details is named after the
# type in camelCase (`deliveryDelay`, `failure` for Rendering Failure).
LADDER: Final[dict[str, tuple[str, int]]] = {
    "Send": ("accepted", 1),
    "DeliveryDelay": ("delayed", 2),
    "Delivery": ("delivered", 3),
    "Bounce": ("bounced", 4),
    "Reject": ("rejected", 4),
    "Rendering Failure": ("failed", 4),
    "Complaint": ("complained", 5),
}
# Not published by the configuration set (no open or click tracking, no subscription management).
IGNORED: Final = frozenset({"Open", "Click", "Subscription"})
# SES's bounce and complaint subtype for an e-mail it accepted but did not send, the address being
# on the account's suppression list ("Bounce" and "Complaint" types, SES API Reference v2); a
# permanent bounce of subtype "Suppressed" is the same for SES's global suppression list. Recorded
# as `suppressed`, with a bounce's rank: nothing reached the recipient, and nobody complained.
SUPPRESSED_SUBTYPE: Final = "OnAccountSuppressionList"
GLOBALLY_SUPPRESSED_SUBTYPE: Final = "Suppressed"
SUPPRESSED_RANK: Final = 4
# A bounce SES calls Transient (or Undetermined) is soft: "SES might be able to successfully deliver
# to this recipient in the future" (SES Developer Guide, "Bounce types"), and such a report can
# follow a delivery (an auto-reply or a mailbox-full notice sent after the receiving server accepted
# the e-mail). It is recorded as `bounced` while nothing better is known, but never replaces
# `delivered`; a Permanent bounce does (SES puts the address on the suppression list for it).
SOFT_BOUNCE_RANK: Final = 2
PERMANENT_BOUNCE: Final = "Permanent"
MAX_DETAIL_CHARS: Final = 1000


@dataclass(frozen=True, slots=True)
class SesEvent:
    event_type: str
    outcome: str
    rank: int
    message_id: str  # ours, from the `message_id` tag
    position: int  # the recipient's index in the stored message, from the `recipient` tag
    ses_message_id: str
    at: str  # when it happened (the event's own timestamp, else the e-mail's)
    detail: str  # what an operator needs: bounce type and diagnostic, complaint type, reason
    addresses: tuple[str, ...]  # the recipients the event names (ours: exactly one)


def _object(document: Any, key: str) -> dict[str, Any]:
    value = document.get(key) if isinstance(document, dict) else None
    if not isinstance(value, dict):
        raise MalformedEvent(f"`{key}` must be an object")
    return value


def _tag(tags: dict[str, Any], name: str) -> str:
    # Tags arrive as lists of values ({"message_id": ["..."]}).
    values = tags.get(name)
    if not isinstance(values, list) or len(values) != 1 or not isinstance(values[0], str) or not values[0]:
        raise MalformedEvent(f"`mail.tags.{name}` must hold one value")
    value: str = values[0]
    return value


def _addresses(details: dict[str, Any], key: str) -> tuple[str, ...]:
    entries = details.get(key)
    if not isinstance(entries, list):
        return ()
    found = []
    for entry in entries:
        address = entry.get("emailAddress") if isinstance(entry, dict) else entry
        if isinstance(address, str) and address:
            found.append(address)
    return tuple(found)


def _details(event_type: str, document: dict[str, Any]) -> tuple[str, str, tuple[str, ...], str | None]:
    """(outcome, detail, addresses named, timestamp) from the type's own object."""
    outcome = LADDER[event_type][0]
    if event_type == "Send":
        return outcome, "", (), None
    key = {"Rendering Failure": "failure", "DeliveryDelay": "deliveryDelay"}.get(
        event_type, event_type.lower()
    )
    details = _object(document, key)
    at = details.get("timestamp") if isinstance(details.get("timestamp"), str) else None
    if event_type == "Bounce":
        kind, subtype = str(details.get("bounceType", "")), str(details.get("bounceSubType", ""))
        recipients = details.get("bouncedRecipients")
        diagnostic = ""
        if isinstance(recipients, list) and recipients and isinstance(recipients[0], dict):
            diagnostic = str(recipients[0].get("diagnosticCode") or recipients[0].get("status") or "")
        if subtype in (SUPPRESSED_SUBTYPE, GLOBALLY_SUPPRESSED_SUBTYPE):
            outcome = "suppressed"
        return outcome, f"{kind}/{subtype} {diagnostic}".strip(), _addresses(details, "bouncedRecipients"), at
    if event_type == "Complaint":
        if details.get("complaintSubType") == SUPPRESSED_SUBTYPE:
            return "suppressed", SUPPRESSED_SUBTYPE, _addresses(details, "complainedRecipients"), at
        kind = str(details.get("complaintFeedbackType") or "")
        return outcome, kind, _addresses(details, "complainedRecipients"), at
    if event_type == "Delivery":
        return outcome, str(details.get("smtpResponse", "")), _addresses(details, "recipients"), at
    if event_type == "DeliveryDelay":
        return outcome, str(details.get("delayType", "")), _addresses(details, "delayedRecipients"), at
    if event_type == "Reject":
        return outcome, str(details.get("reason", "")), (), at
    return outcome, str(details.get("errorMessage", "")), (), at


def parse(body: Any) -> SesEvent | None:
    """The event in an SQS record body; None for types we take no action on. Raises
    MalformedEvent for anything that is not an SES event document (or SNS's envelope of one)."""
    if not isinstance(body, str):
        raise MalformedEvent("the record has no body")
    try:
        document = json.loads(body)
    except ValueError as err:
        raise MalformedEvent(f"the body is not JSON: {err}") from None
    if isinstance(document, dict) and document.get("Type") == "Notification":
        message = document.get("Message")
        if not isinstance(message, str):
            raise MalformedEvent("an SNS notification without a Message")
        try:
            document = json.loads(message)
        except ValueError as err:
            raise MalformedEvent(f"the SNS Message is not JSON: {err}") from None
    if not isinstance(document, dict):
        raise MalformedEvent("the event must be an object")
    event_type = document.get("eventType")
    if event_type in IGNORED:
        return None
    if not isinstance(event_type, str) or event_type not in LADDER:
        raise MalformedEvent(f"unknown eventType {event_type!r}")
    mail = _object(document, "mail")
    tags = _object(mail, "tags")
    message_id = _tag(tags, "message_id")
    position_text = _tag(tags, "recipient")
    if not (position_text.isascii() and position_text.isdigit()) or len(position_text) > 4:
        raise MalformedEvent("`mail.tags.recipient` must be a recipient's position")
    ses_message_id = mail.get("messageId")
    if not isinstance(ses_message_id, str) or not ses_message_id:
        raise MalformedEvent("`mail.messageId` must be set")
    outcome, detail, addresses, at = _details(event_type, document)
    sent_at = mail.get("timestamp")
    when = at or (sent_at if isinstance(sent_at, str) else "")
    if not addresses:
        destination = mail.get("destination")
        if isinstance(destination, list):
            addresses = tuple(a for a in destination if isinstance(a, str) and a)
    return SesEvent(
        event_type=event_type,
        outcome=outcome,
        rank=_rank(event_type, outcome, document),
        message_id=message_id,
        position=int(position_text),
        ses_message_id=ses_message_id,
        at=when[:40],
        detail=detail[:MAX_DETAIL_CHARS],
        addresses=addresses,
    )


def _rank(event_type: str, outcome: str, document: dict[str, Any]) -> int:
    if outcome == "suppressed":
        return SUPPRESSED_RANK
    if event_type == "Bounce" and document["bounce"].get("bounceType") != PERMANENT_BOUNCE:
        return SOFT_BOUNCE_RANK
    return LADDER[event_type][1]


class EventRecorder:
    def __init__(
        self, settings: Settings, store: MessageStore, *, logger: logging.Logger | None = None
    ) -> None:
        self._store = store
        self._log = logger or get_logger(settings.log_level)

    def handle(self, event: Any, context: Any = None) -> dict[str, Any]:
        started = time.monotonic()
        request_id = getattr(context, "aws_request_id", None)
        records = sqs_records(event, self._log)
        counts = {
            EMAILS_DELIVERED: 0,
            EMAILS_BOUNCED: 0,
            EMAILS_COMPLAINED: 0,
            SENDS_CONFIRMED: 0,
            EVENTS_DROPPED: 0,
        }
        failures = []
        for record in records:
            if not self._process(record, request_id, counts):
                failures.append({"itemIdentifier": record["messageId"]})
        # One metrics document per batch: what the batch recorded, at no cost per event.
        log(
            self._log,
            logging.INFO,
            "events batch done",
            aws_request_id=request_id,
            records=len(records),
            failed=len(failures),
            duration_ms=round((time.monotonic() - started) * 1000, 1),
            **emf(counts),
        )
        return {"batchItemFailures": failures}

    def _process(self, record: dict[str, Any], request_id: str | None, counts: dict[str, int]) -> bool:
        fields: dict[str, Any] = {"sqs_message_id": record["messageId"], "aws_request_id": request_id}
        try:
            parsed = parse(record.get("body"))
        except Exception as err:  # whatever the bytes, this record fails alone, never its batch
            log(
                self._log,
                logging.ERROR,
                "malformed SES event; it stays failed until the redrive policy moves it to the dead-letter queue",
                outcome="malformed",
                reason=str(err),
                **fields,
            )
            return False
        if parsed is None:
            return True
        fields.update(
            message_id=parsed.message_id,
            recipient=parsed.position,
            event_type=parsed.event_type,
            ses_message_id=parsed.ses_message_id,
        )
        try:
            return self._record(parsed, fields, counts)
        except Exception as err:
            log(
                self._log,
                logging.ERROR,
                "recording the event failed",
                exc_info=True,
                reason=repr(err),
                **fields,
            )
            return False

    def _record(self, event: SesEvent, fields: dict[str, Any], counts: dict[str, int]) -> bool:
        message = self._store.stored_message(event.message_id)
        if message is None or event.position >= len(message.recipients):
            log(self._log, logging.WARNING, "SES event for a message or recipient we do not know", **fields)
            counts[EVENTS_DROPPED] += 1
            return True
        recipient = message.recipients[event.position]
        named = {a.strip().lower() for a in event.addresses}
        if named and recipient.email.strip().lower() not in named:
            # Tags are ours, addresses SES's: a mismatch means the tags do not describe this e-mail.
            log(self._log, logging.ERROR, "SES event names another address than the recipient's", **fields)
            counts[EVENTS_DROPPED] += 1
            return True
        fields["recipient_id"] = recipient.user_id
        confirmed = self._store.confirm_sent(
            event.message_id, recipient.user_id, event.ses_message_id, event.at
        )
        if confirmed:
            counts[SENDS_CONFIRMED] += 1
            self._store.sum_up(event.message_id, len(message.recipients))
        recorded = self._store.record_outcome(
            event.message_id, recipient.user_id, event.outcome, event.rank, event.at, event.detail
        )
        if recorded:
            if event.outcome == "delivered":
                counts[EMAILS_DELIVERED] += 1
            elif event.outcome in ("bounced", "suppressed"):
                counts[EMAILS_BOUNCED] += 1
            elif event.outcome == "complained":
                counts[EMAILS_COMPLAINED] += 1
        level = (
            logging.WARNING
            if event.outcome in ("bounced", "complained", "rejected", "failed")
            else logging.INFO
        )
        log(
            self._log,
            level,
            "SES event recorded" if recorded else "SES event already reflected",
            outcome=event.outcome,
            detail=event.detail,
            confirmed_sent=confirmed,
            **fields,
        )
        return True


_lock = threading.Lock()
_recorder: EventRecorder | None = None


def _default_recorder() -> EventRecorder:
    global _recorder
    with _lock:
        if _recorder is None:
            from mailer import aws

            settings = Settings.from_env("events")
            _recorder = EventRecorder(settings, MessageStore(aws.client("dynamodb"), settings.messages_table))
        return _recorder


def reset() -> None:
    """Forget the recorder built from the environment (tests and local runs change it)."""
    global _recorder
    with _lock:
        _recorder = None


def handler(event: Any, context: Any) -> dict[str, Any]:
    return _default_recorder().handle(event, context)
