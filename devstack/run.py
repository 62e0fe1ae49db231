"""`make run`: start Motion's whole backend on this machine and keep it up until Ctrl-C.

python -m devstack.run [--port-base 8700]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

from devstack.backend import DEFAULT_PORT_BASE, DEMO_PROJECT, DEMO_USERS, Backend, BackendError
from devstack.servers import ServerError


def say(line: str) -> None:
    """A supervisor's line: errors (dead servers) on stderr, restarts on stdout."""
    print(line, file=sys.stderr if line.startswith("ERROR") else sys.stdout, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--port-base",
        type=int,
        default=int(os.environ.get("PORT_BASE") or DEFAULT_PORT_BASE),
        help="first of the services' fixed ports (default %(default)s)",
    )
    args = parser.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    backend = Backend(port_base=args.port_base)
    started = time.monotonic()
    print(
        "starting Motion's backend on 127.0.0.1 (local AWS API, PostgreSQL, Redis, 7 services) ...",
        flush=True,
    )
    try:
        state = backend.start()
    except (BackendError, ServerError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        issuer = state.issuer()
        token = issuer.mint(DEMO_USERS[0], [DEMO_PROJECT], ttl_seconds=12 * 3600, email="alice@motion.local")
        print(f"Motion backend ready in {time.monotonic() - started:.1f}s", flush=True)
        width = max(len(k) for k in state.urls)
        for name, url in state.urls.items():
            print(f"  {name:<{width}}  {url}")
        print(f"  logs{' ' * (width - 4)}  {backend.log_dir}")
        print(f"\ndemo user {DEMO_USERS[0]} in project {DEMO_PROJECT} (valid 12 h):\n  {token}")
        print("more tokens: .venv/bin/python -m devstack.mint <user> <project> [<project> ...]")
        print("check everything: make smoke        stop: Ctrl-C", flush=True)
        # Supervised like ECS: a service that exits is restarted with backoff, a dead server is
        # reported (and restarted where safe); only Ctrl-C (SIGINT/SIGTERM) stops everything.
        supervisor = backend.supervisor(say)
        while not stop.wait(0.5):
            supervisor.tick()
        return 0
    finally:
        print("stopping ...", flush=True)
        backend.stop()
        print("stopped; temporary data removed", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
