"""The chat service's pure parts: keys, frame parsing, settings, the ordered persister, the schema."""

from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path

import orjson
import pytest
from chat_service.adapters.redis_bus import pack_publish
from chat_service.adapters.threads import Threads
from chat_service.core import protocol as proto
from chat_service.core.keys import (
    KEY_LENGTH,
    KeyClock,
    _base32,
    _counter,
    is_key,
    key_floor,
    new_instance_id,
    origin_of,
)
from chat_service.core.persister import OrderedPersister
from chat_service.schema import PARTITION_KEY, SORT_KEY, TABLE, create_table_kwargs
from chat_service.settings import Settings, SettingsError

REPO = Path(__file__).resolve().parents[3]
BASE_ENV = {
    "CHAT_TABLE": "chat-messages",
    "AWS_REGION": "eu-west-1",
    "REDIS_HOST": "redis.internal",
    "AUTH_ISSUER": "https://clerk.example",
    "AUTH_JWKS_URL": "https://clerk.example/.well-known/jwks.json",
}


# --- keys ------------------------------------------------------------------------------------------


def test_keys_in_one_millisecond_are_distinct_and_ordered() -> None:
    clock = KeyClock("AAAAAAAA", clock=lambda: 1_700_000_000_000)
    keys = [clock.next("p")[0] for _ in range(1000)]
    assert len(set(keys)) == 1000
    assert keys == sorted(keys)
    assert all(k.startswith("1700000000000#AAAAAAAA") and is_key(k) and len(k) == KEY_LENGTH for k in keys)


def test_two_instances_in_the_same_millisecond_never_collide() -> None:
    a = KeyClock("AAAAAAAA", clock=lambda: 1_700_000_000_000)
    b = KeyClock("BBBBBBBB", clock=lambda: 1_700_000_000_000)
    ka, kb = a.next("p")[0], b.next("p")[0]
    assert ka != kb and ka[:13] == kb[:13]
    assert origin_of(ka) == "AAAAAAAA" and origin_of(kb) == "BBBBBBBB"


def test_a_reply_sorts_after_what_it_answers_despite_clock_skew() -> None:
    ahead = KeyClock("ZZZZZZZZ", clock=lambda: 2_000)
    behind = KeyClock("00000000", clock=lambda: 1_000)
    seen, _ = ahead.next("p")
    behind.observe("p", seen)
    reply, ts = behind.next("p")
    assert reply > seen
    assert ts == 1_000  # the reported time stays the real clock
    # This instance's own keys keep increasing across projects from there on.
    assert behind.next("q")[0] > reply


def test_own_keys_never_go_backwards_when_the_clock_does() -> None:
    now = [5_000]
    clock = KeyClock("AAAAAAAA", clock=lambda: now[0])
    first, _ = clock.next("p")
    clock.forget("p")
    now[0] = 4_000
    assert clock.next("p")[0] > first


def test_key_helpers() -> None:
    assert len(new_instance_id()) == 8 and new_instance_id() != new_instance_id()
    assert key_floor(42) == "0000000000042" and key_floor(-5) == "0000000000000"
    assert key_floor(1000) < KeyClock("AAAAAAAA", clock=lambda: 1000).next("p")[0]
    assert not is_key("1700000000000#short") and not is_key("x" * KEY_LENGTH)
    with pytest.raises(ValueError):
        KeyClock("lowercase")


# --- frames ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"not json", "bad_json"),
        (b"\xff\xfe", "bad_json"),
        (b'"\\ud800"', "bad_json"),
        (b"[1, 2]", "bad_request"),
        (b'{"type": "dance"}', "unknown_type"),
        (b'{"project": "p"}', "unknown_type"),
        (b'{"type": "send", "project": "p"}', "bad_request"),
        (b'{"type": "send", "project": "p", "text": ""}', "bad_request"),
        (b'{"type": "send", "project": "", "text": "x"}', "bad_request"),
        (b'{"type": "send", "project": 5, "text": "x"}', "bad_request"),
        (b'{"type": "send", "project": "p", "text": "12345678901"}', "too_large"),
        (
            b'{"type": "send", "project": "p", "text": "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"}',
            "too_large",
        ),
        (b'{"type": "history", "project": "p", "limit": 0}', "bad_request"),
        (b'{"type": "history", "project": "p", "limit": true}', "bad_request"),
        (b'{"type": "history", "project": "p", "before": "nope"}', "bad_request"),
        (b'{"type": "ping", "ref": {"a": 1}}', "bad_request"),
        (b'{"type": "auth"}', "bad_request"),
    ],
)
def test_malformed_frames_raise_protocol_errors(payload: bytes, code: str) -> None:
    with pytest.raises(proto.ProtocolError) as err:
        proto.parse(payload, max_text_bytes=10)
    assert err.value.code == code


