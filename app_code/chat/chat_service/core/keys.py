"""Message keys: the DynamoDB sort key and the message's public id.

`<13-digit epoch ms>#<8-char instance id><10-char counter>`, all fixed width, so string order is
time order. The instance id (random per process) and a per-process counter make a key unique
without coordination, so two messages in the same millisecond never overwrite each other.

The clock is Lamport-style per project: a new key is greater than every key this instance has
assigned and every key it has received for that project, so a reply always sorts after the message
it answers even when the two instances' clocks disagree.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
MS_DIGITS = 13
INSTANCE_CHARS = 8
COUNTER_CHARS = 10
KEY_LENGTH = MS_DIGITS + 1 + INSTANCE_CHARS + COUNTER_CHARS
ORIGIN_SLICE = slice(MS_DIGITS + 1, MS_DIGITS + 1 + INSTANCE_CHARS)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _base32(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 32)
        chars.append(CROCKFORD[digit])
    return "".join(reversed(chars))


# Two base32 digits per 10 bits: a key's counter is five table lookups instead of a loop (keys are on
# the hot path of every send).
_PAIRS = [_base32(i, 2) for i in range(1024)]


def _counter(number: int) -> str:
    pairs = _PAIRS
    return (
        pairs[(number >> 40) & 1023]
        + pairs[(number >> 30) & 1023]
        + pairs[(number >> 20) & 1023]
        + pairs[(number >> 10) & 1023]
        + pairs[number & 1023]
    )


def new_instance_id() -> str:
    return _base32(secrets.randbits(5 * INSTANCE_CHARS), INSTANCE_CHARS)


def is_key(value: str) -> bool:
    return (
        len(value) == KEY_LENGTH
        and value[:MS_DIGITS].isdigit()
        and value[MS_DIGITS] == "#"
        and all(c in CROCKFORD for c in value[MS_DIGITS + 1 :])
    )


def origin_of(key: str) -> str:
    """The id of the instance that assigned the key."""
    return key[ORIGIN_SLICE]


def key_floor(ms: int) -> str:
    """A string that sorts before every key of millisecond `ms` and after every earlier one."""
    return f"{max(ms, 0):0{MS_DIGITS}d}"


class KeyClock:
    def __init__(self, instance_id: str, clock: Callable[[], int] = now_ms) -> None:
        if len(instance_id) != INSTANCE_CHARS or any(c not in CROCKFORD for c in instance_id):
            raise ValueError(f"instance id must be {INSTANCE_CHARS} Crockford base32 characters")
        self.instance_id = instance_id
        self._clock = clock
        self._counter = 0
        # Own keys increase across all projects, so forgetting a project below is always safe.
        self._last_ms = 0
        self._seen: dict[str, str] = {}

    def next(self, project: str) -> tuple[str, int]:
        """A new key for `project`, and the wall-clock time (epoch ms) it was assigned."""
        now = self._clock()
        ms = max(now, self._last_ms)
        self._counter += 1
        suffix = self.instance_id + _counter(self._counter)
        key = f"{ms:0{MS_DIGITS}d}#{suffix}"
        seen = self._seen.get(project)
        if seen is not None and key <= seen:
            ms = int(seen[:MS_DIGITS]) + 1
            key = f"{ms:0{MS_DIGITS}d}#{suffix}"
        self._last_ms = ms
        return key, now

    def not_before(self, ms: int) -> None:
        """Assign no key older than millisecond `ms` from now on, whatever the wall clock does (a
        floor announced to the other instances must hold even if the clock then steps back)."""
        self._last_ms = max(self._last_ms, ms)

    def observe(self, project: str, key: str) -> None:
        """Note a key another instance assigned, so later keys here sort after it."""
        seen = self._seen.get(project)
        if seen is None or key > seen:
            self._seen[project] = key

    def forget(self, project: str) -> None:
        self._seen.pop(project, None)
