"""Typed access to raw `motion:*` config strings, converting each by its key's kind in
`components.config.keys.KEYS`, checking it against that key's bounds, and recording every problem
rather than stopping at the first, so one run reports all bad keys at once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from components.config.keys import KEYS_BY_NAME, PROJECT, REQUIRED, Key


class ConfigReader:
    """Typed access to raw config strings; records problems instead of stopping at the first."""

    def __init__(self, stack: str, raw: Mapping[str, str]) -> None:
        self.stack = stack
        self.raw = raw
        self.errors: list[str] = []

    def fail(self, key: str, problem: str) -> None:
        allowed = KEYS_BY_NAME[key].allowed if key in KEYS_BY_NAME else ""
        hint = f" (allowed: {allowed})" if allowed else ""
        self.errors.append(f"{PROJECT}:{key}: {problem}{hint}")

    def get(self, name: str) -> Any:
        key = KEYS_BY_NAME[name]
        if name not in self.raw:
            if key.default is REQUIRED:
                self.fail(name, "is required")
                return ""
            return tuple(key.default) if key.kind == "array" else key.default
        text = self.raw[name]
        try:
            value = _convert(key, text)
        except ValueError as err:
            self.fail(name, f"{text!r} is not a valid {key.kind} ({err})")
            return tuple(key.default or ()) if key.kind == "array" else key.default
        # The key's own bounds (KEYS), the ones its allowed prose is generated from.
        problem = key.violation(value)
        if problem is not None:
            self.fail(name, problem)
        return value

    def check(self, name: str, ok: bool, problem: str) -> None:
        if not ok:
            self.fail(name, problem)


def _convert(key: Key, text: str | Any) -> Any:
    if not isinstance(text, str):  # already typed (tests may pass Python values)
        text = json.dumps(text)
    if key.kind == "string":
        return text
    if key.kind == "boolean":
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise ValueError("expected true or false")
    if key.kind == "integer":
        value = float(text)
        if not value.is_integer():
            raise ValueError("expected a whole number")
        return int(value)
    parsed = json.loads(text)
    if not isinstance(parsed, list) or not all(isinstance(item, str) for item in parsed):
        raise ValueError("expected a list of strings")
    return tuple(parsed)
