"""The chat server: WebSocket connections (picows), projects, fan-out, history and shutdown.

Data flow of a send: the connection validates it and takes a key from the `KeyClock`; the
`OrderedPersister` writes it to DynamoDB (batched); in submission (= key) order the sender gets its
ack, local members get the message, and the message goes to Redis for the other instances, which
deliver it to their members. Every message is encoded and framed once per instance; the same bytes
are written to every recipient's socket.

Ordering (per project, as seen by one connection): messages that went through one instance arrive
in key order; a message sent after its instance delivered another one sorts after it (Lamport keys).
Only messages sent at the same moment through two different instances (within the few ms of a
DynamoDB write) can arrive in an order other than key order; history is always in key order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

import orjson
from motion_common.auth import AuthError, Identity, TokenVerifier
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from chat_service import HEALTH_CHECK_PATH, WS_PATH
from chat_service import protocol as proto
from chat_service.bus import RedisBus
from chat_service.keys import KeyClock, key_floor, new_instance_id, now_ms, origin_of
from chat_service.settings import Settings
from chat_service.store import (
    DynamoMessageStore,
    MessageStore,
    NoStore,
    OrderedPersister,
    PartialWriteError,
    StoredMessage,
)

log = logging.getLogger(__name__)

AUTHENTICATING: Final = 0
OPEN: Final = 1
CLOSING: Final = 2

# Frames of any kind (joins, history, pings, ...) have their own, looser budget than sends; a
# client over it is flooding and is disconnected.
FRAME_RATE_PER_SECOND: Final = 50.0
FRAME_BURST: Final = 200.0
MAX_EARLY_FRAMES: Final = 32
# History queries one connection may have running at once; reads have their own threads, so no
# client can hold up the writes that acks wait for.
MAX_HISTORY_IN_FLIGHT: Final = 2
READ_THREADS: Final = 4
# Once a close frame is queued, a peer gets this long to read what is left before the socket drops.
CLOSE_TIMEOUT_SECONDS: Final = 5.0
TOKEN_LEEWAY_SECONDS: Final = 5.0
TOKEN_CACHE_SIZE: Final = 2048
# Concurrent BatchWriteItem calls. Each call costs ~1.5 ms of boto3 CPU whether it carries 1 item or
# 25, so fewer calls in flight make sends queue into fuller batches under load.
PERSIST_IN_FLIGHT: Final = 4
# After a Redis outage each project is caught up from DynamoDB from a little before the newest
# message delivered here (covering messages that were still being written then), up to a limit;
# past it, clients are told to reload history themselves.
CATCHUP_OVERLAP_MS: Final = 10_000
CATCHUP_LIMIT: Final = 1000
CATCHUP_PAGE: Final = 100

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONTINUATION = WSMsgType.CONTINUATION
_CLOSE = WSMsgType.CLOSE


@dataclass(slots=True)
class PendingSend:
    message: StoredMessage
    conn: Connection
    ref: object


class ProjectState:
    """A project with members on this instance."""

    __slots__ = ("buffer", "mark", "members", "origins", "ready")

    def __init__(self, mark: str) -> None:
        # A tuple, replaced on join/leave: fan-out iterates it while a write may close a member.
        self.members: tuple[Connection, ...] = ()
        # Newest key delivered here from each origin instance: drops duplicates after a retry.
        self.origins: dict[str, str] = {}
        # Newest key delivered here at all (where a catch-up starts).
        self.mark = mark
        # Set while a catch-up runs: messages from Redis wait here so they follow the caught-up ones.
        self.buffer: list[tuple[str, bytes]] | None = None
        self.ready: asyncio.Future[None] | None = None


class Bucket:
    """Token bucket: `rate` per second, up to `burst` at once."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens < 1.0:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1.0
        return True

    def wait_ms(self) -> int:
        return int((1.0 - self.tokens) / self.rate * 1000) + 1


