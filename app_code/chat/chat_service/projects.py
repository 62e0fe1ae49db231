"""What an instance keeps per project that has members on it."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chat_service.connection import Connection


class ProjectState:
    """A project with members on this instance."""

    __slots__ = (
        "buffer",
        "catching",
        "catchup_from",
        "confirmed",
        "created_ms",
        "members",
        "ready",
        "seen",
        "seen_order",
    )

    def __init__(self, created_ms: int) -> None:
        # A tuple, replaced on join/leave: fan-out iterates it while a write may close a member.
        self.members: tuple[Connection, ...] = ()
        # Every key delivered to the members here lately (own sends, Redis, catch-ups, resends), in
        # arrival order too: duplicates are dropped by exact id. Not by a newest-key-per-origin
        # mark: a catch-up or a resend delivers keys out of their origin's publish order, and a
        # mark would then drop older keys still on their way.
        self.seen: set[str] = set()
        self.seen_order: deque[str] = deque()
        # When the first member joined here: no catch-up need reach back further than this.
        self.created_ms = created_ms
        # Where the next catch-up starts (the earliest gap not yet filled), None when none is due.
        self.catchup_from: str | None = None
        # A catch-up task is running for the project (it takes `catchup_from` until none is left).
        self.catching = False
        # The latest subscription's confirmation: each pass of a catch-up waits for it, so it never
        # queries while nothing is subscribed (a connection that died before confirming).
        self.confirmed: asyncio.Future[list[None]] | None = None
        # Set while a catch-up runs: messages from Redis wait here so they follow the caught-up ones.
        self.buffer: list[tuple[str, bytes]] | None = None
        self.ready: asyncio.Future[None] | None = None
