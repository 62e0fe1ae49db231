"""Structured JSON logs, one object per line, so CloudWatch Logs Insights can filter on fields.

Lambda's Python runtime puts its own handler on the root logger; ours is a separate `mailer`
logger that does not propagate, so each line is exactly one JSON document with our fields.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_LOGGER_NAME = "mailer"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            document.update(fields)
        if record.exc_info:
            document["error"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str, ensure_ascii=False)


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stdout` is at emit time (the Lambda runtime and pytest replace it)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def get_logger(level: str = "INFO") -> logging.Logger:
    logger = logging.getLogger(_LOGGER_NAME)
    if not any(isinstance(h, _StdoutHandler) for h in logger.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)
    # A host process's dictConfig() (local runs load the handlers into one process) disables
    # loggers that exist by then; ours must keep talking.
    logger.disabled = False
    return logger


def log(logger: logging.Logger, level: int, message: str, /, exc_info: bool = False, **fields: Any) -> None:
    """Log `message` with `fields` as top-level JSON keys (message_id, outcome, ...)."""
    if logger.isEnabledFor(level):
        logger.log(level, message, extra={"fields": fields}, exc_info=exc_info)
