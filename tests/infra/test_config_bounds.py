"""Each key's bounds are declared once, as data in `components.config.keys.KEYS`: the allowed-values prose
(Pulumi.yaml's descriptions, the loader's `(allowed: ...)` hints) is generated from them, and the loader
enforces every one of them, naming the key."""

from __future__ import annotations

import re
from typing import Any

import pytest

from components.config.keys import KEYS, Key
from components.config.loader import ConfigError, load_config
from stacktools.pulumi_yaml import render
from stacktools.stack_files import read_stack_file

BOUNDED = [key for key in KEYS if key.minimum is not None or key.maximum is not None]
CHOOSING = [key for key in KEYS if key.choices]
PATTERNED = [key for key in KEYS if key.pattern is not None]


def raw(stack: str) -> dict[str, Any]:
    return {k.split(":", 1)[1]: v for k, v in read_stack_file(stack).items() if k.startswith("motion:")}


def failure(key: Key, value: Any) -> str:
    with pytest.raises(ConfigError) as failed:
        load_config("dev", {**raw("dev"), key.name: value}, "us-east-1")
    return str(failed.value)


def assert_names_key_and_allowed(key: Key, value: Any) -> None:
    message = failure(key, value)
    lines = [line for line in message.splitlines() if f"motion:{key.name}: " in line]
    assert lines, message
    assert any(line.endswith(f"(allowed: {key.allowed})") for line in lines), lines


def test_the_prose_is_generated_from_the_bounds() -> None:
    assert Key("k", "integer", 1, "", minimum=2, maximum=5).allowed == "2 to 5"
    assert Key("k", "integer", 1, "", minimum=1, maximum=5 * 1024**3).allowed == "1 to 5 GiB"
    assert Key("k", "integer", 1, "", minimum=0).allowed == "at least 0"
    assert Key("k", "string", "a", "", choices=("a", "b")).allowed == "a | b"
    assert Key("k", "integer", 0, "", choices=(0, 1, 5)).allowed == "0, 1 or 5"
    assert Key("k", "integer", 7, "", choices=(7,), choices_prose="a retention").allowed == "a retention"
    pattern = re.compile("^x$")
    assert Key("k", "string", "x", "", pattern=pattern, pattern_prose="an x").allowed == "an x"
    assert (
        Key("k", "integer", 1, "", minimum=1, maximum=9, note="at least k2").allowed == "1 to 9, at least k2"
    )


def test_every_description_in_pulumi_yaml_carries_the_generated_prose() -> None:
    rendered = render()
    for key in KEYS:
        if key.allowed:
            assert f"{key.description} ({key.allowed})" in rendered, key.name


def test_a_pattern_has_its_prose_and_a_check_has_its_key() -> None:
    for key in PATTERNED:
        assert key.pattern_prose, key.name
    for key in KEYS:
        assert (key.minimum is None and key.maximum is None) or key.kind == "integer", key.name


@pytest.mark.parametrize("key", BOUNDED, ids=[k.name for k in BOUNDED])
def test_each_range_is_enforced_at_both_ends(key: Key) -> None:
    if key.minimum is not None:
        assert key.violation(key.minimum) is None
        assert_names_key_and_allowed(key, key.minimum - 1)
    if key.maximum is not None:
        assert key.violation(key.maximum) is None
        assert_names_key_and_allowed(key, key.maximum + 1)


@pytest.mark.parametrize("key", CHOOSING, ids=[k.name for k in CHOOSING])
def test_each_choice_set_is_enforced(key: Key) -> None:
    for choice in key.choices:
        assert key.violation(choice) is None
    outside: Any = "not-a-choice" if key.kind == "string" else max(int(c) for c in key.choices) + 1
    assert_names_key_and_allowed(key, outside)


@pytest.mark.parametrize("key", PATTERNED, ids=[k.name for k in PATTERNED])
def test_each_pattern_is_enforced(key: Key) -> None:
    assert key.violation(key.default if key.default else raw("dev")[key.name]) is None
    bad = "%bad value%" if key.pattern is not None and not key.pattern.match("%bad value%") else ""
    assert_names_key_and_allowed(key, bad)
    if key.empty_ok:
        assert key.violation("") is None
