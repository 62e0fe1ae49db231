"""Checking bearer tokens (motion_common.auth) off the event loop: the core's `Verifier`."""

from __future__ import annotations

from typing import Final

from motion_common.auth import AuthError, Identity, TokenVerifier

from chat_service.adapters.threads import Threads
from chat_service.core.ports import TokenRejected
from chat_service.core.session import TOKEN_LEEWAY_SECONDS

TOKEN_CACHE_SIZE: Final = 2048


class ThreadedVerifier:
    """Verifies tokens on threads of its own; a bad token raises `TokenRejected`."""

    def __init__(self, issuer: str, jwks_url: str, audience: str | None) -> None:
        # A connection verifies its token once (reconnects may repeat it), so the cache only needs to
        # cover a reconnect wave, not every open connection.
        self.verifier = TokenVerifier(
            jwks_url=jwks_url,
            issuer=issuer,
            audience=audience,
            cache_size=TOKEN_CACHE_SIZE,
            leeway_seconds=TOKEN_LEEWAY_SECONDS,
        )
        # Token checks get their own threads so a slow DynamoDB never holds up logins.
        self.threads = Threads(2, "chat-auth")

    def shutdown(self) -> None:
        self.threads.shutdown()

    async def verify(self, token: str) -> Identity:
        try:
            return await self.threads(self.verifier.verify, token)
        except AuthError as err:
            raise TokenRejected(str(err)) from err