def test_error_keeps_the_ref_of_the_bad_request() -> None:
    with pytest.raises(proto.ProtocolError) as err:
        proto.parse(b'{"type": "send", "ref": "abc", "project": "p"}', max_text_bytes=10)
    assert err.value.ref == "abc"
    assert orjson.loads(proto.error(err.value.code, err.value.message, err.value.ref))["ref"] == "abc"


def test_valid_requests_parse() -> None:
    key = KeyClock("AAAAAAAA", clock=lambda: 1).next("p")[0]
    assert proto.parse(b'{"type":"send","project":"p","text":"hi","ref":7}', 10) == proto.Send(7, "p", "hi")
    history = proto.parse(orjson.dumps({"type": "history", "project": "p", "after": key}), 10)
    assert history == proto.History(None, "p", None, key, proto.DEFAULT_HISTORY_LIMIT)
    assert proto.parse(memoryview(b'{"type":"ping"}'), 10) == proto.Ping(None)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_text_frames_follow_rfc6455_length_encoding(size: int) -> None:
    payload = b"a" * size
    frame = proto.text_frame(payload)
    assert frame[0] == 0x81  # FIN + text, unmasked
    if size < 126:
        assert frame[1] == size and frame[2:] == payload
    elif size < 65536:
        assert frame[1] == 126 and int.from_bytes(frame[2:4], "big") == size and frame[4:] == payload
    else:
        assert frame[1] == 127 and int.from_bytes(frame[2:10], "big") == size and frame[10:] == payload


# --- settings --------------------------------------------------------------------------------------


def test_settings_defaults() -> None:
    settings = Settings.from_env(BASE_ENV)
    assert settings.port == 8080 and settings.persist and settings.redis.port == 6379
    assert not settings.redis.tls and settings.redis.auth_token is None
    assert settings.max_message_bytes == 4096 and settings.send_rate_per_second == 10
    assert settings.cors_origins == () and settings.auth_audience is None


