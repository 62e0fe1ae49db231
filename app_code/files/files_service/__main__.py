"""`python -m files_service`: the container's command, also used by tests, the benchmark and the local backend."""

from __future__ import annotations

import sys

import uvicorn
from motion_common import logs

from files_service.app import create_app
from files_service.settings import Settings, SettingsError

# Longer than the ALB's idle timeout (60 s), so the ALB, not us, closes idle connections; otherwise
# it may send a request on a connection we are closing and answer the client with a 502.
KEEP_ALIVE_SECONDS = 65


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as err:
        print(f"files_service: {err}", file=sys.stderr)
        return 2
    # One JSON object per line, each request's lines with its id (uvicorn's own loggers too).
    logs.configure(settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        workers=1,
        lifespan="on",
        access_log=False,
        server_header=False,
        # Client addresses are not used, so X-Forwarded-* parsing would be wasted work per request.
        proxy_headers=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        log_level=settings.log_level.lower(),
        log_config=None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