class Connection(WSListener):
    __slots__ = (
        "early",
        "fragments",
        "frames",
        "identity",
        "joined",
        "pinged",
        "raw",
        "reading",
        "seen",
        "sends",
        "server",
        "state",
        "token",
        "transport",
    )

    def __init__(self, server: ChatServer, token: str | None) -> None:
        self.server = server
        self.token = token
        self.identity: Identity | None = None
        self.state = AUTHENTICATING
        # A tuple: most connections join a handful of projects, and an empty set alone is 216 bytes.
        self.joined: tuple[str, ...] = ()
        self.sends = Bucket(server.settings.send_rate_per_second, server.settings.send_rate_burst)
        self.frames = Bucket(
            max(FRAME_RATE_PER_SECOND, 2 * server.settings.send_rate_per_second),
            max(FRAME_BURST, 2 * server.settings.send_rate_burst),
        )
        self.seen = True
        self.pinged = False
        self.reading = 0
        self.early: list[bytes] | None = None
        self.fragments: bytearray | None = None

    # --- picows callbacks ----------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.raw = transport.underlying_transport
        # picows keeps the handshake for the life of the connection; its headers (the token among
        # them) are a third of an idle connection's memory, and nothing reads them after this.
        transport.request.headers.clear()
        transport.response.headers.clear()
        # Past this much unsent data the consumer is too slow: pause_writing below disconnects it.
        self.raw.set_write_buffer_limits(high=self.server.settings.max_buffered_bytes)
        self.server.connections.add(self)
        token, self.token = self.token, None
        if not token:
            self.close(proto.CLOSE_UNAUTHORIZED, "unauthorized: missing bearer token")
            return
        self.server.spawn(self.server.authenticate(self, token))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.state = CLOSING
        self.server.disconnected(self)

    def pause_writing(self) -> None:
        if self.state != CLOSING:
            self.server.slow_consumers += 1
            self.close(proto.CLOSE_SLOW_CONSUMER, "slow consumer: not reading fast enough")

    def resume_writing(self) -> None:
        return None

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.seen = True
        kind = frame.msg_type
        if kind is _TEXT or kind is _BINARY:
            if not frame.fin:
                self.fragments = bytearray(frame.get_payload_as_memoryview())
                return
            payload: bytes | memoryview = frame.get_payload_as_memoryview()
        elif kind is _CONTINUATION:
            if self.fragments is None:
                self.send(proto.error("bad_frame", "continuation frame without a message to continue"))
                return
            self.fragments += frame.get_payload_as_memoryview()
            if len(self.fragments) > self.server.settings.max_frame_bytes:
                self.fragments = None
                self.close(proto.CLOSE_MESSAGE_TOO_BIG, "message too big")
                return
            if not frame.fin:
                return
            payload, self.fragments = bytes(self.fragments), None
        elif kind is _CLOSE:
            self.on_close_frame(frame)
            return
        else:
            return  # ping (picows answers it) or pong (counted as a sign of life above)
        if self.state == OPEN:
            self.handle(payload)
        elif self.state == AUTHENTICATING:
            # Clients may send before their token is checked; keep a little and replay it.
            if self.early is None:
                self.early = []
            if len(self.early) >= MAX_EARLY_FRAMES:
                self.close(proto.CLOSE_RATE_LIMITED, "too many frames before authentication")
                return
            self.early.append(bytes(payload))

    def on_close_frame(self, frame: WSFrame) -> None:
        if self.state != CLOSING:
            self.state = CLOSING
            code = frame.get_close_code()
            # Echo the peer's code (RFC 6455 5.5.1); "no status" cannot be sent back as such.
            self.transport.send_close(WSCloseCode.OK if code in (WSCloseCode.NO_INFO, 1005) else code)
        self.transport.disconnect()

    # --- requests ------------------------------------------------------------------------------

    def opened(self, identity: Identity) -> None:
        self.identity = identity
        self.state = OPEN
        self.send(self.server.hello(self))
        early, self.early = self.early, None
        for payload in early or ():
            if self.state != OPEN:
                break
            self.handle(payload)

    def handle(self, payload: bytes | memoryview) -> None:
        if not self.frames.take():
            self.close(proto.CLOSE_RATE_LIMITED, "rate limit exceeded: too many frames")
            return
        server = self.server
        try:
            request = proto.parse(payload, server.settings.max_message_bytes)
        except proto.ProtocolError as err:
            self.send(proto.error(err.code, err.message, err.ref))
            return
        identity = self.identity
        assert identity is not None
        if isinstance(request, proto.Send):
            if request.project not in self.joined:
                self.send(proto.error("not_joined", "join the project before sending to it", request.ref))
            elif not self.sends.take():
                self.send(
                    proto.encode(
                        {
                            "type": "error",
                            "code": "rate_limited",
                            "message": "sending too fast",
                            "ref": request.ref,
                            "retry_after_ms": self.sends.wait_ms(),
                        }
                    )
                )
            elif server.draining:
                self.send(
                    proto.error("unavailable", "server is restarting; reconnect and resend", request.ref)
                )
            else:
                server.accept(self, request)
        elif isinstance(request, proto.Ping):
            self.send(proto.encode({"type": "pong", "ref": request.ref, "ts": now_ms()}))
        elif isinstance(request, proto.Join | proto.History) and not identity.member_of(request.project):
            self.forbidden(request.project)
        elif isinstance(request, proto.Join):
            server.join(self, request.project, request.ref)
        elif isinstance(request, proto.History):
            if self.reading >= MAX_HISTORY_IN_FLIGHT:
                self.send(proto.error("rate_limited", "wait for your earlier history requests", request.ref))
            else:
                self.reading += 1
                server.spawn(server.history(self, request))
        elif isinstance(request, proto.Leave):
            server.leave(self, request.project)
            self.send(proto.encode({"type": "left", "project": request.project, "ref": request.ref}))
        elif isinstance(request, proto.Auth):
            server.spawn(server.reauthenticate(self, request))

    def forbidden(self, project: str) -> None:
        self.close(proto.CLOSE_FORBIDDEN, f"forbidden: not a member of project {project}"[:120])

    def send(self, data: bytes) -> None:
        if self.state != CLOSING:
            try:
                self.transport.send(_TEXT, data)
            except RuntimeError:
                self.lost()

    def write(self, frame: bytes) -> None:
        """Write a prepared frame (see protocol.text_frame)."""
        if self.state == OPEN:
            try:
                self.raw.write(frame)
            except RuntimeError:
                self.lost()

    def lost(self) -> None:
        # The transport died (e.g. a reset seen by an earlier write) and picows has not told us yet;
        # its disconnect callback follows and does the bookkeeping.
        self.state = CLOSING

    def close(self, code: int, reason: str) -> None:
        """Queue a close frame after whatever is already queued; the socket closes when the peer
        answers with its own (RFC 6455 7.1.1), or after CLOSE_TIMEOUT_SECONDS for a peer that does not
        read. Closing the socket at once would reset the connection if the peer is still sending,
        and the reset can destroy the close frame before the peer reads it."""
        if self.state == CLOSING:
            return
        self.state = CLOSING
        self.server.leave_all(self)
        transport = self.transport
        if transport.is_disconnected:
            return
        # The reason must fit a control frame (125 bytes with the code), cut on a character boundary.
        transport.send_close(WSCloseCode(code), reason.encode()[:120].decode("utf-8", "ignore").encode())
        asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_SECONDS, self.raw.abort)


