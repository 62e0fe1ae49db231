"""Checking a connection's bearer token: when it connects, and when it sends a fresh one (`auth`)."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Final

from motion_common.auth import AuthError, TokenVerifier

from chat_service import protocol as proto
from chat_service.connection import AUTHENTICATING, OPEN, TOKEN_LEEWAY_SECONDS
from chat_service.settings import Settings

if TYPE_CHECKING:
    from chat_service.connection import Connection

log = logging.getLogger(__name__)

TOKEN_CACHE_SIZE: Final = 2048


class Authenticator:
    """Verifies tokens off the event loop and opens, refreshes or closes the connection accordingly."""

    def __init__(self, settings: Settings) -> None:
        # A connection verifies its token once (reconnects may repeat it), so the cache only needs to
        # cover a reconnect wave, not every open connection.
        self.verifier = TokenVerifier(
            jwks_url=settings.auth_jwks_url,
            issuer=settings.auth_issuer,
            audience=settings.auth_audience,
            cache_size=TOKEN_CACHE_SIZE,
            leeway_seconds=TOKEN_LEEWAY_SECONDS,
        )
        # Token checks get their own threads so a slow DynamoDB never holds up logins.
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="chat-auth")

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def authenticate(self, conn: Connection, token: str) -> None:
        try:
            identity = await asyncio.get_running_loop().run_in_executor(
                self.pool, self.verifier.verify, token
            )
        except AuthError as err:
            conn.close(proto.CLOSE_UNAUTHORIZED, f"unauthorized: {err}")
            return
        except Exception:
            log.exception("token verification failed")
            conn.close(proto.CLOSE_INTERNAL_ERROR, "internal error")
            return
        if conn.state == AUTHENTICATING:
            conn.opened(identity)

    async def reauthenticate(self, conn: Connection, request: proto.Auth) -> None:
        try:
            identity = await asyncio.get_running_loop().run_in_executor(
                self.pool, self.verifier.verify, request.token
            )
        except AuthError as err:
            conn.send(proto.error("unauthorized", str(err), request.ref))
            return
        if conn.state != OPEN or conn.identity is None:
            return
        if identity.user_id != conn.identity.user_id:
            conn.close(proto.CLOSE_UNAUTHORIZED, "unauthorized: token is for another user")
            return
        conn.identity = identity
        conn.arm(identity)
        for project in conn.joined:
            if not identity.member_of(project):
                conn.forbidden(project)
                return
        conn.send(
            proto.encode(
                {"type": "authenticated", "ref": request.ref, "expires_at": int(identity.expires_at)}
            )
        )
