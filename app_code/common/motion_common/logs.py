"""Structured logs for the container services: one JSON object per line on stdout, and on every
line written while a request is handled, that request's id.

CloudWatch Logs Insights then filters on fields (`level`, `logger`, `request_id`) without parsing
text, and one request can be followed across services: the id is the ALB's trace id
(`X-Amzn-Trace-Id`, "Root=1-..."; the ALB adds it to every request it forwards, "Request tracing
for your Application Load Balancer", ELB User Guide) where there is one, else a fresh one. The id
lives in a context variable, so asyncio tasks started for the request carry it too, and code that
logs needs no parameter for it.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Any, Final

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
TRACE_HEADER: Final = "x-amzn-trace-id"
# A trace header longer than this is not the ALB's; its Root is taken only when it looks like one.
_MAX_TRACE_CHARS: Final = 256
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def request_id_from(trace_header: str | None) -> str:
    """The ALB trace id's `Root` (e.g. `1-67891233-abcdef012345678912345678`), or a new id."""
    if trace_header and len(trace_header) <= _MAX_TRACE_CHARS:
        for part in trace_header.split(";"):
            key, _, value = part.strip().partition("=")
            if key == "Root" and value and all(c.isalnum() or c == "-" for c in value) and len(value) <= 64:
                return value
    return new_request_id()


def new_request_id() -> str:
    return os.urandom(12).hex()


@contextlib.contextmanager
def request_context(request_id: str) -> Iterator[str]:
    token = REQUEST_ID.set(request_id)
    try:
        yield request_id
    finally:
        REQUEST_ID.reset(token)


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, request_id (when set), any `extra` fields, error."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            document["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                document[key] = value
        if record.exc_info:
            document["error"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str, ensure_ascii=False)


def configure(level: str = "INFO") -> None:
    """Every logger of the process (the service's, uvicorn's, the libraries') as JSON on stdout."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "picows"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
