"""Mint a token for the running local backend (`make run`), signed like Clerk's.

python -m devstack.mint <user-id> <project-id> [<project-id> ...] [--email a@b] [--ttl 3600]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devstack.backend import STATE_FILE, BackendError, State


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("user")
    parser.add_argument("projects", nargs="*")
    parser.add_argument("--email", help="the token's email claim (the mail API's inbox)")
    parser.add_argument("--state", type=Path, default=STATE_FILE, help="the running backend's state file")
    parser.add_argument(
        "--ttl", type=int, default=3600, help="seconds the token is valid (default %(default)s)"
    )
    args = parser.parse_args(argv)
    try:
        issuer = State.load(args.state).issuer()
    except BackendError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    extra = {"email": args.email} if args.email else {}
    print(issuer.mint(args.user, args.projects, ttl_seconds=args.ttl, **extra))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
