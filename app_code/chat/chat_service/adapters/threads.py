"""Thread pools for blocking calls (boto3, token checks), as the core's `Offload`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class Threads:
    """Runs blocking calls on `workers` threads of its own and awaits them on the event loop."""

    __slots__ = ("_loop", "_pool")

    def __init__(self, workers: int, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._loop = asyncio.get_running_loop()

    def __call__(self, fn: Callable[..., T], /, *args: Any) -> Awaitable[T]:
        return self._loop.run_in_executor(self._pool, fn, *args)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
