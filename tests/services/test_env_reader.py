"""The shared settings primitives: each read with good, missing and bad values, and one error that
names every problem."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from motion_common.env import EnvReader, SettingsError


def reader(**env: str) -> EnvReader:
    return EnvReader(env)


# --- raw and required -------------------------------------------------------------------------------


def test_raw_strips_white_space_and_is_empty_when_unset() -> None:
    env = reader(NAME="  value \n")
    assert env.raw("NAME") == "value"
    assert env.raw("UNSET") == ""
    assert env.problems == []


def test_required_reports_unset_and_blank_values() -> None:
    env = reader(SET="x", BLANK="   ")
    assert env.required("SET") == "x"
    assert env.required("BLANK") == ""
    assert env.required("UNSET") == ""
    assert env.problems == ["BLANK is required", "UNSET is required"]


# --- integer and number ----------------------------------------------------------------------------


def port(env: EnvReader) -> float:
    return env.integer("PORT", 80, 1, 65535)


def rate(env: EnvReader) -> float:
    return env.number("RATE", 10, 0.01, 100_000)


@pytest.mark.parametrize(
    ("read", "value", "expected", "problem"),
    [
        (port, "1", 1, None),
        (port, " 8080 ", 8080, None),
        (port, "65535", 65535, None),
        (port, "", 80, None),
        (port, "http", 80, "PORT must be an integer, got 'http'"),
        (port, "80.5", 80, "PORT must be an integer, got '80.5'"),
        (port, "0", 80, "PORT must be between 1 and 65535, got 0"),
        (port, "70000", 80, "PORT must be between 1 and 65535, got 70000"),
        (rate, "2.5", 2.5, None),
        (rate, "0.01", 0.01, None),
        (rate, "7", 7.0, None),
        (rate, "", 10, None),
        (rate, "fast", 10, "RATE must be a number, got 'fast'"),
        (rate, "0.001", 10, "RATE must be between 0.01 and 100000, got 0.001"),
        (rate, "1e9", 10, "RATE must be between 0.01 and 100000, got 1e9"),
        (rate, "nan", 10, "RATE must be between 0.01 and 100000, got nan"),
    ],
)
def test_numbers_in_range_are_read_and_others_fall_back_to_the_default(
    read: Callable[[EnvReader], float], value: str, expected: float, problem: str | None
) -> None:
    env = reader(PORT=value, RATE=value)
    assert read(env) == expected
    assert env.problems == ([] if problem is None else [problem])


def test_integer_results_are_ints_and_bounds_are_written_out_in_full() -> None:
    env = reader(PORT="8080", BYTES="1")
    assert type(env.integer("PORT", 80, 1, 65535)) is int
    env.integer("BYTES", 1024, 16 * 1024, 1024**3)
    assert env.problems == ["BYTES must be between 16384 and 1073741824, got 1"]


# --- choice and boolean ----------------------------------------------------------------------------

MODES = ("disable", "require", "verify-full")
LEVELS = ("DEBUG", "INFO", "WARNING")


def test_choice_is_case_insensitive_and_defaults_when_unset() -> None:
    env = reader(MODE="Verify-Full", LEVEL="debug")
    assert env.choice("MODE", "require", MODES) == "verify-full"
    assert env.choice("LEVEL", "INFO", LEVELS, upper=True) == "DEBUG"
    assert env.choice("UNSET", "require", MODES) == "require"
    assert env.problems == []


def test_choice_reports_the_allowed_values() -> None:
    env = reader(MODE="on", LEVEL="chatty")
    assert env.choice("MODE", "require", MODES) == "require"
    assert env.choice("LEVEL", "INFO", LEVELS, upper=True) == "INFO"
    assert env.problems == [
        "MODE must be one of disable, require, verify-full, got 'on'",
        "LEVEL must be one of DEBUG, INFO, WARNING, got 'CHATTY'",
    ]


@pytest.mark.parametrize("value", ["1", "true", "YES", " On "])
def test_boolean_true_values(value: str) -> None:
    env = reader(FLAG=value)
    assert env.boolean("FLAG", False) is True
    assert env.problems == []


@pytest.mark.parametrize("value", ["0", "False", "no", "OFF"])
def test_boolean_false_values(value: str) -> None:
    env = reader(FLAG=value)
    assert env.boolean("FLAG", True) is False
    assert env.problems == []


def test_boolean_defaults_when_unset_and_reports_anything_else() -> None:
    env = reader(FLAG="Maybe")
    assert env.boolean("UNSET", True) is True
    assert env.boolean("FLAG", True) is True
    assert env.problems == ["FLAG must be true or false, got 'maybe'"]


# --- url, origins and patterns ---------------------------------------------------------------------


def test_url_accepts_http_and_https() -> None:
    env = reader(A="https://clerk.example/.well-known/jwks.json", B="http://127.0.0.1:5000/")
    assert env.url("A", required=True) == "https://clerk.example/.well-known/jwks.json"
    assert env.url("B", required=False) == "http://127.0.0.1:5000/"
    assert env.url("UNSET", required=False) == ""
    assert env.problems == []


def test_url_reports_a_missing_required_url_and_other_schemes() -> None:
    env = reader(FTP="ftp://keys", BARE="clerk.example/jwks")
    env.url("UNSET", required=True)
    env.url("FTP", required=True)
    env.url("BARE", required=False)
    assert env.problems == [
        "UNSET is required",
        "FTP must be an http(s) URL, got 'ftp://keys'",
        "BARE must be an http(s) URL, got 'clerk.example/jwks'",
    ]


def test_origins_are_split_trimmed_and_lose_a_trailing_slash() -> None:
    env = reader(CORS_ORIGINS=" https://app.example, http://localhost:5173/ ,, *")
    assert env.origins("CORS_ORIGINS") == ("https://app.example", "http://localhost:5173", "*")
    assert env.origins("UNSET") == ()
    assert env.problems == []


def test_origins_report_each_entry_that_is_not_an_origin() -> None:
    env = reader(CORS_ORIGINS="app.example, https://ok.example, https://app.example/path")
    env.origins("CORS_ORIGINS")
    assert env.problems == [
        "CORS_ORIGINS entries must be origins like https://app.example, got 'app.example'",
        "CORS_ORIGINS entries must be origins like https://app.example, got 'https://app.example/path'",
    ]


def test_expect_match_checks_only_values_that_are_set() -> None:
    region = re.compile(r"^[a-z]{2}(?:-[a-z0-9]+)+-\d$")
    env = reader()
    env.expect_match("AWS_REGION", "eu-west-1", region, "an AWS region name")
    env.expect_match("AWS_REGION", "", region, "an AWS region name")
    env.expect_match("AWS_REGION", None, region, "an AWS region name")
    assert env.problems == []
    env.expect_match("AWS_REGION", "Europe", region, "an AWS region name")
    assert env.problems == ["AWS_REGION is not an AWS region name: 'Europe'"]


# --- one error for every problem -------------------------------------------------------------------


def test_no_problems_raise_nothing() -> None:
    env = reader(PORT="8080")
    env.integer("PORT", 80, 1, 65535)
    env.raise_if_problems("test service")


def test_every_problem_is_reported_in_one_error_in_the_order_found() -> None:
    env = reader(PORT="eighty", FLAG="perhaps", MODE="on", URL="keys", CORS_ORIGINS="app.example")
    env.integer("PORT", 80, 1, 65535)
    env.required("HOST")
    env.boolean("FLAG", False)
    env.choice("MODE", "require", MODES)
    env.url("URL", required=True)
    env.origins("CORS_ORIGINS")
    with pytest.raises(SettingsError) as err:
        env.raise_if_problems("test service")
    assert isinstance(err.value, ValueError)
    assert str(err.value) == (
        "invalid test service settings: "
        "PORT must be an integer, got 'eighty'; "
        "HOST is required; "
        "FLAG must be true or false, got 'perhaps'; "
        "MODE must be one of disable, require, verify-full, got 'on'; "
        "URL must be an http(s) URL, got 'keys'; "
        "CORS_ORIGINS entries must be origins like https://app.example, got 'app.example'"
    )


def test_services_raise_the_shared_error() -> None:
    from chat_service.settings import SettingsError as ChatSettingsError
    from files_service.settings import SettingsError as FilesSettingsError

    assert ChatSettingsError is SettingsError and FilesSettingsError is SettingsError
