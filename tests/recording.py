"""A mapping that remembers every key it is asked for: how tests learn which environment variables a
settings parser reads, or which request headers a handler reads."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


class Recording(Mapping[str, str]):
    """`asked` holds every key looked up; iterating records `iterated` (asking for every key at
    once, which a caller that needs an exact list of names must treat as reading everything)."""

    ITERATED = "<every key>"

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return self._values[key]

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return self._values.get(key, default)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        self.asked.add(self.ITERATED)
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)
