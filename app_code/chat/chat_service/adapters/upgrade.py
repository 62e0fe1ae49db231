"""The HTTP side of the one port: WebSocket upgrades (origin check, bearer token) and the health checks.

picows parses each request and asks `UpgradeRouter` what to answer: a listener to upgrade to (made
by the factory the entry point hands in), a plain HTTP response, or nothing (404). Readiness reads
the hub's `HubStats` snapshot and the `StoreProbe`'s verdict.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import urllib.parse
from collections.abc import Callable, Sequence, Sized
from typing import Final

import orjson
from motion_common.logs import TRACE_HEADER, request_id_from
from picows import WSListener, WSUpgradeRequest, WSUpgradeResponse, WSUpgradeResponseWithListener

from chat_service import LIVENESS_PATH, READINESS_PATH, WS_PATH
from chat_service.core import protocol as proto
from chat_service.core.hub import HubStats
from chat_service.core.ports import Offload, Store

log = logging.getLogger(__name__)

# Readiness asks the history store this often, with a one-item Query of a partition no project uses
# (allowed by the task role's dynamodb:Query; nothing to write, nothing to clean up).
STORE_PROBE_SECONDS: Final = 5.0
STORE_PROBE_TIMEOUT_SECONDS: Final = 3.0
STORE_PROBE_PROJECT: Final = "readiness-probe"


class StoreProbe:
    """Whether the history store answers (`problem` is None when it did, the last time it was asked)."""

    def __init__(self, store: Store, reads: Offload, persist: bool) -> None:
        self.store = store
        self.reads = reads
        self.persist = persist
        # What is wrong with the history store (None: it answered the last probe), for readiness.
        self.problem: str | None = "not probed yet" if persist else None

    async def probe(self) -> None:
        query = functools.partial(self.store.page, STORE_PROBE_PROJECT, before=None, after=None, limit=1)
        try:
            await asyncio.wait_for(self.reads(query), STORE_PROBE_TIMEOUT_SECONDS)
        except Exception as err:  # any failure means requests would fail the same way
            if self.problem is None:
                log.error("history store unavailable: %s", err)
            self.problem = f"history store unavailable: {type(err).__name__}"
            return
        if self.problem is not None and self.problem != "not probed yet":
            log.info("history store available again")
        self.problem = None

    async def forever(self, stopping: Callable[[], bool]) -> None:
        while not stopping():
            await asyncio.sleep(STORE_PROBE_SECONDS)
            await self.probe()


class UpgradeRouter:
    """picows' listener factory: `listener(token)` makes the listener of an accepted upgrade."""

    __slots__ = ("allowed_origins", "connections", "listener", "probe", "stats")

    def __init__(
        self,
        listener: Callable[[str | None, str], WSListener],
        stats: Callable[[], HubStats],
        probe: StoreProbe,
        connections: Sized,
        cors_origins: Sequence[str],
    ) -> None:
        self.listener = listener
        self.stats = stats
        self.probe = probe
        self.connections = connections
        self.allowed_origins = None if not cors_origins or "*" in cors_origins else set(cors_origins)

    def __call__(self, request: WSUpgradeRequest) -> WSListener | WSUpgradeResponseWithListener | None:
        """`listener(token, connection id)` for the chat path, where the id is the ALB's trace id of
        the upgrade request (its `Root`, as motion_common.logs reads it) or a fresh one."""
        target = request.path.decode("latin-1")
        path, _, query = target.partition("?")
        if path == READINESS_PATH:
            return self.readiness()
        if path == LIVENESS_PATH:
            return self.liveness()
        if path != WS_PATH:
            return None
        headers = request.headers
        origin = headers.get("Origin")
        allowed = self.allowed_origins
        if allowed is not None and origin is not None and origin.rstrip("/") not in allowed:
            response = WSUpgradeResponse.create_error_response(403, b"origin not allowed")
            return WSUpgradeResponseWithListener(response, None)
        offered = [p.strip() for p in headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        token = bearer_token(headers.get("Authorization"), offered, query)
        extra = {"Sec-WebSocket-Protocol": proto.SUBPROTOCOL} if proto.SUBPROTOCOL in offered else None
        return WSUpgradeResponseWithListener(
            WSUpgradeResponse.create_101_response(extra_headers=extra),
            self.listener(token, request_id_from(headers.get(TRACE_HEADER))),
        )

    def liveness(self) -> WSUpgradeResponseWithListener:
        """The event loop answers (the container health check: a failure means "restart me")."""
        body = orjson.dumps({"status": "alive", "instance": self.stats().instance})
        headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
        return WSUpgradeResponseWithListener(
            WSUpgradeResponse.create_ok_response(body, extra_headers=headers), None
        )

    def readiness(self) -> WSUpgradeResponseWithListener:
        """Whether to send this instance traffic (the load balancer's health check): not draining,
        and the history store, which every send and history request needs, answers. Redis is
        reported but does not fail it: without Redis, sends are still stored, acked and delivered on
        this instance, members elsewhere catch up when it returns, and a restart would not fix it."""
        stats = self.stats()
        store_problem = self.probe.problem
        problem = "draining" if stats.draining else store_problem
        body = orjson.dumps(
            {
                "status": "ready" if problem is None else "not ready",
                "problem": problem,
                "instance": stats.instance,
                "store": "down" if store_problem else ("up" if self.probe.persist else "off"),
                "redis": "up" if stats.bus_up else "down",
                "peers": stats.peers,
                "persist": self.probe.persist,
                "connections": len(self.connections),
                "projects": stats.projects,
                "accepted": stats.accepted,
                "delivered": stats.delivered,
                "slow_consumers": stats.slow_consumers,
                "persist_batches": stats.persist_batches,
                "persisted": stats.persisted,
                "redis_dropped": stats.bus_dropped,
            }
        )
        headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
        if problem is not None:
            response = WSUpgradeResponse.create_error_response(503, body, extra_headers=headers)
        else:
            response = WSUpgradeResponse.create_ok_response(body, extra_headers=headers)
        return WSUpgradeResponseWithListener(response, None)


def bearer_token(authorization: str | None, offered: list[str], query: str) -> str | None:
    """The bearer token from, in this order, the Authorization header, a `bearer.<token>`
    subprotocol (browsers cannot set headers on a WebSocket) or the `token` query parameter."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else None
    for protocol in offered:
        if protocol.startswith(proto.BEARER_PROTOCOL_PREFIX):
            return protocol[len(proto.BEARER_PROTOCOL_PREFIX) :]
    values = urllib.parse.parse_qs(query).get("token")
    return values[0] if values else None
