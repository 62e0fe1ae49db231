"""Liveness and readiness of a chat instance, with its dependencies really taken away: the history
store (a local AWS API of its own, stopped and restarted) and Redis. Readiness fails while the
store is down (every send and history request needs it) and recovers by itself; liveness never
fails for a dependency (a restart would not bring it back); Redis is reported, not failed on."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from chat_service import LIVENESS_PATH
from chat_service.schema import create_table_kwargs

from devstack.servers import LOCALHOST, MotoServer, RedisServer, free_port
from tests.services.chat.chat_harness import ChatInstance, wait_for

MakeInstance = Callable[..., ChatInstance]


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def liveness(instance: ChatInstance) -> tuple[int, dict[str, Any]]:
    return get(f"http://{LOCALHOST}:{instance.port}{LIVENESS_PATH}")


def create_table(moto: MotoServer, name: str) -> None:
    env = moto.env()
    client = boto3.client(
        "dynamodb",
        endpoint_url=moto.endpoint,
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    client.create_table(**create_table_kwargs(name))


@pytest.fixture
def own_moto() -> Iterator[MotoServer]:
    with MotoServer(port=free_port()) as server:
        yield server


def test_readiness_follows_the_history_store_and_liveness_does_not(
    own_moto: MotoServer, make_instance: MakeInstance, redis_server: RedisServer
) -> None:
    table = f"chat-health-{uuid.uuid4().hex[:8]}"
    create_table(own_moto, table)
    instance = make_instance(redis_server, **own_moto.env(), CHAT_TABLE=table)
    status, body = instance.health()
    assert (status, body["status"], body["store"]) == (200, "ready", "up")

    own_moto.stop()
    started = time.monotonic()
    wait_for(lambda: instance.health()[0] == 503, 15)
    status, body = instance.health()
    assert body["status"] == "not ready" and body["store"] == "down"
    assert body["problem"].startswith("history store unavailable")
    # Seen within a probe interval and a probe timeout, not at the next restart.
    assert time.monotonic() - started < 12
    assert liveness(instance) == (200, {"status": "alive", "instance": body["instance"]})

    # The store comes back (empty, as a restarted emulator is): not ready until the table exists.
    own_moto.start()
    create_table(own_moto, table)
    wait_for(lambda: instance.health()[0] == 200, 15)
    assert instance.health()[1]["store"] == "up"
    assert instance.proc is not None and instance.proc.poll() is None


def test_redis_down_is_reported_but_the_instance_stays_ready(
    make_redis: Callable[..., RedisServer], make_instance: MakeInstance
) -> None:
    redis = make_redis()
    instance = make_instance(redis)
    redis.stop()
    wait_for(lambda: instance.health()[1].get("redis") == "down", 15)
    status, body = instance.health()
    assert (status, body["status"]) == (200, "ready")
    assert liveness(instance)[0] == 200
