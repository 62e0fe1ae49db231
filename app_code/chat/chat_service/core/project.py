"""What an instance keeps per project that has members on it, and where a catch-up after a gap starts."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final

from chat_service.core.keys import key_floor
from chat_service.core.member import Member

# A catch-up starts, for every project, from the last moment the instance knew its subscription
# was receiving (the last read on the connection that was lost), less an overlap for what was
# published around that moment, and no later than the lowest floor the other instances announced in
# their last beats before the gap. A floor bounds the ids of everything its instance publishes after
# that beat (ids are assigned before the store write, publishes follow it in id order, so a message
# whose write is slow holds its instance's floor back until it is published); Redis delivers one
# publisher's beats and messages in order, so what was published before the last beat heard was
# heard, and what came after has an id at or above that beat's floor. However slow a store write,
# the catch-up reaches back to it. Not from the newest id delivered here: the instance's own sends
# move that during the gap and would skip what others sent meanwhile.
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


def gap_start(heard_ms: int | None, state: ProjectState | None, floor_ms: int | None = None) -> str | None:
    """Where `state`'s catch-up starts after a gap whose subscription was last heard at `heard_ms`:
    that moment less the overlap, or the lowest peer floor `floor_ms` if that is earlier; but not
    before the project's first member joined here (less the overlap), which is also the start when
    there was no earlier subscription. (A member that joined later fetched history after `joined`,
    and a message is stored before it is published: what its history missed reached it live.)"""
    if state is None:
        return None
    joined = state.created_ms - CATCHUP_OVERLAP_MS
    since = joined if heard_ms is None else heard_ms - CATCHUP_OVERLAP_MS
    if floor_ms is not None:
        since = min(since, floor_ms)
    return key_floor(max(since, joined))
