"""Reading settings from environment variables: the primitives the services' settings share.

An `EnvReader` reads one variable at a time from a mapping (`os.environ`, or a test's dict). A
missing or bad value does not stop it: it records a problem that names the variable and carries on
with the default, so that `raise_if_problems` can fail start-up once, naming every bad variable.
Each service builds its own `parse()` (its variables, defaults and dataclasses) on top of this.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final, TypeVar

TRUE_VALUES: Final = ("1", "true", "yes", "on")
FALSE_VALUES: Final = ("0", "false", "no", "off")
# Scheme and host are all a URL needs here; the path (if any) is not checked.
HTTP_URL_RE: Final = re.compile(r"^https?://[^\s/]+")
# A browser origin: scheme, host and optional port, and nothing after them.
ORIGIN_RE: Final = re.compile(r"^https?://[^\s/]+$")
# An AWS region name such as eu-west-1 or us-gov-east-1.
REGION_RE: Final = re.compile(r"^[a-z]{2}(?:-[a-z0-9]+)+-\d$")

_N = TypeVar("_N", int, float)


class SettingsError(ValueError):
    """One or more environment variables are missing or invalid; the message names each."""


def _bound(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


class EnvReader:
    """Typed reads of environment variables that collect problems instead of raising at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def raw(self, name: str) -> str:
        """The value with surrounding white space removed; "" when unset."""
        return self.env.get(name, "").strip()

    def required(self, name: str) -> str:
        value = self.raw(name)
        if not value:
            self.problems.append(f"{name} is required")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        """A whole number in [low, high]; `default` when unset or invalid."""
        return self._ranged(name, default, low, high, int, "an integer")

    def number(self, name: str, default: float, low: float, high: float) -> float:
        """A (decimal) number in [low, high]; `default` when unset or invalid."""
        return self._ranged(name, default, low, high, float, "a number")

    def _ranged(
        self, name: str, default: _N, low: _N, high: _N, convert: Callable[[str], _N], kind: str
    ) -> _N:
        value = self.raw(name)
        if not value:
            return default
        try:
            number = convert(value)
        except ValueError:
            self.problems.append(f"{name} must be {kind}, got {value!r}")
            return default
        if not low <= number <= high:
            self.problems.append(f"{name} must be between {_bound(low)} and {_bound(high)}, got {value}")
            return default
        return number

    def choice(self, name: str, default: str, choices: tuple[str, ...], *, upper: bool = False) -> str:
        """One of `choices`, compared in lower case (upper case with `upper=True`)."""
        value = self.raw(name) or default
        value = value.upper() if upper else value.lower()
        if value not in choices:
            self.problems.append(f"{name} must be one of {', '.join(choices)}, got {value!r}")
            return default
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name).lower()
        if not value:
            return default
        if value in TRUE_VALUES:
            return True
        if value in FALSE_VALUES:
            return False
        self.problems.append(f"{name} must be true or false, got {value!r}")
        return default

    def url(self, name: str, *, required: bool) -> str:
        """An http(s) URL, or "" when unset and not required."""
        value = self.required(name) if required else self.raw(name)
        if value and not HTTP_URL_RE.match(value):
            self.problems.append(f"{name} must be an http(s) URL, got {value!r}")
        return value

    def origins(self, name: str) -> tuple[str, ...]:
        """Comma-separated browser origins (or `*`), each without a trailing slash; () when unset."""
        origins = tuple(o.strip().rstrip("/") for o in self.raw(name).split(",") if o.strip())
        for origin in origins:
            if origin != "*" and not ORIGIN_RE.match(origin):
                self.problems.append(
                    f"{name} entries must be origins like https://app.example, got {origin!r}"
                )
        return origins

    def expect_match(self, name: str, value: str | None, pattern: re.Pattern[str], what: str) -> None:
        """Record a problem when `value` (read from `name`) is set but does not match `pattern`;
        `what` completes "NAME is not ...", e.g. "an AWS region name"."""
        if value and not pattern.match(value):
            self.problems.append(f"{name} is not {what}: {value!r}")

    def raise_if_problems(self, subject: str) -> None:
        """Raise one SettingsError naming every problem recorded, e.g. "invalid chat service settings: …"."""
        if self.problems:
            raise SettingsError(f"invalid {subject} settings: " + "; ".join(self.problems))
