"""The ports: what the core needs from the outside world, as protocols the adapters implement.

Nothing here does I/O; the adapters (`chat_service.adapters`) and the tests' fakes provide it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Coroutine
from typing import Any, Protocol, TypeVar

from chat_service.core.messages import StoredMessage, WriteResult

T = TypeVar("T")

#: Runs a coroutine as a task the instance keeps track of (and cancels at shutdown).
Spawn = Callable[[Coroutine[Any, Any, Any]], None]


class Identity(Protocol):
    """Who a verified token is for (motion_common.auth.Identity is one)."""

    @property
    def user_id(self) -> str: ...

    @property
    def projects(self) -> Collection[str]: ...

    @property
    def expires_at(self) -> float: ...

    def member_of(self, project_id: str) -> bool: ...


class TokenRejected(Exception):
    """The token is not valid (expired, bad signature, wrong issuer...): the message says why."""


class Verifier(Protocol):
    def verify(self, token: str) -> Awaitable[Identity]:
        """The token's identity; raises TokenRejected for a bad token, anything else when the check
        itself failed."""
        ...


class Peer(Protocol):
    """One client's socket, as the core writes to it."""

    @property
    def write(self) -> Callable[[bytes], None]:
        """Writes a prepared frame (protocol.text_frame) as is: the transport's own bound `write`,
        so a fan-out costs one call per recipient. Raises RuntimeError when the transport is gone."""
        ...

    def send(self, data: bytes) -> None:
        """Send `data` as one text message; raises RuntimeError when the transport is gone."""
        ...

    def close(self, code: int, reason: str) -> None:
        """Queue a close frame with `code` and `reason` after what is already queued."""
        ...


class BusReceiver(Protocol):
    """What the bus hands in (the hub is one)."""

    def message(self, project: str, key: str, event: bytes) -> None:
        """Another instance's message for `project` (never one of this instance's own)."""
        ...

    def resubscribed(
        self, projects: list[str], confirmed: asyncio.Future[list[None]], heard_ms: int | None
    ) -> None:
        """The subscription is back after a gap (`heard_ms`: when the lost one last received)."""
        ...

    def gap_announced(self, project: str, first_key: str) -> None:
        """Another instance dropped unsent messages for `project` from `first_key` on."""
        ...

    def peer_alive(self, peer: str, floor_ms: int | None) -> None:
        """Instance `peer` is alive: it beat, or published a message (then `floor_ms` is None). A
        beat's `floor_ms` bounds what the peer publishes after it: every such message has an id
        of that millisecond or later."""
        ...

    def floor_ms(self) -> int:
        """This instance's floor for its next beat: no message it publishes from now on has an id
        older than this millisecond (now, or the oldest id still being stored)."""
        ...


class Bus(Protocol):
    """Pub/sub between the instances (Redis)."""

    @property
    def listening(self) -> bool:
        """The subscription is live: what other instances publish arrives."""
        ...

    @property
    def up(self) -> bool:
        """Subscribing and publishing both work."""
        ...

    @property
    def dropped(self) -> int:
        """Messages dropped unsent so far (announced to the others as gaps)."""
        ...

    def subscribe(self, project: str) -> asyncio.Future[None] | None:
        """Want `project`'s messages; a future done once the subscription is confirmed, or None
        while the bus is down (it subscribes as soon as it is back)."""
        ...

    def unsubscribe(self, project: str) -> None: ...

    def publish(self, project: str, key: str, event: bytes) -> None: ...


class Store(Protocol):
    """The message history. Blocking calls; the core runs them through an `Offload`."""

    def write(self, messages: list[StoredMessage]) -> WriteResult:
        """Store the messages, each on its own account: the result says which were not stored and
        which carried a client id the sender used before (not stored again: mapped to the message
        stored then). Raises only when nothing can be said about any of them."""
        ...

    def page(
        self, project: str, *, before: str | None, after: str | None, limit: int, consistent: bool = False
    ) -> tuple[list[StoredMessage], bool]:
        """Up to `limit` messages and whether there are more: newest first, or oldest first with
        `after`; `consistent` reads every write acknowledged before the query (catch-ups need it)."""
        ...


class Offload(Protocol):
    """Runs a blocking call away from the event loop (a thread pool) and awaits its result."""

    def __call__(self, fn: Callable[..., T], /, *args: Any) -> Awaitable[T]: ...


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Timers(Protocol):
    """Calls later (the event loop is one)."""

    def call_later(self, delay: float, callback: Callable[[], object], /) -> Cancellable: ...
