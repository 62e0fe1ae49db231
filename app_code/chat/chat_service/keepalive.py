"""The ping sweep: one timer for every connection, instead of a task or a timer each."""

from __future__ import annotations

import asyncio
from collections.abc import Set

from chat_service import protocol as proto
from chat_service.connection import OPEN, Connection


async def sweep(connections: Set[Connection], interval: float) -> None:
    """Ping every open connection each interval; drop the ones that stayed silent since the last
    ping. Token expiry is not checked here but by each connection's own deadline (`Connection.arm`),
    which a sweep this coarse would overshoot by up to an interval."""
    while True:
        await asyncio.sleep(interval)
        for conn in list(connections):
            if conn.state != OPEN:
                continue
            if conn.pinged and not conn.seen:
                conn.close(proto.CLOSE_GOING_AWAY, "ping timeout")
                conn.raw.abort()
            else:
                conn.seen = False
                conn.pinged = True
                try:
                    conn.transport.send_ping()
                except RuntimeError:
                    conn.lost()
