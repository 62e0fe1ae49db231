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

from chat_service import HEALTH_CHECK_PATH, WS_PATH
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
        if path == HEALTH_CHECK_PATH:
            return self.health()
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

    def health(self) -> WSUpgradeResponseWithListener:
        server = self.server
        body = orjson.dumps(
            {
                "status": "draining" if server.draining else "ok",
                "instance": server.instance_id,
                "redis": "up" if server.bus.up else "down",
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
        # 200 while Redis is down: sends and history still work, and a restart would not fix Redis.
        if server.draining:
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
