"""A stored message, and what a store says about a write of several."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class StoredMessage:
    project: str
    key: str
    user: str
    text: str
    ts: int
    # The sender's id for the message (protocol `client_id`); not part of the event or the item.
    client_id: str | None = None

    def event(self) -> dict[str, Any]:
        return {
            "type": "message",
            "project": self.project,
            "id": self.key,
            "user": self.user,
            "text": self.text,
            "ts": self.ts,
        }


class PartialWriteError(RuntimeError):
    """Some messages of a batch were stored and these (by key) were not: only their senders fail."""

    def __init__(self, unwritten: set[str]) -> None:
        super().__init__(f"DynamoDB left {len(unwritten)} messages unprocessed")
        self.unwritten = unwritten


@dataclass(slots=True)
class WriteResult:
    # Key -> the message stored under the same client id before (this one was not stored).
    earlier: dict[str, StoredMessage] = field(default_factory=dict)
    # Keys of messages that were not stored (their senders are told to send again).
    unwritten: set[str] = field(default_factory=set)
