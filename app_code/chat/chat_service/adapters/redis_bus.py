"""Redis pub/sub between chat instances (redis-py asyncio with the hiredis parser).

Two connections per instance: one subscribed to the channels of the projects that have members on
this instance, one that publishes. Each runs its own loop that reconnects with capped, jittered
exponential backoff, so a Redis restart or failover heals without a restart of the task:

* the subscriber resubscribes to whatever is wanted at that moment and reports the projects it had
  lost, so the instance can catch them up from DynamoDB;
* the publisher keeps unsent messages (bounded by count and age) and sends them, in order, once
  Redis is back; subscribers drop any they already have. What it had to drop (too many, too old) is
  announced once it can publish again, per project with the first dropped key, so every receiver
  fetches those messages from the store even if its own subscription never broke.

A payload is `<origin instance id>|<message key>|<event JSON>`: receivers skip their own messages
and forward the event without parsing it. A gap notice has GAP_EVENT as its event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from redis.asyncio.connection import Connection, SSLConnection
from redis.exceptions import RedisError

from chat_service.core.hub import BEAT_SECONDS
from chat_service.core.keys import INSTANCE_CHARS, KEY_LENGTH, MS_DIGITS
from chat_service.core.ports import BusReceiver
from chat_service.settings import RedisSettings

log = logging.getLogger(__name__)

CHANNEL_PREFIX = b"chat:project:"
CONTROL_CHANNEL = b"chat:control"
HEADER_LENGTH = INSTANCE_CHARS + 1 + KEY_LENGTH + 1
BACKOFF_INITIAL = 0.1
BACKOFF_MAX = 5.0
HEARTBEAT_SECONDS = 5.0
PUBLISH_BATCH = 512
PUBLISH_TIMEOUT_SECONDS = 5.0
OUTBOX_LIMIT = 20_000
OUTBOX_MAX_AGE_SECONDS = 60.0

# The event of a gap notice: "my messages for this channel from this key on were dropped unsent".
GAP_EVENT = b"!gap"
# Every instance says it is alive on the control channel each BEAT_SECONDS (the hub's); one that falls
# silent may have died between storing messages and publishing them, which the others then fetch
# from the store. A beat is `beat|<instance id>|<floor ms>`: the floor bounds the ids of everything
# the instance publishes after it (BusReceiver.floor_ms). A beat without a floor (`beat|<id>`, an
# instance of an earlier release during a rolling deployment) still says the instance is alive.
BEAT_PREFIX = b"beat|"
# A message says its publisher is alive too (one that dies before its first beat is still missed
# when it falls silent); the hub is told at most this often per publisher.
PEER_NOTE_SECONDS = 1.0
# Publishers remembered for that; past this many (instances come and go) the memory starts over.
PEERS_REMEMBERED = 1024


def beat(origin: bytes, floor_ms: int) -> bytes:
    return BEAT_PREFIX + origin + b"|%d" % floor_ms


def parse_beat(data: bytes) -> tuple[str, int | None] | None:
    """The sender and floor of a beat (floor None when it has none or it is not a number); None
    when `data` is not a beat at all."""
    if not data.startswith(BEAT_PREFIX):
        return None
    peer, _, floor = data[len(BEAT_PREFIX) :].partition(b"|")
    if not peer or not peer.isascii() or not peer.isalnum():
        return None
    known = floor.isdigit() and len(floor) <= MS_DIGITS
    return peer.decode(), int(floor) if known else None


def _ignore(*_: object) -> None:
    return None


def channel(project: str) -> bytes:
    return CHANNEL_PREFIX + project.encode()


def payload(origin: str, key: str, event: bytes) -> bytes:
    return f"{origin}|{key}|".encode() + event


def pack_publish(channel: bytes, data: bytes) -> bytes:
    """A PUBLISH command in RESP (what redis-py's general-purpose packer would produce, for a
    fraction of its cost on the send path)."""
    return b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(channel), channel, len(data), data)


class Backoff:
    def __init__(self) -> None:
        self._delay = BACKOFF_INITIAL

    def reset(self) -> None:
        self._delay = BACKOFF_INITIAL

    async def wait(self) -> None:
        # Full jitter keeps a fleet of tasks from reconnecting in lockstep after a failover.
        await asyncio.sleep(random.uniform(self._delay / 2, self._delay))  # noqa: S311 - not crypto
        self._delay = min(self._delay * 2, BACKOFF_MAX)


class RedisBus:
    """The core's `Bus` on Redis; `start(receiver)` connects it and hands what arrives to `receiver`."""

    def __init__(self, settings: RedisSettings, instance_id: str) -> None:
        self._settings = settings
        self._origin_id = instance_id
        self._origin = instance_id.encode()
        # Set by `start`: the receiver's methods, bound once (every message from Redis calls one).
        self._on_message: Callable[[str, str, bytes], None] = _ignore
        self._on_resubscribed: Callable[[list[str], asyncio.Future[list[None]], int | None], None] = _ignore
        self._on_gap: Callable[[str, str], None] = _ignore
        self._on_peer: Callable[[str, int | None], None] = _ignore
        self._floor: Callable[[], int] = lambda: time.time_ns() // 1_000_000
        # Publisher id -> when (monotonic) the receiver was last told a message of its arrived.
        self._told: dict[bytes, float] = {}
        # Channel -> the first key dropped from the outbox unsent, announced when publishing works.
        self._dropped_from: dict[bytes, str] = {}
        # Wall-clock ms of the subscriber's last read: the last moment it was known to be receiving.
        self._heard_ms: int | None = None
        self._wanted: set[str] = set()
        # Subscription confirmations resolve these (a join waits for its project's).
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._sub_conn: Connection | None = None
        self._sub_lock = asyncio.Lock()
        self._sub_up = False
        self._pub_up = False
        self._outbox: deque[tuple[float, bytes, bytes]] = deque()
        self._outbox_ready = asyncio.Event()
        self._drained = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._last_read = 0.0
        self.dropped = 0

    @property
    def listening(self) -> bool:
        """The subscription is live: what other instances publish arrives."""
        return self._sub_up

    @property
    def up(self) -> bool:
        return self._sub_up and (self._pub_up or not self._outbox)

    def _connection(self) -> Connection:
        s = self._settings
        kwargs: dict[str, Any] = {
            "host": s.host,
            "port": s.port,
            "password": s.auth_token,
            "socket_connect_timeout": 3.0,
            "socket_timeout": 5.0,
            "driver_info": None,
            # RESP2: pub/sub messages arrive as plain replies. Under RESP3 they are push messages
            # that redis-py routes through a handler that formats each one for a debug log.
            "protocol": 2,
        }
        if s.tls:
            return SSLConnection(ssl_cert_reqs="required", **kwargs)
        return Connection(**kwargs)

    def start(self, receiver: BusReceiver) -> None:
        self._on_message = receiver.message
        self._on_resubscribed = receiver.resubscribed
        self._on_gap = receiver.gap_announced
        self._on_peer = receiver.peer_alive
        self._floor = receiver.floor_ms
        self._tasks = [
            asyncio.create_task(self._subscriber()),
            asyncio.create_task(self._publisher()),
            asyncio.create_task(self._beat()),
        ]

    async def _beat(self) -> None:
        while True:
            # Not while publishing is failing (something waits in the outbox and the last attempt
            # failed): a beat that goes out late says nothing, and receivers judge silence by
            # their own subscription anyway.
            if (self._pub_up or not self._outbox) and len(self._outbox) < OUTBOX_LIMIT:
                # The floor now: everything queued before this beat goes out before it (one
                # connection, in order), everything handed over after it has an id at or above it.
                self._outbox.append((time.monotonic(), CONTROL_CHANNEL, beat(self._origin, self._floor())))
                self._outbox_ready.set()
            await asyncio.sleep(BEAT_SECONDS)

    async def close(self, flush_timeout: float = 1.0) -> None:
        """Send what is still queued (briefly), then stop both loops."""
        if self._outbox:
            self._drained.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), flush_timeout)
        self._closing = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fail_waiters()

    # --- subscriptions -------------------------------------------------------------------------

    def subscribe(self, project: str) -> asyncio.Future[None] | None:
        """Want `project`'s channel. Returns a future that completes once Redis confirms, or None
        when Redis is down (the subscriber subscribes as soon as it is back)."""
        self._wanted.add(project)
        if not self._sub_up:
            return None
        future = self._waiter(project)
        self._spawn_command(b"SUBSCRIBE", project)
        return future

    def unsubscribe(self, project: str) -> None:
        self._wanted.discard(project)
        if self._sub_up:
            self._spawn_command(b"UNSUBSCRIBE", project)

    def _spawn_command(self, command: bytes, project: str) -> None:
        conn = self._sub_conn
        if conn is None:
            return

        async def send() -> None:
            try:
                async with self._sub_lock:
                    await conn.send_command(command, channel(project), check_health=False)
            except (RedisError, OSError) as err:
                # The reader notices the broken connection too and reconnects; resubscribing then
                # covers this command.
                log.debug("redis %s %s failed: %s", command.decode(), project, err)

        task = asyncio.create_task(send())
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    def _fail_waiters(self) -> None:
        # A join waiting for a subscription that died proceeds; catch-up covers the gap.
        for waiters in self._waiters.values():
            for future in waiters:
                if not future.done():
                    future.set_result(None)
        self._waiters.clear()

    async def _subscriber(self) -> None:
        backoff = Backoff()
        connected_before = False
        while not self._closing:
            conn = self._connection()
            self._sub_conn = conn
            watchdog: asyncio.Task[None] | None = None
            try:
                await conn.connect()
                # Flag up and take the wanted set in one step: a subscribe() from now on sends its
                # own SUBSCRIBE (queued behind this one), so no project falls between the two.
                wanted = sorted(self._wanted)
                confirmed = [self._waiter(p) for p in wanted]
                self._sub_up = True
                async with self._sub_lock:
                    await conn.send_command(
                        b"SUBSCRIBE", CONTROL_CHANNEL, *map(channel, wanted), check_health=False
                    )
                if connected_before:
                    log.info("redis subscriber reconnected; resubscribed to %d projects", len(wanted))
                connected_before = True
                # Anything wanted now may have missed messages while there was no subscription.
                if wanted:
                    self._on_resubscribed(wanted, asyncio.gather(*confirmed), self._heard_ms)
                backoff.reset()
                watchdog = asyncio.create_task(self._heartbeat(conn))
                await self._read(conn)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as err:
                if self._sub_up or not connected_before:
                    log.warning("redis subscriber connection lost: %s", err)
            finally:
                if watchdog is not None:
                    watchdog.cancel()
                self._sub_up = False
                self._sub_conn = None
                self._fail_waiters()
                with contextlib.suppress(Exception):
                    await conn.disconnect(nowait=True)
            if not self._closing:
                await backoff.wait()

    def _waiter(self, project: str) -> asyncio.Future[None]:
        future = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(project, []).append(future)
        return future

    async def _heartbeat(self, conn: Connection) -> None:
        """A PING now and then: a half-open connection (e.g. after a failover) shows up as a read
        that never completes, so no reply for a few beats means the connection is dead."""
        self._last_read = time.monotonic()
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            if time.monotonic() - self._last_read > HEARTBEAT_SECONDS * 3:
                log.warning("redis subscriber silent for %.0fs; reconnecting", HEARTBEAT_SECONDS * 3)
                await conn.disconnect(nowait=True)
                return
            try:
                async with self._sub_lock:
                    await conn.send_command(b"PING", check_health=False)
            except (RedisError, OSError):
                await conn.disconnect(nowait=True)
                return

    async def _read(self, conn: Connection) -> None:
        on_message = self._on_message
        prefix_len = len(CHANNEL_PREFIX)
        origin = self._origin
        told = self._told
        while True:
            response = await conn.read_response(timeout=math.inf)
            self._last_read = time.monotonic()
            self._heard_ms = time.time_ns() // 1_000_000
            if not isinstance(response, list) or len(response) < 3:
                continue
            kind = response[0]
            if kind == b"message" and response[1] == CONTROL_CHANNEL:
                heard = parse_beat(response[2])
                if heard is not None and heard[0] != self._origin_id:
                    self._on_peer(*heard)
                continue
            if kind == b"message":
                data: bytes = response[2]
                publisher = data[:INSTANCE_CHARS]
                if publisher == origin or len(data) < HEADER_LENGTH:
                    continue
                if (
                    self._last_read - told.get(publisher, -math.inf) >= PEER_NOTE_SECONDS
                    and publisher.isalnum()
                ):
                    if len(told) >= PEERS_REMEMBERED:
                        told.clear()
                    told[publisher] = self._last_read
                    self._on_peer(publisher.decode(), None)
                try:
                    project = response[1][prefix_len:].decode()
                    key = data[INSTANCE_CHARS + 1 : INSTANCE_CHARS + 1 + KEY_LENGTH].decode()
                    event = data[HEADER_LENGTH:]
                    if event == GAP_EVENT:
                        self._on_gap(project, key)
                    else:
                        on_message(project, key, event)
                except Exception:
                    log.exception("delivering a message from redis failed")
            elif kind == b"subscribe":
                name: bytes = response[1]
                if name.startswith(CHANNEL_PREFIX):
                    project = name[prefix_len:].decode()
                    for future in self._waiters.pop(project, []):
                        if not future.done():
                            future.set_result(None)

    # --- publishing ----------------------------------------------------------------------------

    def publish(self, project: str, key: str, event: bytes) -> None:
        """Queue a message for the other instances; sent with others of the same loop pass."""
        if len(self._outbox) >= OUTBOX_LIMIT:
            self._drop(self._outbox.popleft())
        self._outbox.append((time.monotonic(), channel(project), payload(self._origin_id, key, event)))
        self._outbox_ready.set()

    async def _publisher(self) -> None:
        backoff = Backoff()
        conn: Connection | None = None
        while not self._closing:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            while self._outbox or self._dropped_from:
                self._expire_outbox()
                # Gap notices first: receivers fetch the dropped messages from the store, and the
                # messages that follow in this batch then arrive after what they follow.
                batch = self._gap_notices()
                batch += [self._outbox.popleft() for _ in range(min(PUBLISH_BATCH, len(self._outbox)))]
                if not batch:
                    break
                try:
                    if conn is None:
                        conn = self._connection()
                        await conn.connect()
                        if not self._pub_up:
                            log.info("redis publisher connected")
                    await conn.send_packed_command(
                        [pack_publish(ch, data) for _, ch, data in batch], check_health=False
                    )
                    # One deadline for the batch's replies rather than one timer per reply.
                    async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
                        for _ in batch:
                            await conn.read_response(timeout=math.inf)
                except asyncio.CancelledError:
                    raise
                except (RedisError, OSError, TimeoutError) as err:
                    # Back to the front, in order: a batch that may have been half sent is sent
                    # again, and receivers drop what they already have.
                    self._outbox.extendleft(reversed(batch))
                    if self._pub_up:
                        log.warning(
                            "redis publish failed, keeping %d messages to retry: %s", len(self._outbox), err
                        )
                    self._pub_up = False
                    if conn is not None:
                        with contextlib.suppress(Exception):
                            await conn.disconnect(nowait=True)
                    conn = None
                    await backoff.wait()
                    continue
                self._pub_up = True
                backoff.reset()
            self._drained.set()
        if conn is not None:
            await conn.disconnect(nowait=True)

    def _expire_outbox(self) -> None:
        # Old messages are in the store; the gap notice sends the other instances there for them.
        limit = time.monotonic() - OUTBOX_MAX_AGE_SECONDS
        while self._outbox and self._outbox[0][0] < limit:
            self._drop(self._outbox.popleft())

    def _drop(self, entry: tuple[float, bytes, bytes]) -> None:
        _, chan, data = entry
        if chan == CONTROL_CHANNEL:
            return  # a beat: nothing to fetch
        self.dropped += 1
        key = data[INSTANCE_CHARS + 1 : INSTANCE_CHARS + 1 + KEY_LENGTH].decode()
        # The earliest dropped key per channel: entries usually leave the outbox oldest first, but
        # a failed batch goes back to its front after newer ones may have been dropped.
        first = self._dropped_from.get(chan)
        if first is None or key < first:
            self._dropped_from[chan] = key

    def _gap_notices(self) -> list[tuple[float, bytes, bytes]]:
        """The pending gap notices as outbox entries (taken: each is announced once)."""
        notices = [
            (time.monotonic(), chan, payload(self._origin_id, key, GAP_EVENT))
            for chan, key in self._dropped_from.items()
        ]
        self._dropped_from.clear()
        return notices
