"""The HTTP side of the one port: WebSocket upgrades (origin check, bearer token) and the health check.

picows parses each request and asks `UpgradeRouter` what to answer: a `Connection` to upgrade to,
a plain HTTP response, or nothing (404).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson
from picows import WSListener, WSUpgradeRequest, WSUpgradeResponse, WSUpgradeResponseWithListener

from chat_service import LIVENESS_PATH, READINESS_PATH, WS_PATH
from chat_service import protocol as proto
from chat_service.connection import Connection

if TYPE_CHECKING:
    from chat_service.server import ChatServer


class UpgradeRouter:
    """picows' listener factory for `server`."""

    __slots__ = ("allowed_origins", "server")

    def __init__(self, server: ChatServer, cors_origins: Sequence[str]) -> None:
        self.server = server
        self.allowed_origins = None if not cors_origins or "*" in cors_origins else set(cors_origins)

    def __call__(self, request: WSUpgradeRequest) -> WSListener | WSUpgradeResponseWithListener | None:
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
            WSUpgradeResponse.create_101_response(extra_headers=extra), Connection(self.server, token)
        )

    def liveness(self) -> WSUpgradeResponseWithListener:
        """The event loop answers (the container health check: a failure means "restart me")."""
        body = orjson.dumps({"status": "alive", "instance": self.server.instance_id})
        headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
        return WSUpgradeResponseWithListener(
            WSUpgradeResponse.create_ok_response(body, extra_headers=headers), None
        )

    def readiness(self) -> WSUpgradeResponseWithListener:
        """Whether to send this instance traffic (the load balancer's health check): not draining,
        and the history store, which every send and history request needs, answers. Redis is
        reported but does not fail it: without Redis, sends are still stored, acked and delivered on
        this instance, members elsewhere catch up when it returns, and a restart would not fix it."""
        server = self.server
        problem = "draining" if server.draining else server.store_problem
        body = orjson.dumps(
            {
                "status": "ready" if problem is None else "not ready",
                "problem": problem,
                "instance": server.instance_id,
                "store": "down" if server.store_problem else ("up" if server.settings.persist else "off"),
                "redis": "up" if server.bus.up else "down",
                "peers": sorted(server.peers),
                "persist": server.settings.persist,
                "connections": len(server.connections),
                "projects": len(server.projects),
                "accepted": server.accepted,
                "delivered": server.delivered,
                "slow_consumers": server.slow_consumers,
                "persist_batches": server.persister.batches,
                "persisted": server.persister.items,
                "redis_dropped": server.bus.dropped,
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
