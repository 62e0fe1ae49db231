"""What the two queue handlers (the mailer, the SES events handler) share of SQS's event shape."""

from __future__ import annotations

import logging
from typing import Any

from mailer.logs import log
from mailer.message import MalformedEvent


def sqs_records(event: Any, logger: logging.Logger) -> list[dict[str, Any]]:
    """The records of an SQS event, for a handler behind an event source mapping that reports batch
    item failures. Without a messageId a failure cannot be reported, and an unreported record counts
    as done: fail the whole invocation instead, so SQS redelivers and, in the end, redrives."""
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and isinstance(r.get("messageId"), str) and r["messageId"] for r in records
    ):
        log(
            logger, logging.ERROR, "not an SQS event; failing the invocation", event_type=type(event).__name__
        )
        raise MalformedEvent("expected an SQS event with Records that each have a messageId")
    return records
