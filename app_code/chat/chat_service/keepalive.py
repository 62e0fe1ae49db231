"""The ping sweep: one timer for every connection, instead of a task or a timer each."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Set

from chat_service import protocol as proto
from chat_service.authentication import TOKEN_LEEWAY_SECONDS
from chat_service.connection import OPEN, Connection


async def sweep(connections: Set[Connection], interval: float) -> None:
    """Ping every open connection each interval; drop the ones that stayed silent since the last
    ping, and the ones whose token expired (clients refresh it with an `auth` message)."""
    while True:
        await asyncio.sleep(interval)
        now = time.time()
        for conn in list(connections):
            if conn.state != OPEN:
                continue
            assert conn.identity is not None
            if conn.pinged and not conn.seen:
                conn.close(proto.CLOSE_GOING_AWAY, "ping timeout")
                conn.raw.abort()
            elif conn.identity.expires_at + TOKEN_LEEWAY_SECONDS < now:
                conn.close(proto.CLOSE_UNAUTHORIZED, "unauthorized: token expired")
            else:
                conn.seen = False
                conn.pinged = True
                try:
                    conn.transport.send_ping()
                except RuntimeError:
                    conn.lost()
