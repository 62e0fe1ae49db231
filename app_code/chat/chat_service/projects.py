"""What an instance keeps per project that has members on it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chat_service.connection import Connection


class ProjectState:
    """A project with members on this instance."""

    __slots__ = ("buffer", "catching", "catchup_from", "created_ms", "members", "origins", "ready")

    def __init__(self, created_ms: int) -> None:
        # A tuple, replaced on join/leave: fan-out iterates it while a write may close a member.
        self.members: tuple[Connection, ...] = ()
        # Newest key delivered here from each origin instance: drops duplicates after a retry.
        self.origins: dict[str, str] = {}
        # When the first member joined here: no catch-up need reach back further than this.
        self.created_ms = created_ms
        # Where the next catch-up starts (the earliest gap not yet filled), None when none is due.
        self.catchup_from: str | None = None
        # A catch-up task is running for the project (it takes `catchup_from` until none is left).
        self.catching = False
        # Set while a catch-up runs: messages from Redis wait here so they follow the caught-up ones.
        self.buffer: list[tuple[str, bytes]] | None = None
        self.ready: asyncio.Future[None] | None = None