def test_settings_parse_everything() -> None:
    settings = Settings.from_env(
        {
            **BASE_ENV,
            "PORT": "9000",
            "REDIS_PORT": "6380",
            "REDIS_TLS": "true",
            "REDIS_AUTH_TOKEN": "s3cret-token",
            "AUTH_AUDIENCE": "motion",
            "CORS_ORIGINS": "https://app.example, http://localhost:5173/",
            "MAX_MESSAGE_BYTES": "1000",
            "SEND_RATE_PER_SECOND": "2.5",
            "SEND_RATE_BURST": "5",
            "LOG_LEVEL": "debug",
        }
    )
    assert settings.port == 9000 and settings.redis.tls and settings.redis.port == 6380
    assert settings.cors_origins == ("https://app.example", "http://localhost:5173")
    assert settings.send_rate_per_second == 2.5 and settings.send_rate_burst == 5
    assert settings.log_level == "DEBUG" and settings.auth_audience == "motion"
    assert "s3cret-token" not in repr(settings)


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"REDIS_HOST": ""}, "REDIS_HOST"),
        ({"AUTH_ISSUER": ""}, "AUTH_ISSUER"),
        ({"AUTH_JWKS_URL": "ftp://keys"}, "AUTH_JWKS_URL"),
        ({"CHAT_TABLE": ""}, "CHAT_TABLE"),
        ({"CHAT_TABLE": "no spaces allowed"}, "CHAT_TABLE"),
        ({"AWS_REGION": "mars"}, "AWS_REGION"),
        ({"PORT": "eighty"}, "PORT"),
        ({"REDIS_PORT": "70000"}, "REDIS_PORT"),
        ({"REDIS_TLS": "maybe"}, "REDIS_TLS"),
        ({"MAX_MESSAGE_BYTES": "0"}, "MAX_MESSAGE_BYTES"),
        ({"SEND_RATE_PER_SECOND": "fast"}, "SEND_RATE_PER_SECOND"),
        ({"SEND_RATE_BURST": "-1"}, "SEND_RATE_BURST"),
        ({"CORS_ORIGINS": "app.example"}, "CORS_ORIGINS"),
        ({"CHAT_PERSIST": "sometimes"}, "CHAT_PERSIST"),
        ({"CHAT_MAX_BUFFERED_BYTES": "10"}, "CHAT_MAX_BUFFERED_BYTES"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    ],
)
def test_settings_errors_name_the_variable(overrides: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({**BASE_ENV, **overrides})


def test_every_setting_is_documented() -> None:
    source = (REPO / "app_code/chat/chat_service/settings.py").read_text()
    read = set(
        re.findall(r'self\.(?:raw|required|integer|number|boolean|choice|url|origins)\("([A-Z_]+)"', source)
    )
    assert {
        "PORT",
        "CHAT_TABLE",
        "REDIS_HOST",
        "REDIS_TLS",
        "REDIS_AUTH_TOKEN",
        "SEND_RATE_PER_SECOND",
    } <= read
    docs = (REPO / "docs/service-settings.md").read_text()
    section = docs.split("## Chat service", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", section, flags=re.MULTILINE))
    assert read <= documented, read - documented


def test_table_and_region_are_optional_without_persistence() -> None:
    env = {k: v for k, v in BASE_ENV.items() if k not in ("CHAT_TABLE", "AWS_REGION")}
    assert not Settings.from_env({**env, "CHAT_PERSIST": "false"}).persist
    with pytest.raises(SettingsError, match=r"CHAT_TABLE.*AWS_REGION"):
        Settings.from_env(env)


# --- ordered persister -----------------------------------------------------------------------------


def test_persister_hands_batches_back_in_submission_order() -> None:
    """Batches run concurrently and the first one finishes last; the sends still come back in order."""
    release_first = threading.Event()
    calls: list[list[int]] = []

    def write(items: list[int]) -> None:
        calls.append(items)
        if items[0] == 0:
            release_first.wait(5)
        else:
            release_first.set()

    async def scenario() -> list[int]:
        done: list[int] = []
        pool = Threads(4, "test-write")
        persister: OrderedPersister[int] = OrderedPersister(
            write, lambda items, err: done.extend(items), pool, max_in_flight=4
        )
        for i in range(30):  # two batches: 25 + 5
            persister.submit(i)
            if i == 24:
                await asyncio.sleep(0.05)
        await asyncio.wait_for(persister.drain(), 5)
        pool.shutdown()
        return done

    done = asyncio.run(scenario())
    assert sorted(len(c) for c in calls) == [5, 25]
    assert done == list(range(30))


def test_persister_reports_failures_and_keeps_going() -> None:
    def write(items: list[int]) -> None:
        if 3 in items:
            raise RuntimeError("throttled")

    async def scenario() -> list[tuple[list[int], str | None]]:
        results: list[tuple[list[int], str | None]] = []
        pool = Threads(2, "test-write")
        persister: OrderedPersister[int] = OrderedPersister(
            write, lambda items, err: results.append((items, str(err) if err else None)), pool, 2
        )
        persister.submit(3)
        await asyncio.wait_for(persister.drain(), 5)
        persister.submit(4)
        await asyncio.wait_for(persister.drain(), 5)
        pool.shutdown()
        return results

    assert asyncio.run(scenario()) == [([3], "throttled"), ([4], None)]


def test_persister_without_storage_hands_back_at_once() -> None:
    async def scenario() -> list[int]:
        done: list[int] = []
        pool = Threads(1, "test-write")
        persister: OrderedPersister[int] = OrderedPersister(
            None, lambda items, err: done.extend(items), pool, 1
        )
        persister.submit(1)
        persister.submit(2)
        pool.shutdown()
        return done

    assert asyncio.run(scenario()) == [1, 2]


# --- schema ----------------------------------------------------------------------------------------


def test_schema_is_plain_data_for_create_table() -> None:
    kwargs = create_table_kwargs("chat-messages")
    assert kwargs["TableName"] == "chat-messages"
    assert kwargs["KeySchema"] == [
        {"AttributeName": "project_id", "KeyType": "HASH"},
        {"AttributeName": "message_key", "KeyType": "RANGE"},
    ]
    assert {d["AttributeName"]: d["AttributeType"] for d in kwargs["AttributeDefinitions"]} == {
        PARTITION_KEY: "S",
        SORT_KEY: "S",
    }
    kwargs["KeySchema"][0]["AttributeName"] = "changed"
    assert TABLE["KeySchema"][0]["AttributeName"] == "project_id"
    assert orjson.loads(orjson.dumps(TABLE)) == TABLE


@pytest.mark.parametrize("number", [0, 1, 31, 32, 1023, 1024, 123_456_789, 2**50 - 1])
def test_key_counter_encoding_matches_plain_base32(number: int) -> None:
    assert _counter(number) == _base32(number, 10)


def test_publish_packing_matches_redis_py() -> None:
    from redis.asyncio.connection import Connection

    channel, data = b"chat:project:p\xc3\xa9", b"AAAAAAAA|" + b"x" * 300 + b"\r\n|{}"
    assert pack_publish(channel, data) == b"".join(Connection().pack_command(b"PUBLISH", channel, data))


def test_the_readmes_deployment_constants_are_the_services_own() -> None:
    # app_code/chat/README.md's table of what the program reads from chat_service: each row's value
    # must be the module's, so the document cannot drift from what is deployed.
    import re
    from pathlib import Path

    import chat_service

    readme = (Path(chat_service.__file__).resolve().parents[1] / "README.md").read_text()
    rows = re.findall(r"^\| `([A-Z_]+)` \| (.+?) \| .+ \|$", readme, re.MULTILINE)
    assert {name for name, _ in rows} >= {"TABLE_ACTIONS", "LIVENESS_PATH", "READINESS_PATH", "DEFAULT_PORT"}
    for name, cell in rows:
        value = getattr(chat_service, name)
        if isinstance(value, list | tuple):
            assert re.findall(r"`([^`]+)`", cell) == list(value), name
        elif isinstance(value, str):
            assert cell == f"`{value}`", name
        else:
            assert cell == str(value), name
