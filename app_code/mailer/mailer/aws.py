"""boto3 clients, created on first use.

`import boto3` alone costs ~150 ms, more than the whole cold-import budget of a handler module, so
it happens here, when the first request needs a client, and never at module import. Clients are
thread-safe once built, so one set serves every record a batch handles concurrently.
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_session: Any = None


def client(service: str, *, pool_size: int = 10, max_attempts: int = 3, read_timeout: float = 10.0) -> Any:
    """A client for `service`; the endpoint comes from AWS_ENDPOINT_URL when that is set (local runs)."""
    global _session
    with _lock:
        if _session is None:
            import boto3

            _session = boto3.session.Session()
        from botocore.config import Config

        config = Config(
            max_pool_connections=pool_size,
            connect_timeout=3,
            read_timeout=read_timeout,
            retries={"mode": "standard", "total_max_attempts": max_attempts},
        )
        # Session.client is not safe to call from several threads at once; the lock covers it.
        return _session.client(service, config=config)
