"""The mailer Lambda: SQS batches in, one e-mail per message out, via SES.

Per record: parse and validate the event, store the message (idempotent), then per recipient claim
the send, call SES with that recipient alone, record the result (the claim protocol is described in `mailer.store`). Records of a batch
run concurrently on a thread pool: they are independent and each is mostly waiting on the network.

Only the records that failed are returned in `batchItemFailures` (the event source mapping has
ReportBatchItemFailures on), so SQS redelivers just those; the rest are deleted. A record that
can never succeed (malformed event, outcome unknown) keeps failing until the queue's redrive
policy moves it to the dead-letter queue, where an alarm watches: nothing is dropped silently.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mailer.logs import get_logger, log
from mailer.message import MailMessage, MalformedEvent, utc_timestamp
from mailer.metrics import DELIVERIES_UNKNOWN, EMAILS_SENT, emf
from mailer.settings import Settings
from mailer.sqs import sqs_records
from mailer.store import MessageStore

DEFAULT_CONCURRENCY = 10
# Without a Lambda context (direct calls), assume the longest a Lambda can run.
DEFAULT_REMAINING_MS = 15 * 60 * 1000
# A lease must outlive its holder even if clocks of two Lambda hosts disagree a little.
LEASE_MARGIN_MS = 10_000


def compose(message: MailMessage) -> tuple[str, str]:
    """Subject and body of the e-mail: both say which Motion user sent it, since From is the
    service's no-reply address for every sender (Reply-To is the sender's own)."""
    sender = message.sender_name or f"Motion user {message.sender_id}"
    subject = f"{sender} via Motion: {message.subject}"
    body = f"{sender} sent you this message through Motion.\n\n{message.body}"
    return subject, body


class Worker:
    def __init__(
        self,
        settings: Settings,
        store: MessageStore,
        ses: Any,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        logger: logging.Logger | None = None,
    ) -> None:
        if settings.sender_address is None:
            raise ValueError("the worker needs SENDER_ADDRESS")
        self._settings = settings
        self._sender = settings.sender_address
        self._store = store
        self._ses = ses
        self._concurrency = max(1, concurrency)
        self._log = logger or get_logger(settings.log_level)

    def handle(self, event: Any, context: Any = None) -> dict[str, Any]:
        started = time.monotonic()
        records = sqs_records(event, self._log)
        request_id = getattr(context, "aws_request_id", None)
        remaining_ms = DEFAULT_REMAINING_MS
        if context is not None and hasattr(context, "get_remaining_time_in_millis"):
            remaining_ms = int(context.get_remaining_time_in_millis())
        lease_until_ms = int(time.time() * 1000) + remaining_ms + LEASE_MARGIN_MS

        def run(record: dict[str, Any]) -> bool:
            return self.process(record, lease_until_ms, request_id)

        if len(records) <= 1 or self._concurrency == 1:
            results = [run(record) for record in records]
        else:
            workers = min(self._concurrency, len(records))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mailer") as pool:
                results = list(pool.map(run, records))

        failures = [
            {"itemIdentifier": r["messageId"]} for r, ok in zip(records, results, strict=True) if not ok
        ]
        log(
            self._log,
            logging.INFO,
            "batch done",
            aws_request_id=request_id,
            records=len(records),
            failed=len(failures),
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        return {"batchItemFailures": failures}

    def process(self, record: dict[str, Any], lease_until_ms: int, request_id: str | None = None) -> bool:
        """Handle one record; True when it is done (sent now or before), False to have it redelivered."""
        attributes = record.get("attributes")
        fields: dict[str, Any] = {
            "sqs_message_id": record["messageId"],
            "receive_count": attributes.get("ApproximateReceiveCount")
            if isinstance(attributes, dict)
            else None,
            "aws_request_id": request_id,
        }
        try:
            return self._process(record, lease_until_ms, fields)
        except Exception as err:
            # One record's surprise must not fail its neighbours (they would be redelivered too).
            log(
                self._log,
                logging.ERROR,
                "record failed",
                exc_info=True,
                outcome="retry",
                reason=repr(err),
                **fields,
            )
            return False

    def _process(self, record: dict[str, Any], lease_until_ms: int, fields: dict[str, Any]) -> bool:
        try:
            message = MailMessage.from_event(record.get("body"))
        except MalformedEvent as err:
            log(
                self._log,
                logging.ERROR,
                "malformed event; it stays failed until the redrive policy moves it to the dead-letter queue",
                outcome="malformed",
                reason=str(err),
                **fields,
            )
            return False
        fields["message_id"] = message.message_id
        fields["newly_stored"] = self._store.save(message)
        # What was stored, which may differ from this event (see `MessageStore.save`).
        stored = self._store.stored_message(message.message_id) or message
        # One e-mail per recipient: nobody sees who else got it, and each has its own claim, so a
        # failure for one recipient retries that recipient only.
        done = [
            self._deliver(stored, position, lease_until_ms, fields)
            for position in range(len(stored.recipients))
        ]
        if not all(done):
            return False
        self._store.mark_message_sent(message.message_id)
        return True

    def _deliver(
        self, message: MailMessage, position: int, lease_until_ms: int, fields: dict[str, Any]
    ) -> bool:
        """The e-mail to the message's recipient at `position` (its SES tag, see `_send`)."""
        recipient = message.recipients[position]
        fields = {**fields, "recipient_id": recipient.user_id}
        claim = self._store.claim(
            message.message_id, recipient.user_id, lease_until_ms, int(time.time() * 1000)
        )
        if claim.outcome == "already_sent":
            log(
                self._log,
                logging.INFO,
                "already sent; duplicate delivery ignored",
                outcome="duplicate",
                **fields,
            )
            return True
        if claim.outcome == "in_flight":
            log(
                self._log,
                logging.WARNING,
                "another invocation holds the send claim",
                outcome="retry",
                **fields,
            )
            return False
        newly_unknown = False
        if claim.outcome == "stale" and claim.claim_id is not None:
            newly_unknown = self._store.mark_unknown(
                message.message_id,
                recipient.user_id,
                claim.claim_id,
                "the handler stopped between starting the SES call and recording its answer",
            )
        if claim.outcome != "claimed" or claim.claim_id is None:
            log(
                self._log,
                logging.ERROR,
                "delivery outcome unknown; not sending again (check SES events for this message id)",
                outcome="unknown",
                reason="the handler stopped between starting the SES call and recording its answer",
                **fields,
                # Counted once, when the delivery becomes unknown (redeliveries count 0).
                **emf({DELIVERIES_UNKNOWN: int(newly_unknown)}),
            )
            return False
        fields["attempt"] = claim.attempts
        if not self._store.begin_send(message.message_id, recipient.user_id, claim.claim_id):
            log(
                self._log,
                logging.WARNING,
                "the claim ran out before the send and was taken over; not sending",
                outcome="retry",
                **fields,
            )
            return False
        return self._send(message, position, claim.claim_id, fields)

    def _send(self, message: MailMessage, position: int, claim_id: str, fields: dict[str, Any]) -> bool:
        from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError

        recipient = message.recipients[position]
        subject, body = compose(message)
        request: dict[str, Any] = {
            "FromEmailAddress": self._sender,
            "Destination": {"ToAddresses": [recipient.email]},
            "Content": {
                "Simple": {
                    "Subject": {"Data": subject, "Charset": "UTF-8"},
                    "Body": {"Text": {"Data": body, "Charset": "UTF-8"}},
                }
            },
            # Lets SES event publishing (bounces, deliveries) be matched to the stored message.
            # The recipient's position in the stored message, not their id or address: tag values
            # allow only letters, digits, _ and - (SES API Reference, MessageTag).
            "EmailTags": [
                {"Name": "message_id", "Value": message.message_id},
                {"Name": "recipient", "Value": str(position)},
            ],
        }
        if message.sender_email is not None:
            request["ReplyToAddresses"] = [message.sender_email]
        if self._settings.ses_configuration_set is not None:
            request["ConfigurationSetName"] = self._settings.ses_configuration_set
        try:
            response = self._ses.send_email(**request)
        except ClientError as err:
            # SES answered with an error, so it did not take the e-mail: retrying cannot duplicate.
            code = str(err.response.get("Error", {}).get("Code", "Unknown"))
            self._store.release(message.message_id, recipient.user_id, claim_id, f"SES {code}")
            permanent = code in ("MessageRejected", "BadRequestException", "NotFoundException")
            log(
                self._log,
                logging.ERROR if permanent else logging.WARNING,
                "SES refused the e-mail; released for redelivery",
                outcome="retry",
                ses_error=code,
                permanent=permanent,
                **fields,
            )
            return False
        except (EndpointConnectionError, ConnectTimeoutError) as err:
            # No connection was made, so no request reached SES.
            self._store.release(message.message_id, recipient.user_id, claim_id, f"connection failed: {err}")
            log(
                self._log,
                logging.WARNING,
                "SES unreachable; released for redelivery",
                outcome="retry",
                **fields,
            )
            return False
        except Exception as err:
            # The request may have reached SES (read timeout, dropped connection): it may have been
            # sent. Never guess "no".
            reason = f"SES call ended without an answer: {err!r}"
            newly_unknown = self._store.mark_unknown(message.message_id, recipient.user_id, claim_id, reason)
            log(
                self._log,
                logging.ERROR,
                "SES outcome unknown; not sending again (check SES events for this message id)",
                exc_info=True,
                outcome="unknown",
                reason=reason,
                **fields,
                **emf({DELIVERIES_UNKNOWN: int(newly_unknown)}),
            )
            return False

        ses_message_id = str(response.get("MessageId", ""))
        try:
            self._store.mark_sent(
                message.message_id, recipient.user_id, claim_id, ses_message_id, utc_timestamp()
            )
        except Exception:
            # Sent but not recorded: the live claim blocks resends until it expires, after which
            # the message is declared unknown. Failing the record keeps the gap visible.
            log(
                self._log,
                logging.ERROR,
                "sent, but recording it failed",
                exc_info=True,
                outcome="sent_unrecorded",
                ses_message_id=ses_message_id,
                **fields,
                # SES took it: counted as sent once, here (no later invocation sends it again).
                **emf({EMAILS_SENT: 1}),
            )
            return False
        log(
            self._log,
            logging.INFO,
            "sent",
            outcome="sent",
            ses_message_id=ses_message_id,
            **fields,
            **emf({EMAILS_SENT: 1}),
        )
        return True


_lock = threading.Lock()
_worker: Worker | None = None


def _default_worker() -> Worker:
    global _worker
    with _lock:
        if _worker is None:
            from mailer import aws

            settings = Settings.from_env("worker")
            # The pool must hold a connection per concurrent record, or threads queue for sockets.
            pool = DEFAULT_CONCURRENCY
            store = MessageStore(aws.client("dynamodb", pool_size=pool), settings.messages_table)
            # One attempt only: an SDK retry after a read timeout could send a second e-mail.
            # Retries happen through SQS redelivery, behind the claim.
            ses = aws.client("sesv2", pool_size=pool, max_attempts=1)
            _worker = Worker(settings, store, ses)
        return _worker


def reset() -> None:
    """Forget the worker built from the environment (tests and local runs change the environment)."""
    global _worker
    with _lock:
        _worker = None


def handler(event: Any, context: Any) -> dict[str, Any]:
    return _default_worker().handle(event, context)
