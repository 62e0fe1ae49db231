"""Fakes of the chat core's ports (chat_service.core.ports), to drive the hub and sessions in
process: no sockets, no Redis, no DynamoDB, no threads."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from chat_service.core.hub import Hub
from chat_service.core.keys import new_instance_id
from chat_service.core.messages import StoredMessage, WriteResult
from chat_service.core.ports import Identity, Offload, TokenRejected
from chat_service.core.session import Session, SessionLimits, Sessions
from motion_common.auth import Identity as TokenIdentity

T = TypeVar("T")


def unframe(data: bytes) -> list[bytes]:
    """The payloads of the unmasked text frames in `data` (protocol.text_frame's inverse)."""
    payloads = []
    while data:
        assert data[0] == 0x81, data[:2]
        size, start = data[1], 2
        if size == 126:
            size, start = int.from_bytes(data[2:4], "big"), 4
        elif size == 127:
            size, start = int.from_bytes(data[2:10], "big"), 10
        payloads.append(data[start : start + size])
        data = data[start + size :]
    return payloads


class FakePeer:
    """A client socket that records what the core wrote to it, in order."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self.broken = False

    def write(self, frame: bytes) -> None:
        if self.broken:
            raise RuntimeError("transport is closed")
        self.received += [orjson.loads(p) for p in unframe(frame)]

    def send(self, data: bytes) -> None:
        if self.broken:
            raise RuntimeError("transport is closed")
        self.received.append(orjson.loads(data))

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.received if event.get("type") == kind]

    def types(self) -> list[str]:
        return [str(event.get("type")) for event in self.received]


@dataclass
class FakeBus:
    """The bus: subscriptions answered by the test (`confirm`), publishes recorded."""

    listening: bool = True
    up: bool = True
    dropped: int = 0
    confirm_at_once: bool = True
    pending: dict[str, asyncio.Future[None]] = field(default_factory=dict)
    wanted: set[str] = field(default_factory=set)
    published: list[tuple[str, str, bytes]] = field(default_factory=list)

    def subscribe(self, project: str) -> asyncio.Future[None] | None:
        self.wanted.add(project)
        if not self.up:
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.confirm_at_once:
            future.set_result(None)
        else:
            self.pending[project] = future
        return future

    def confirm(self, project: str) -> None:
        self.pending.pop(project).set_result(None)

    def unsubscribe(self, project: str) -> None:
        self.wanted.discard(project)

    def publish(self, project: str, key: str, event: bytes) -> None:
        self.published.append((project, key, event))


class FakeStore:
    """The store in memory: messages per project in key order, client-id claims, failures on demand."""

    def __init__(self) -> None:
        self.messages: dict[str, list[StoredMessage]] = {}
        self.claims: dict[tuple[str, str, str], StoredMessage] = {}
        self.fail_pages = False
        self.pages: list[tuple[str, str | None, str | None, bool]] = []

    def add(self, message: StoredMessage) -> None:
        stored = self.messages.setdefault(message.project, [])
        stored.append(message)
        stored.sort(key=lambda m: m.key)

    def write(self, messages: list[StoredMessage]) -> WriteResult:
        result = WriteResult()
        for message in messages:
            if message.client_id is not None:
                claim = (message.project, message.user, message.client_id)
                if (earlier := self.claims.get(claim)) is not None:
                    result.earlier[message.key] = earlier
                    continue
                self.claims[claim] = message
            self.add(message)
        return result

    def page(
        self, project: str, *, before: str | None, after: str | None, limit: int, consistent: bool = False
    ) -> tuple[list[StoredMessage], bool]:
        self.pages.append((project, before, after, consistent))
        if self.fail_pages:
            raise OSError("store unreachable")
        stored = self.messages.get(project, [])
        if after is not None:
            found = [m for m in stored if m.key > after]
        else:
            found = [m for m in reversed(stored) if before is None or m.key < before]
        return found[:limit], len(found) > limit


class InlineOffload:
    """Runs the 'blocking' call at once, on the event loop (the fakes never block)."""

    async def __call__(self, fn: Callable[..., T], /, *args: Any) -> T:
        return fn(*args)


class GatedOffload:
    """Holds every call until `release` is set, counting how many wait at once (`peak`)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.running = 0
        self.peak = 0
        self.calls = 0

    async def __call__(self, fn: Callable[..., T], /, *args: Any) -> T:
        self.calls += 1
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await self.release.wait()
            return fn(*args)
        finally:
            self.running -= 1


class FakeVerifier:
    """Tokens are looked up in `tokens`; `gate`, when set, holds every check until it is set."""

    def __init__(self) -> None:
        self.tokens: dict[str, Identity] = {}
        self.gate: asyncio.Event | None = None

    def add(self, token: str, user: str, projects: list[str], expires_at: float) -> None:
        self.tokens[token] = TokenIdentity(user, frozenset(projects), expires_at)

    async def verify(self, token: str) -> Identity:
        if self.gate is not None:
            await self.gate.wait()
        identity = self.tokens.get(token)
        if identity is None:
            raise TokenRejected("invalid token")
        return identity


class FakeTimer:
    def __init__(self, delay: float, callback: Callable[[], object]) -> None:
        self.delay = delay
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeTimers:
    def __init__(self) -> None:
        self.timers: list[FakeTimer] = []

    def call_later(self, delay: float, callback: Callable[[], object], /) -> FakeTimer:
        timer = FakeTimer(delay, callback)
        self.timers.append(timer)
        return timer

    def armed(self) -> list[FakeTimer]:
        return [t for t in self.timers if not t.cancelled]


class Clock:
    """A clock the test moves (seconds)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def ms(self) -> int:
        return int(self.now * 1000)


class World:
    """A hub and its sessions over fakes. Build it inside a running event loop."""

    def __init__(
        self,
        *,
        persist: bool = True,
        limits: SessionLimits | None = None,
        reads: Offload | None = None,
        writes: Offload | None = None,
    ) -> None:
        self.bus = FakeBus()
        self.store = FakeStore()
        self.verifier = FakeVerifier()
        self.timers = FakeTimers()
        self.wall = Clock()
        self.mono = Clock(100.0)
        self.tasks: list[asyncio.Task[Any]] = []
        self.hub = Hub(
            new_instance_id(),
            self.bus,
            self.store,
            persist=persist,
            reads=reads or InlineOffload(),
            writes=writes or InlineOffload(),
            spawn=self.spawn,
            clock=self.wall.ms,
        )
        self.sessions = Sessions(
            self.hub,
            self.verifier,
            limits or SessionLimits(4096, 10.0, 20, 25.0),
            spawn=self.spawn,
            timers=self.timers,
            wall_clock=self.wall,
            monotonic=self.mono,
        )

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(coro))

    async def settle(self) -> None:
        """Run every task spawned so far (and those they spawn) to its end."""
        for _ in range(100):
            await asyncio.sleep(0)
            pending = [t for t in self.tasks if not t.done()]
            if not pending:
                await asyncio.sleep(0)
                if not [t for t in self.tasks if not t.done()]:
                    break
                continue
            await asyncio.wait(pending, timeout=5)
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        await self.hub.persister.drain()

    async def client(
        self, user: str = "u", projects: tuple[str, ...] = ("p",), *, expires_in: float = 3600.0
    ) -> tuple[Session, FakePeer]:
        """An authenticated session (its hello read)."""
        token = f"{user}-{len(self.verifier.tokens)}"
        self.verifier.add(token, user, list(projects), self.wall.now + expires_in)
        peer = FakePeer()
        session = self.sessions.open(peer)
        session.start(token)
        await self.settle()
        assert peer.types() == ["hello"], peer.received
        peer.received.clear()
        return session, peer

    async def member(self, user: str = "u", project: str = "p", **kwargs: Any) -> tuple[Session, FakePeer]:
        """An authenticated session that has joined `project` (its `joined` read)."""
        session, peer = await self.client(user, (project,), **kwargs)
        session.receive(orjson.dumps({"type": "join", "project": project}))
        await self.settle()
        assert peer.types() == ["joined"], peer.received
        peer.received.clear()
        return session, peer


def frame(**doc: Any) -> bytes:
    return orjson.dumps(doc)
