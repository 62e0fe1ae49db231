"""Process entry point: settings, logging, the event loop (uvloop) and signal handling."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import uvloop

from chat_service.server import ChatServer
from chat_service.settings import Settings, SettingsError

log = logging.getLogger("chat_service")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # picows logs every connection at INFO; that is noise at our connection counts.
    logging.getLogger("picows").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.WARNING)


async def serve(settings: Settings) -> None:
    server = ChatServer(settings)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("signal received")
    await server.shutdown()


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as err:
        print(err, file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    uvloop.run(serve(settings))
    return 0
