"""The ordered batcher in front of the store: concurrent batched writes, handed back in order.

Sends are batched into store writes (up to 25 items, BatchWriteItem's maximum) that run
concurrently, but `OrderedPersister` hands finished batches back strictly in submission order. Keys
are assigned in submission order, so the instance publishes each project's messages in key order no
matter which write finished first. The blocking write runs through the `Offload` handed in.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Final, Generic, TypeVar

from chat_service.core.ports import Offload

log = logging.getLogger(__name__)

BATCH_LIMIT: Final = 25  # BatchWriteItem's maximum

T = TypeVar("T")


class _Batch(Generic[T]):
    __slots__ = ("error", "finished", "items")

    def __init__(self, items: list[T]) -> None:
        self.items = items
        self.finished = False
        self.error: BaseException | None = None


class OrderedPersister(Generic[T]):
    """Writes submitted items in concurrent batches; `on_done` sees them in submission order.

    With `write=None` nothing is written and `on_done` runs at once, inside `submit`.
    """

    def __init__(
        self,
        write: Callable[[list[T]], None] | None,
        on_done: Callable[[list[T], BaseException | None], None],
        offload: Offload,
        max_in_flight: int,
    ) -> None:
        self._write = write
        self._on_done = on_done
        self._offload = offload
        self._max_in_flight = max_in_flight
        self._queue: list[T] = []
        self._in_flight: deque[_Batch[T]] = deque()
        self._running = 0
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.items = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def pending(self) -> int:
        return len(self._queue) + sum(len(b.items) for b in self._in_flight)

    def first(self) -> T | None:
        """The oldest item not yet handed back (in flight or queued), None when there is none."""
        if self._in_flight:
            return self._in_flight[0].items[0]
        return self._queue[0] if self._queue else None

    def submit(self, item: T) -> None:
        if self._write is None:
            self._on_done([item], None)
            return
        self._queue.append(item)
        self._idle.clear()
        # Everything submitted during one pass of the event loop goes out together.
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        while self._queue and self._running < self._max_in_flight:
            batch = _Batch(self._queue[:BATCH_LIMIT])
            del self._queue[:BATCH_LIMIT]
            self.batches += 1
            self.items += len(batch.items)
            self._in_flight.append(batch)
            self._running += 1
            task = asyncio.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: _Batch[T]) -> None:
        assert self._write is not None
        try:
            await self._offload(self._write, batch.items)
        except Exception as err:
            log.warning("persisting %d messages failed: %s", len(batch.items), err)
            batch.error = err
        batch.finished = True
        self._running -= 1
        while self._in_flight and self._in_flight[0].finished:
            done = self._in_flight.popleft()
            try:
                self._on_done(done.items, done.error)
            except Exception:
                log.exception("handling persisted messages failed")
        if self._queue:
            self._flush()
        elif not self._in_flight:
            self._idle.set()

    async def drain(self) -> None:
        """Wait until everything submitted is written and handed back."""
        await self._idle.wait()
