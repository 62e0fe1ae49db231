"""The chat server: one instance's connections and projects, the path of a send, fan-out and shutdown.

Beside it: `connection` (one client's socket), `upgrade` (HTTP routing, health check), `authentication`,
`history` (history requests, catch-up after a Redis outage) and `keepalive` (the ping sweep).

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
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from picows import ws_create_server

from chat_service import protocol as proto
from chat_service.authentication import Authenticator
from chat_service.bus import BEAT_SECONDS, RedisBus
from chat_service.connection import OPEN, Connection
from chat_service.history import CATCHUP_OVERLAP_MS, catch_up, gap_start
from chat_service.keepalive import sweep
from chat_service.keys import KeyClock, key_floor, new_instance_id, now_ms
from chat_service.projects import ProjectState
from chat_service.settings import Settings
from chat_service.store import (
    DynamoMessageStore,
    MessageStore,
    NoStore,
    OrderedPersister,
    PartialWriteError,
    StoredMessage,
)
from chat_service.upgrade import UpgradeRouter

log = logging.getLogger(__name__)

# Reads have their own threads, so no client's history queries can hold up the writes that acks
# wait for.
READ_THREADS: Final = 4
# Concurrent BatchWriteItem calls. Each call costs ~1.5 ms of boto3 CPU whether it carries 1 item or
# 25, so fewer calls in flight make sends queue into fuller batches under load.
PERSIST_IN_FLIGHT: Final = 4
# Readiness asks the history store this often, with a one-item Query of a partition no project uses
# (allowed by the task role's dynamodb:Query; nothing to write, nothing to clean up).
STORE_PROBE_SECONDS: Final = 5.0
STORE_PROBE_TIMEOUT_SECONDS: Final = 3.0
STORE_PROBE_PROJECT: Final = "readiness-probe"
# Delivered keys are kept this long for exact-id dedup: longer than any catch-up reaches back while
# Redis is up (CATCHUP_OVERLAP_MS) and than a publisher keeps unsent messages (60 s).
SEEN_RETAIN_MS: Final = CATCHUP_OVERLAP_MS + 60_000
SEEN_PRUNE_AT: Final = 1024
SEEN_PRUNE_EVERY: Final = 256
# A peer is taken for gone after this long without a beat (three beats and a little).
PEER_SILENCE_MS: Final = int(BEAT_SECONDS * 3.5 * 1000)


@dataclass(slots=True)
class PendingSend:
    message: StoredMessage
    conn: Connection
    ref: object
    # Set by the write when the send's client id was claimed before: `message` is then the one
    # stored at that time, not a new one.
    repeated: bool = False
    # Set by the write when this message was not stored (its neighbours may have been).
    failed: bool = False


class ChatServer:
    """One chat instance; picows calls in through `router`, Redis through `from_redis`."""

    def __init__(self, settings: Settings, *, instance_id: str | None = None) -> None:
        self.settings = settings
        self.instance_id = instance_id or new_instance_id()
        self.clock = KeyClock(self.instance_id)
        self.auth = Authenticator(settings)
        self.io = ThreadPoolExecutor(max_workers=PERSIST_IN_FLIGHT, thread_name_prefix="chat-write")
        self.reads = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="chat-read")
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
        self.bus = RedisBus(
            settings.redis,
            self.instance_id,
            self.from_redis,
            self.resubscribed,
            self.gap_announced,
            self.peer_alive,
        )
        # Other instances by id -> when their last beat arrived (wall-clock ms).
        self.peers: dict[str, int] = {}
        self.projects: dict[str, ProjectState] = {}
        self.connections: set[Connection] = set()
        self.draining = False
        # What is wrong with the history store (None: it answered the last probe), for readiness.
        self.store_problem: str | None = "not probed yet" if settings.persist else None
        self.delivered = 0
        self.accepted = 0
        self.slow_consumers = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._all_closed = asyncio.Event()
        self._server: Any = None
        self.router = UpgradeRouter(self, settings.cors_origins)
        self._hello_limits = {
            "max_message_bytes": settings.max_message_bytes,
            "send_rate_per_second": settings.send_rate_per_second,
            "send_rate_burst": settings.send_rate_burst,
            "history_limit": proto.MAX_HISTORY_LIMIT,
        }

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self.bus.start()
        if self.settings.persist:
            # Ready only once the store answers (or known not to, which readiness then says).
            await self.probe_store()
            self.spawn(self._probe_store_forever())
        self._server = await ws_create_server(
            self.router,
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
        self.spawn(sweep(self.connections, self.settings.ping_interval_seconds))
        self.spawn(self._watch_peers())
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
        self.auth.shutdown()
        log.info("shut down")

    async def probe_store(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.run_in_executor(
                    self.reads,
                    lambda: self.store.page(STORE_PROBE_PROJECT, before=None, after=None, limit=1),
                ),
                STORE_PROBE_TIMEOUT_SECONDS,
            )
        except Exception as err:  # any failure means requests would fail the same way
            if self.store_problem is None:
                log.error("history store unavailable: %s", err)
            self.store_problem = f"history store unavailable: {type(err).__name__}"
            return
        if self.store_problem is not None and self.store_problem != "not probed yet":
            log.info("history store available again")
        self.store_problem = None

    async def _probe_store_forever(self) -> None:
        while not self.draining:
            await asyncio.sleep(STORE_PROBE_SECONDS)
            await self.probe_store()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- connections and membership ------------------------------------------------------------

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

    def join(self, conn: Connection, project: str, ref: object) -> None:
        state = self.projects.get(project)
        if state is None:
            state = ProjectState(now_ms())
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
        message = StoredMessage(
            request.project, key, conn.identity.user_id, request.text, ts, request.client_id
        )
        self.accepted += 1
        self.persister.submit(PendingSend(message, conn, request.ref))

    def _write(self, pending: list[PendingSend]) -> None:
        result = self.store.write([p.message for p in pending])
        for item in pending:
            if item.message.key in result.unwritten:
                item.failed = True
            elif (stored := result.earlier.get(item.message.key)) is not None:
                item.message, item.repeated = stored, True

    def persisted(self, pending: list[PendingSend], error: BaseException | None) -> None:
        for item in pending:
            message, conn = item.message, item.conn
            if item.failed or (
                error is not None
                and (not isinstance(error, PartialWriteError) or message.key in error.unwritten)
            ):
                conn.send(proto.error("persist_failed", "message was not stored; send it again", item.ref))
                continue
            if item.repeated:
                self._resent(item)
                continue
            ack = proto.text_frame(
                proto.encode({"type": "ack", "ref": item.ref, "id": message.key, "ts": message.ts})
            )
            event = proto.encode(message.event())
            frame = proto.text_frame(event)
            state = self.projects.get(message.project)
            # The sender gets its ack in the same write as its copy of the message, if it is still
            # a member; otherwise on its own. A catch-up reading the store while this write was
            # finishing may have delivered the message here already: then only the ack goes out.
            member = message.project in conn.joined
            fresh = state is not None and self.note(state, message.key)
            if fresh:
                assert state is not None
                self.fan_out(state, frame, conn if member else None, ack)
            if not (fresh and member):
                conn.write(ack)
            if (late := now_ms() - message.ts) > CATCHUP_OVERLAP_MS:
                log.warning(
                    "message %s published %d ms after its id, beyond the catch-up overlap", message.key, late
                )
            self.bus.publish(message.project, message.key, event)

    def _resent(self, item: PendingSend) -> None:
        """A resend of a claimed client id: the stored message's ack, and the message itself to
        anyone who may not have it. Its first instance may have died between storing and publishing
        it (or, on this instance, reported its batch failed after storing it), so it is delivered
        here and published again; every instance drops it by id if its members had it."""
        message = item.message
        ack = proto.encode(
            {"type": "ack", "ref": item.ref, "id": message.key, "ts": message.ts, "repeated": True}
        )
        item.conn.send(ack)
        event = proto.encode(message.event())
        state = self.projects.get(message.project)
        if state is not None:
            self.deliver_remote(message.project, state, message.key, event)
        self.bus.publish(message.project, message.key, event)

    def fan_out(
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
        self.deliver_remote(project, state, key, event)

    def deliver_remote(self, project: str, state: ProjectState, key: str, event: bytes) -> None:
        """Deliver a message that did not start here (Redis, a catch-up, a resend) unless the
        members here have it already. (Redis never hands back this instance's own publishes.)"""
        if not self.note(state, key):
            return
        self.clock.observe(project, key)
        self.fan_out(state, proto.text_frame(event))

    def note(self, state: ProjectState, key: str) -> bool:
        """Record `key` as delivered here; False when it was already."""
        seen = state.seen
        if key in seen:
            return False
        seen.add(key)
        order = state.seen_order
        order.append(key)
        if len(order) > SEEN_PRUNE_AT and not len(order) % SEEN_PRUNE_EVERY:
            self._prune(state)
        return True

    def _prune(self, state: ProjectState) -> None:
        # Keys a catch-up could still deliver again must stay: none are dropped while one is due or
        # running, or while Redis is away (the next catch-up reaches back before the gap).
        if state.catching or state.catchup_from is not None or not self.bus.listening:
            return
        cutoff = key_floor(now_ms() - SEEN_RETAIN_MS)
        order, seen = state.seen_order, state.seen
        while order and order[0] < cutoff:
            seen.discard(order.popleft())

    def resubscribed(
        self, projects: list[str], confirmed: asyncio.Future[list[None]], heard_ms: int | None
    ) -> None:
        """The subscription is back after a gap; `heard_ms` is the last moment the previous one was
        known to be receiving (None: there was none)."""
        due = [p for p in projects if self.gap(p, gap_start(heard_ms, self.projects.get(p)), confirmed)]
        if due:
            self.spawn(catch_up(self, due, confirmed))

    def peer_alive(self, peer: str) -> None:
        self.peers[peer] = now_ms()

    async def _watch_peers(self) -> None:
        while not self.draining:
            await asyncio.sleep(BEAT_SECONDS)
            self.check_peers(now_ms())

    def check_peers(self, now: int) -> None:
        """An instance silent for PEER_SILENCE_MS while this one hears Redis has stopped: it may have
        died between storing messages and publishing them, so every project here is caught up from
        the store from its last beat (less the overlap); duplicates are dropped by id."""
        if not self.bus.listening:
            # We hear nobody now; judge nobody, and restart everyone's clock when we hear again.
            for peer in self.peers:
                self.peers[peer] = now
            return
        gone = [(peer, seen) for peer, seen in self.peers.items() if now - seen > PEER_SILENCE_MS]
        for peer, seen in gone:
            del self.peers[peer]
            log.warning(
                "instance %s fell silent; catching up %d projects from the store", peer, len(self.projects)
            )
            start = key_floor(seen - CATCHUP_OVERLAP_MS)
            due = [p for p in list(self.projects) if self.gap(p, start)]
            if due:
                done: asyncio.Future[list[None]] = asyncio.get_running_loop().create_future()
                done.set_result([])
                self.spawn(catch_up(self, due, done))

    def gap_announced(self, project: str, first_key: str) -> None:
        """Another instance dropped unsent publishes for `project` from `first_key` on (they are
        stored): fetch them from the store."""
        if self.gap(project, key_floor(int(first_key[:13]) - 1)):
            done: asyncio.Future[list[None]] = asyncio.get_running_loop().create_future()
            done.set_result([])
            self.spawn(catch_up(self, [project], done))

    def gap(
        self, project: str, start: str | None, confirmed: asyncio.Future[list[None]] | None = None
    ) -> bool:
        """Note that `project` may have missed what was sent from `start` on (`confirmed`: the new
        subscription's confirmation, when it was lost); True when a catch-up must be started for it
        (none is running; a running one takes the new start, and waits for `confirmed`, itself)."""
        state = self.projects.get(project)
        if state is None or start is None:
            return False
        if confirmed is not None:
            state.confirmed = confirmed
        if state.catchup_from is None or start < state.catchup_from:
            state.catchup_from = start
        if state.buffer is None:
            state.buffer = []
        if state.catching:
            return False
        state.catching = True
        return True
