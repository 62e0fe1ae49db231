"""The ping sweep: one timer for every connection, instead of a task or a timer each."""

from __future__ import annotations

import asyncio
from collections.abc import Set

from chat_service.adapters.listener import Listener


async def sweep(listeners: Set[Listener], interval: float) -> None:
    """Ping every open connection each interval; drop the ones that stayed silent since the last
    ping (`Listener.keepalive`). Token expiry is not checked here but by each session's own deadline
    (`Session.arm`), which a sweep this coarse would overshoot by up to an interval."""
    while True:
        await asyncio.sleep(interval)
        for listener in list(listeners):
            listener.keepalive()
