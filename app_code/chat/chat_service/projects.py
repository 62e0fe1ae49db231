"""What an instance keeps per project that has members on it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chat_service.connection import Connection


class ProjectState:
    """A project with members on this instance."""

    __slots__ = ("buffer", "mark", "members", "origins", "ready")

    def __init__(self, mark: str) -> None:
        # A tuple, replaced on join/leave: fan-out iterates it while a write may close a member.
        self.members: tuple[Connection, ...] = ()
        # Newest key delivered here from each origin instance: drops duplicates after a retry.
        self.origins: dict[str, str] = {}
        # Newest key delivered here at all (where a catch-up starts).
        self.mark = mark
        # Set while a catch-up runs: messages from Redis wait here so they follow the caught-up ones.
        self.buffer: list[tuple[str, bytes]] | None = None
        self.ready: asyncio.Future[None] | None = None
