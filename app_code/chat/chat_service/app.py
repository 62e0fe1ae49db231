"""The entry point: settings, logging, the event loop (uvloop), signals, and the wiring of the
core (`chat_service.core`) to its adapters (`chat_service.adapters`). The only module that imports
both."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import sys
import time
from collections.abc import Coroutine
from typing import Any, Final

import uvloop
from motion_common import logs
from motion_common.metrics import Metrics
from picows import ws_create_server

from chat_service import metric_names
from chat_service.adapters.dynamo_store import DynamoMessageStore, NoStore
from chat_service.adapters.keepalive import sweep
from chat_service.adapters.listener import Listener, Listeners
from chat_service.adapters.redis_bus import RedisBus
from chat_service.adapters.threads import Threads
from chat_service.adapters.upgrade import StoreProbe, UpgradeRouter
from chat_service.adapters.verifier import ThreadedVerifier
from chat_service.core import protocol as proto
from chat_service.core.hub import BEAT_SECONDS, PERSIST_IN_FLIGHT, Hub
from chat_service.core.keys import new_instance_id, now_ms
from chat_service.core.ports import Store
from chat_service.core.session import SessionLimits, Sessions
from chat_service.settings import Settings, SettingsError

log = logging.getLogger("chat_service")

# Reads have their own threads, so no client's history queries can hold up the writes that acks
# wait for.
READ_THREADS: Final = 4


class ChatService:
    """One chat instance, wired: the hub and its sessions over picows, Redis and DynamoDB."""

    def __init__(self, settings: Settings, *, instance_id: str | None = None) -> None:
        """Builds everything; needs the running event loop."""
        self.settings = settings
        self.instance_id = instance_id or new_instance_id()
        self.writes = Threads(PERSIST_IN_FLIGHT, "chat-write")
        self.reads = Threads(READ_THREADS, "chat-read")
        self.store: Store
        if settings.persist:
            assert settings.table is not None and settings.region is not None
            self.store = DynamoMessageStore(
                settings.table, settings.region, max_connections=PERSIST_IN_FLIGHT + READ_THREADS
            )
        else:
            self.store = NoStore()
        self.bus = RedisBus(settings.redis, self.instance_id)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.metrics = Metrics(metric_names.NAMESPACE, {metric_names.DIMENSION: metric_names.SERVICE})
        self.hub = Hub(
            self.instance_id,
            self.bus,
            self.store,
            persist=settings.persist,
            reads=self.reads,
            writes=self.writes,
            spawn=self.spawn,
            fanout_latency=functools.partial(self.metrics.observe, metric_names.FANOUT_LATENCY),
        )
        self.verifier = ThreadedVerifier(settings.auth_issuer, settings.auth_jwks_url, settings.auth_audience)
        self.sessions = Sessions(
            self.hub,
            self.verifier,
            SessionLimits(
                max_message_bytes=settings.max_message_bytes,
                send_rate_per_second=settings.send_rate_per_second,
                send_rate_burst=settings.send_rate_burst,
                ping_interval_seconds=settings.ping_interval_seconds,
            ),
            spawn=self.spawn,
            timers=asyncio.get_running_loop(),
        )
        self._counted: dict[str, int] = {}
        self.listeners = Listeners()
        self.probe = StoreProbe(self.store, self.reads, settings.persist)
        self.router = UpgradeRouter(
            self.listener, self.hub.stats, self.probe, self.listeners, settings.cors_origins
        )
        self._server: Any = None

    def listener(self, token: str | None, connection_id: str) -> Listener:
        settings = self.settings
        return Listener(
            self.sessions,
            self.listeners,
            token,
            settings.max_frame_bytes,
            settings.max_buffered_bytes,
            connection_id,
        )

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self.bus.start(self.hub)
        if self.settings.persist:
            # Ready only once the store answers (or known not to, which readiness then says).
            await self.probe.probe()
            self.spawn(self.probe.forever(lambda: self.hub.draining))
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
        self.spawn(sweep(self.listeners, self.settings.ping_interval_seconds))
        self.spawn(self._watch_peers())
        self.spawn(self._publish_metrics_forever())
        log.info(
            "chat instance %s listening on %s:%d (persist=%s)",
            self.instance_id,
            self.settings.host,
            self.settings.port,
            self.settings.persist,
        )

    async def _watch_peers(self) -> None:
        while not self.hub.draining:
            await asyncio.sleep(BEAT_SECONDS)
            self.hub.check_peers(now_ms())

    def publish_metrics(self) -> None:
        """One EMF document with what the hub counted since the last one (chat_service.metric_names):
        the counters exist for readiness anyway, so the hot paths pay nothing more."""
        stats = self.hub.stats()
        now = {
            metric_names.SENDS_ACCEPTED: stats.accepted,
            metric_names.DELIVERIES: stats.delivered,
            metric_names.SLOW_CONSUMER_CLOSES: stats.slow_consumers,
            metric_names.RATE_LIMIT_CLOSES: stats.rate_limit_closes,
            metric_names.BUS_DROPPED: stats.bus_dropped,
        }
        for name, total in now.items():
            self.metrics.count(name, total - self._counted.get(name, 0))
        self._counted = now
        self.metrics.count(metric_names.CONNECTIONS, len(self.listeners))
        # A failed write is logged and the loop goes on (a dead publisher would leave no metrics).
        self.metrics.flush_logging_failure()

    async def _publish_metrics_forever(self) -> None:
        while True:
            await asyncio.sleep(self.metrics.interval_seconds)
            self.publish_metrics()

    async def shutdown(self) -> None:
        """Stop taking connections, finish the sends in flight, close every socket with 1012."""
        grace = self.settings.shutdown_grace_seconds
        deadline = time.monotonic() + grace
        persister = self.hub.persister
        self.hub.drain()
        if self._server is not None:
            self._server.close()
        log.info("shutting down: %d connections, %d sends in flight", len(self.listeners), persister.pending)
        try:
            await asyncio.wait_for(persister.drain(), max(grace / 2, 0.1))
        except TimeoutError:
            log.warning("shutdown: %d sends still unwritten", persister.pending)
        for listener in list(self.listeners):
            listener.session.close(proto.CLOSE_SERVICE_RESTART, "service restart: reconnect")
        if self.listeners:
            self.listeners.all_closed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.listeners.all_closed.wait(), max(0.0, deadline - time.monotonic())
                )
        for listener in list(self.listeners):
            listener.abort()
        await self.bus.close(flush_timeout=max(0.0, min(1.0, deadline - time.monotonic())))
        for task in list(self._tasks):
            task.cancel()
        self.writes.shutdown()
        self.reads.shutdown()
        self.verifier.shutdown()
        self.publish_metrics()  # the last interval's
        log.info("shut down")


def configure_logging(level: str) -> None:
    # One JSON object per line (motion_common.logs), as the files service and the Lambdas log.
    logs.configure(level)
    # picows logs every connection at INFO; that is noise at our connection counts.
    logging.getLogger("picows").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.WARNING)


async def serve(settings: Settings) -> None:
    service = ChatService(settings)
    await service.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("signal received")
    await service.shutdown()


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as err:
        print(err, file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    uvloop.run(serve(settings))
    return 0
