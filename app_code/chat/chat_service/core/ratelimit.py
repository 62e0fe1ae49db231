"""Per-connection rate limits (a session holds one bucket for sends and one for all frames)."""

from __future__ import annotations

import time
from collections.abc import Callable


class Bucket:
    """Token bucket: `rate` per second, up to `burst` at once (`clock`: monotonic seconds)."""

    __slots__ = ("burst", "clock", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.clock = clock
        self.stamp = clock()

    def take(self) -> bool:
        now = self.clock()
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens < 1.0:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1.0
        return True

    def wait_ms(self) -> int:
        return int((1.0 - self.tokens) / self.rate * 1000) + 1
