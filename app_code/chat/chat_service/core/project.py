"""What an instance keeps per project that has members on it, and where a catch-up after a gap starts."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final

from chat_service.core.keys import key_floor
from chat_service.core.member import Member

# A catch-up starts, for every project, from the last moment the instance knew its subscription
# was receiving (the last read on the connection that was lost), less the longest a message can be
# between getting its id and being published: ids are assigned before the store write, publishes
# follow it. A write normally takes milliseconds; the store client's timeouts (2 s connect, 5 s
# read) and retries (botocore's `max_attempts` 4 are retries, so 5 attempts, with backoff) let a
# single slow call reach ~40 s, and unprocessed items are retried on top. The overlap covers the
# ordinary slow write; a message published later than that after its id is logged as a warning
# (Hub.persisted), because a member whose subscription broke meanwhile may then miss it live
# (it stays in history). Not from the newest id delivered here:
# the instance's own sends move that during the gap and would skip what others sent meanwhile.
CATCHUP_OVERLAP_MS: Final = 30_000


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
        # A tuple, replaced on join/leave (by `Membership` only): fan-out iterates it while a write
        # may close a member.
        self.members: tuple[Member, ...] = ()
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


def gap_start(heard_ms: int | None, state: ProjectState | None) -> str | None:
    """Where `state`'s catch-up starts after a gap whose subscription was last heard at `heard_ms`:
    that moment less the overlap, but not before the project's first member joined here (less the
    overlap), which is also the start when there was no earlier subscription."""
    if state is None:
        return None
    joined = state.created_ms - CATCHUP_OVERLAP_MS
    since = joined if heard_ms is None else max(heard_ms - CATCHUP_OVERLAP_MS, joined)
    return key_floor(since)