class ChatServer:
    def __init__(self, settings: Settings, *, instance_id: str | None = None) -> None:
        self.settings = settings
        self.instance_id = instance_id or new_instance_id()
        self.clock = KeyClock(self.instance_id)
        # A connection verifies its token once (reconnects may repeat it), so the cache only needs to
        # cover a reconnect wave, not every open connection.
        self.verifier = TokenVerifier(
            jwks_url=settings.auth_jwks_url,
            issuer=settings.auth_issuer,
            audience=settings.auth_audience,
            cache_size=TOKEN_CACHE_SIZE,
        )
        self.io = ThreadPoolExecutor(max_workers=PERSIST_IN_FLIGHT, thread_name_prefix="chat-write")
        self.reads = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="chat-read")
        # Token checks get their own threads so a slow DynamoDB never holds up logins.
        self.auth_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="chat-auth")
        self.store: MessageStore
        if settings.persist:
            assert settings.table is not None and settings.region is not None
            self.store = DynamoMessageStore(
                settings.table, settings.region, max_connections=PERSIST_IN_FLIGHT + READ_THREADS
            )
        else:
            self.store = NoStore()
        self.persister: OrderedPersister[PendingSend] = OrderedPersister(
            self._write if settings.persist else None, self.persisted, self.io, PERSIST_IN_FLIGHT
        )
        self.bus = RedisBus(settings.redis, self.instance_id, self.from_redis, self.resubscribed)
        self.projects: dict[str, ProjectState] = {}
        self.connections: set[Connection] = set()
        self.draining = False
        self.delivered = 0
        self.accepted = 0
        self.slow_consumers = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._all_closed = asyncio.Event()
        self._server: Any = None
        self._cors = (
            None if not settings.cors_origins or "*" in settings.cors_origins else set(settings.cors_origins)
        )
        self._hello_limits = {
            "max_message_bytes": settings.max_message_bytes,
            "send_rate_per_second": settings.send_rate_per_second,
            "send_rate_burst": settings.send_rate_burst,
            "history_limit": proto.MAX_HISTORY_LIMIT,
        }

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self.bus.start()
        self._server = await ws_create_server(
            self.route,
            self.settings.host,
            self.settings.port,
            max_frame_size=self.settings.max_frame_bytes,
            # Small to start with: picows grows it for large frames, and idle connections are the many.
            read_buffer_init_size=2048,
            websocket_handshake_timeout=10,
            # Pings come from our sweep (one timer for all connections instead of a task each).
            enable_auto_ping=False,
            # uvloop's own transports: as fast here, and ~5 KB less per connection than aiofastnet's.
            use_aiofastnet=False,
            logger_name=logging.LoggerAdapter(logging.getLogger("picows"), {}),
            reuse_address=True,
            backlog=4096,
        )
        self.spawn(self._sweep())
        log.info(
            "chat instance %s listening on %s:%d (persist=%s)",
            self.instance_id,
            self.settings.host,
            self.settings.port,
            self.settings.persist,
        )

    async def shutdown(self) -> None:
        """Stop taking connections, finish the sends in flight, close every socket with 1012."""
        grace = self.settings.shutdown_grace_seconds
        deadline = time.monotonic() + grace
        self.draining = True
        if self._server is not None:
            self._server.close()
        log.info(
            "shutting down: %d connections, %d sends in flight", len(self.connections), self.persister.pending
        )
        try:
            await asyncio.wait_for(self.persister.drain(), max(grace / 2, 0.1))
        except TimeoutError:
            log.warning("shutdown: %d sends still unwritten", self.persister.pending)
        for conn in list(self.connections):
            conn.close(proto.CLOSE_SERVICE_RESTART, "service restart: reconnect")
        if self.connections:
            self._all_closed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), max(0.0, deadline - time.monotonic()))
        for conn in list(self.connections):
            conn.raw.abort()
        await self.bus.close(flush_timeout=max(0.0, min(1.0, deadline - time.monotonic())))
        for task in list(self._tasks):
            task.cancel()
        self.io.shutdown(wait=False, cancel_futures=True)
        self.reads.shutdown(wait=False, cancel_futures=True)
        self.auth_pool.shutdown(wait=False, cancel_futures=True)
        log.info("shut down")

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sweep(self) -> None:
        """Ping every open connection each interval; drop the ones that stayed silent since the last
        ping, and the ones whose token expired (clients refresh it with an `auth` message)."""
        interval = self.settings.ping_interval_seconds
        while True:
            await asyncio.sleep(interval)
            now = time.time()
            for conn in list(self.connections):
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

    # --- HTTP routing --------------------------------------------------------------------------

    def route(self, request: WSUpgradeRequest) -> WSListener | WSUpgradeResponseWithListener | None:
        target = request.path.decode("latin-1")
        path, _, query = target.partition("?")
        if path == HEALTH_CHECK_PATH:
            return self.health()
        if path != WS_PATH:
            return None
        headers = request.headers
        origin = headers.get("Origin")
        if self._cors is not None and origin is not None and origin.rstrip("/") not in self._cors:
            response = WSUpgradeResponse.create_error_response(403, b"origin not allowed")
            return WSUpgradeResponseWithListener(response, None)
        offered = [p.strip() for p in headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        token = _token(headers.get("Authorization"), offered, query)
        extra = {"Sec-WebSocket-Protocol": proto.SUBPROTOCOL} if proto.SUBPROTOCOL in offered else None
        return WSUpgradeResponseWithListener(
            WSUpgradeResponse.create_101_response(extra_headers=extra), Connection(self, token)
        )

    def health(self) -> WSUpgradeResponseWithListener:
        body = orjson.dumps(
            {
                "status": "draining" if self.draining else "ok",
                "instance": self.instance_id,
                "redis": "up" if self.bus.up else "down",
                "persist": self.settings.persist,
                "connections": len(self.connections),
                "projects": len(self.projects),
                "accepted": self.accepted,
                "delivered": self.delivered,
                "slow_consumers": self.slow_consumers,
                "persist_batches": self.persister.batches,
                "persisted": self.persister.items,
                "redis_dropped": self.bus.dropped,
            }
        )
        headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
        # 200 while Redis is down: sends and history still work, and a restart would not fix Redis.
        if self.draining:
            response = WSUpgradeResponse.create_error_response(503, body, extra_headers=headers)
        else:
            response = WSUpgradeResponse.create_ok_response(body, extra_headers=headers)
        return WSUpgradeResponseWithListener(response, None)

    # --- authentication ------------------------------------------------------------------------

    async def authenticate(self, conn: Connection, token: str) -> None:
        try:
            identity = await asyncio.get_running_loop().run_in_executor(
                self.auth_pool, self.verifier.verify, token
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
                self.auth_pool, self.verifier.verify, request.token
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
        for project in conn.joined:
            if not identity.member_of(project):
                conn.forbidden(project)
                return
        conn.send(
            proto.encode(
                {"type": "authenticated", "ref": request.ref, "expires_at": int(identity.expires_at)}
            )
        )

    def hello(self, conn: Connection) -> bytes:
        assert conn.identity is not None
        return proto.encode(
            {
                "type": "hello",
                "user": conn.identity.user_id,
                "projects": sorted(conn.identity.projects),
                "instance": self.instance_id,
                "ping_interval": self.settings.ping_interval_seconds,
                "limits": self._hello_limits,
            }
        )

    # --- membership ----------------------------------------------------------------------------

    def join(self, conn: Connection, project: str, ref: object) -> None:
        state = self.projects.get(project)
        if state is None:
            state = ProjectState(key_floor(now_ms()))
            self.projects[project] = state
            state.ready = self.bus.subscribe(project)
        if conn not in state.members:
            state.members += (conn,)
        if project not in conn.joined:
            conn.joined += (project,)
        reply = {"type": "joined", "project": project, "ref": ref}
        ready = state.ready
        # Answer once Redis confirms the subscription: from then on nothing sent to the project is
        # missed, so history fetched after `joined` plus live messages leave no gap.
        if ready is None or ready.done():
            conn.send(proto.encode({**reply, "live": self.bus.up}))
        else:
            ready.add_done_callback(lambda _: conn.send(proto.encode({**reply, "live": self.bus.up})))

    def leave(self, conn: Connection, project: str) -> None:
        conn.joined = tuple(p for p in conn.joined if p != project)
        state = self.projects.get(project)
        if state is None:
            return
        state.members = tuple(c for c in state.members if c is not conn)
        if not state.members:
            del self.projects[project]
            self.bus.unsubscribe(project)
            self.clock.forget(project)

    def leave_all(self, conn: Connection) -> None:
        for project in conn.joined:
            self.leave(conn, project)

    def disconnected(self, conn: Connection) -> None:
        self.leave_all(conn)
        self.connections.discard(conn)
        if not self.connections:
            self._all_closed.set()

    # --- sending and fan-out -------------------------------------------------------------------

    def accept(self, conn: Connection, request: proto.Send) -> None:
        assert conn.identity is not None
        key, ts = self.clock.next(request.project)
        message = StoredMessage(request.project, key, conn.identity.user_id, request.text, ts)
        self.accepted += 1
        self.persister.submit(PendingSend(message, conn, request.ref))

    def _write(self, pending: list[PendingSend]) -> None:
        self.store.write([p.message for p in pending])

    def persisted(self, pending: list[PendingSend], error: BaseException | None) -> None:
        for item in pending:
            message, conn = item.message, item.conn
            if error is not None and (
                not isinstance(error, PartialWriteError) or message.key in error.unwritten
            ):
                conn.send(proto.error("persist_failed", "message was not stored; send it again", item.ref))
                continue
            ack = proto.text_frame(
                proto.encode({"type": "ack", "ref": item.ref, "id": message.key, "ts": message.ts})
            )
            event = proto.encode(message.event())
            frame = proto.text_frame(event)
            state = self.projects.get(message.project)
            # The sender gets its ack in the same write as its copy of the message, if it is still
            # a member; otherwise on its own.
            member = message.project in conn.joined
            if state is not None:
                state.mark = max(state.mark, message.key)
                self._fan_out(state, frame, conn if member else None, ack)
            if not member:
                conn.write(ack)
            self.bus.publish(message.project, message.key, event)

    def _fan_out(
        self, state: ProjectState, frame: bytes, sender: Connection | None = None, ack: bytes = b""
    ) -> None:
        """Write one prepared frame to every member (the sender's with its ack in front)."""
        delivered = 0
        for conn in state.members:
            if conn.state == OPEN:
                try:
                    conn.raw.write(ack + frame if conn is sender else frame)
                except RuntimeError:
                    conn.lost()
                    continue
                delivered += 1
        self.delivered += delivered

    def from_redis(self, project: str, key: str, event: bytes) -> None:
        state = self.projects.get(project)
        if state is None:
            return
        if state.buffer is not None:
            state.buffer.append((key, event))
            return
        self._deliver_remote(project, state, key, event)

    def _deliver_remote(self, project: str, state: ProjectState, key: str, event: bytes) -> None:
        origin = origin_of(key)
        if origin == self.instance_id:
            return
        last = state.origins.get(origin)
        if last is not None and key <= last:
            return
        state.origins[origin] = key
        if key > state.mark:
            state.mark = key
        self.clock.observe(project, key)
        self._fan_out(state, proto.text_frame(event))

    def resubscribed(self, projects: list[str], confirmed: asyncio.Future[list[None]]) -> None:
        for project in projects:
            state = self.projects.get(project)
            if state is not None and state.buffer is None:
                state.buffer = []
        self.spawn(self._catch_up(projects, confirmed))

    async def _catch_up(self, projects: list[str], confirmed: asyncio.Future[list[None]]) -> None:
        # Query only once the subscriptions are live, so every message is either in DynamoDB by
        # the time of the query or arrives through Redis afterwards.
        with contextlib.suppress(Exception):
            await confirmed
        loop = asyncio.get_running_loop()
        for project in projects:
            state = self.projects.get(project)
            if state is None or state.buffer is None:
                continue
            complete = True
            try:
                if self.settings.persist:
                    after = key_floor(int(state.mark[:13]) - CATCHUP_OVERLAP_MS)
                    fetched = 0
                    while True:
                        page, more = await loop.run_in_executor(
                            self.reads, _page_after, self.store, project, after, CATCHUP_PAGE
                        )
                        if self.projects.get(project) is not state:
                            break
                        for message in page:
                            self._deliver_remote(project, state, message.key, proto.encode(message.event()))
                        fetched += len(page)
                        if not more:
                            break
                        if fetched >= CATCHUP_LIMIT:
                            complete = False
                            break
                        after = page[-1].key
            except Exception as err:
                log.warning("catching up project %s after a redis outage failed: %s", project, err)
                complete = False
            finally:
                buffered, state.buffer = state.buffer or [], None
                for key, event in buffered:
                    self._deliver_remote(project, state, key, event)
            if not complete:
                self._fan_out(state, proto.text_frame(proto.encode({"type": "resync", "project": project})))

    # --- history -------------------------------------------------------------------------------

    async def history(self, conn: Connection, request: proto.History) -> None:
        try:
            await self._history(conn, request)
        finally:
            conn.reading -= 1

    async def _history(self, conn: Connection, request: proto.History) -> None:
        try:
            page, more = await asyncio.get_running_loop().run_in_executor(
                self.reads, _page, self.store, request.project, request.before, request.after, request.limit
            )
        except Exception as err:
            log.warning("history query for %s failed: %s", request.project, err)
            conn.send(proto.error("unavailable", "history is unavailable; try again", request.ref))
            return
        conn.send(
            proto.encode(
                {
                    "type": "history",
                    "ref": request.ref,
                    "project": request.project,
                    "order": "asc" if request.after is not None else "desc",
                    "messages": [
                        {"id": m.key, "project": m.project, "user": m.user, "text": m.text, "ts": m.ts}
                        for m in page
                    ],
                    "more": more,
                }
            )
        )


def _page(
    store: MessageStore, project: str, before: str | None, after: str | None, limit: int
) -> tuple[list[StoredMessage], bool]:
    return store.page(project, before=before, after=after, limit=limit)


def _page_after(
    store: MessageStore, project: str, after: str, limit: int
) -> tuple[list[StoredMessage], bool]:
    return store.page(project, before=None, after=after, limit=limit)


def _token(authorization: str | None, offered: list[str], query: str) -> str | None:
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
