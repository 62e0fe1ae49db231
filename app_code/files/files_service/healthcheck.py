"""`python -m files_service.healthcheck`: the container health check, i.e. liveness (stdlib only, exit 0
= alive)."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

from files_service.routes import DEFAULT_PORT, LIVENESS_PATH


def main() -> int:
    url = f"http://127.0.0.1:{os.environ.get('PORT', str(DEFAULT_PORT))}{LIVENESS_PATH}"
    try:
        with urllib.request.urlopen(url, timeout=4) as resp:
            return 0 if resp.status == 200 else 1
    except (urllib.error.URLError, OSError) as err:
        print(f"unhealthy: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
