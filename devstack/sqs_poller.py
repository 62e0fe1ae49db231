"""A stand-in for Lambda's SQS event source mapping, so the mailer's real handler runs locally.

What it reproduces, because the handler's correctness depends on it:
- batches of up to `batch_size` messages, as an SQS event (`Records` with messageId, receiptHandle,
  body, attributes incl. ApproximateReceiveCount, messageAttributes, eventSourceARN, ...);
- ReportBatchItemFailures: successes are deleted, the reported failures are left alone to become
  visible again after the visibility timeout; a handler error, or a response naming ids that are
  not in the batch, fails the whole batch (as Lambda does);
- the queue's own redrive policy (moto implements maxReceiveCount) moves repeated failures to the
  dead-letter queue. Nothing here moves messages itself.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3

from devstack.service_imports import import_services

Handler = Callable[[dict[str, Any], Any], Any]
# The functions an SQS event source mapping feeds in the cloud (components/mailing/mailing.py).
HANDLERS = frozenset({"mailer.worker.handler", "mailer.ses_events.handler"})
_log = logging.getLogger("devstack.sqs_poller")


@dataclass
class LambdaContext:
    """The parts of Lambda's context object that handlers use; the deadline starts at creation."""

    function_name: str = "mailer"
    timeout_seconds: float = 30.0
    memory_limit_in_mb: int = 256
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    invoked_function_arn: str = ""
    log_group_name: str = ""
    log_stream_name: str = "local"
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds
        if not self.invoked_function_arn:
            self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"
        if not self.log_group_name:
            self.log_group_name = f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass(frozen=True)
class PollResult:
    received: int
    succeeded: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    error: str | None = None  # why the whole batch failed, if it did


def to_lambda_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """One SQS message as a record of the event Lambda passes to the function."""
    attributes = {key: str(value) for key, value in (message.get("Attributes") or {}).items()}
    message_attributes: dict[str, Any] = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
        converted: dict[str, Any] = {
            "stringListValues": list(value.get("StringListValues", [])),
            "binaryListValues": [_b64(v) for v in value.get("BinaryListValues", [])],
            "dataType": value.get("DataType", "String"),
        }
        if "StringValue" in value:
            converted["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            converted["binaryValue"] = _b64(value["BinaryValue"])
        message_attributes[name] = converted
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": queue_arn.split(":")[3] if queue_arn.count(":") >= 5 else "us-east-1",
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def _b64(value: bytes | str) -> str:
    import base64

    return base64.b64encode(value if isinstance(value, bytes) else value.encode()).decode()


def failed_ids(response: Any, batch_ids: list[str]) -> set[str] | None:
    """The ids a ReportBatchItemFailures response names, or None if Lambda would reject it.

    Lambda reads a missing, null or empty `batchItemFailures` as "all succeeded", and an entry
    with a missing, empty or unknown itemIdentifier as a failure of the whole batch.
    """
    if response is None or not isinstance(response, dict):
        return set()
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    ids: set[str] = set()
    for entry in failures:
        identifier = entry.get("itemIdentifier") if isinstance(entry, dict) else None
        if not isinstance(identifier, str) or identifier not in batch_ids:
            return None
        ids.add(identifier)
    return ids


class SqsPoller:
    def __init__(
        self,
        queue_url: str,
        handler: Handler,
        *,
        batch_size: int = 10,
        wait_time_seconds: int = 1,
        function_timeout: float = 30.0,
        function_name: str = "mailer",
        sqs: Any = None,
    ) -> None:
        if not 1 <= batch_size <= 10:
            raise ValueError("an SQS receive returns 1 to 10 messages")
        self.queue_url = queue_url
        self.handler = handler
        self.batch_size = batch_size
        self.wait_time_seconds = wait_time_seconds
        self.function_timeout = function_timeout
        self.function_name = function_name
        self._sqs = sqs or boto3.session.Session().client("sqs")
        self._queue_arn: str | None = None

    @property
    def queue_arn(self) -> str:
        if self._queue_arn is None:
            attributes = self._sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
            self._queue_arn = str(attributes["Attributes"]["QueueArn"])
        return self._queue_arn

    def run_once(self) -> PollResult:
        """Receive one batch (long-polling up to wait_time_seconds), invoke the handler, settle it."""
        received = self._sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=self.wait_time_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = received.get("Messages", [])
        if not messages:
            return PollResult(received=0)
        event = {"Records": [to_lambda_record(m, self.queue_arn) for m in messages]}
        batch_ids = [m["MessageId"] for m in messages]
        context = LambdaContext(function_name=self.function_name, timeout_seconds=self.function_timeout)
        try:
            response = self.handler(event, context)
        except Exception as err:
            _log.warning("handler failed; the whole batch will be redelivered: %r", err)
            return PollResult(received=len(messages), failed=tuple(batch_ids), error=repr(err))
        failed = failed_ids(response, batch_ids)
        if failed is None:
            _log.warning("invalid batchItemFailures %r; the whole batch will be redelivered", response)
            return PollResult(
                received=len(messages), failed=tuple(batch_ids), error="invalid batchItemFailures response"
            )
        done = [m for m in messages if m["MessageId"] not in failed]
        self._delete(done)
        return PollResult(
            received=len(messages),
            succeeded=tuple(m["MessageId"] for m in done),
            failed=tuple(i for i in batch_ids if i in failed),
        )

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        if not messages:
            return
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        result = self._sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        for failure in result.get("Failed", []):
            # Not fatal: the message comes back and the idempotent handler acknowledges it again.
            _log.warning("could not delete a processed message: %s", failure)

    def run_forever(self, stop: threading.Event) -> None:
        """Poll until `stop` is set; stops within one long-poll wait."""
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:
                _log.exception("polling failed; retrying in a second")
                stop.wait(1.0)

    def start_thread(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run_forever, args=(stop,), name="sqs-poller", daemon=True)
        thread.start()
        return thread


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Feed SQS batches to a mailer handler, like Lambda does.")
    parser.add_argument(
        "--handler",
        choices=sorted(HANDLERS),
        default="mailer.worker.handler",
        help="the function's handler (default: the mailer)",
    )
    parser.add_argument(
        "--queue-url", default=os.environ.get("MAIL_QUEUE_URL"), help="default: $MAIL_QUEUE_URL"
    )
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--wait-time-seconds", type=int, default=5)
    parser.add_argument("--function-timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    if not args.queue_url:
        parser.error("--queue-url or MAIL_QUEUE_URL is required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)

    import_services()
    module_name, _, function = args.handler.rpartition(".")
    handler = getattr(importlib.import_module(module_name), function)

    poller = SqsPoller(
        args.queue_url,
        handler,
        batch_size=args.batch_size,
        wait_time_seconds=args.wait_time_seconds,
        function_timeout=args.function_timeout,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    _log.info("polling %s", args.queue_url)
    poller.run_forever(stop)


if __name__ == "__main__":
    main()
