"""Chat service fixtures: real `python -m chat_service` processes sharing a real Redis, DynamoDB on the
local AWS API (moto), and the stand-in identity provider.

The session pair (two instances, one Redis) serves most tests; tests that restart Redis or stop
an instance start their own with `make_instance`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import boto3
import pytest
from chat_service.schema import create_table_kwargs

from devstack.identity import Issuer
from devstack.servers import MotoServer, RedisServer
from tests.services.chat.chat_harness import ChatInstance, redis_env


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """A local AWS API of the chat tests' own: the fault tests write thousands of messages, and the
    mail tests read the shared one's whole model dump (their SES outbox), which that would bloat."""
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def chat_table(moto_server: MotoServer) -> str:
    name = f"chat-messages-{uuid.uuid4().hex[:8]}"
    client = boto3.client("dynamodb", endpoint_url=moto_server.endpoint, **_aws_credentials(moto_server))
    client.create_table(**create_table_kwargs(name))
    return name


def _aws_credentials(moto: MotoServer) -> dict[str, str]:
    env = moto.env()
    return {
        "region_name": env["AWS_REGION"],
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
    }


@pytest.fixture(scope="session")
def chat_env(moto_server: MotoServer, issuer: Issuer, jwks_url: str, chat_table: str) -> dict[str, str]:
    """Settings every test instance shares; Redis is added per instance."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "REDIS_", "CHAT_", "AUTH_"))}
    return {
        **base,
        **moto_server.env(),
        "CHAT_TABLE": chat_table,
        "AUTH_ISSUER": issuer.issuer,
        "AUTH_JWKS_URL": jwks_url,
        "AUTH_AUDIENCE": issuer.audience,
        "LOG_LEVEL": "INFO",
        # Roomy enough that only the tests about limits meet them.
        "SEND_RATE_PER_SECOND": "200",
        "SEND_RATE_BURST": "200",
    }


@pytest.fixture
def make_instance(chat_env: dict[str, str]) -> Iterator[Callable[..., ChatInstance]]:
    started: list[ChatInstance] = []

    def make(redis: RedisServer, **overrides: str) -> ChatInstance:
        instance = ChatInstance({**chat_env, **redis_env(redis), **overrides}).start()
        started.append(instance)
        return instance

    yield make
    for instance in started:
        instance.stop()


@pytest.fixture(scope="session")
def chat_pair(
    chat_env: dict[str, str], redis_server: RedisServer
) -> Iterator[tuple[ChatInstance, ChatInstance]]:
    env = {**chat_env, **redis_env(redis_server)}
    a = ChatInstance(env).start()
    try:
        b = ChatInstance(env).start()
    except BaseException:
        a.stop()
        raise
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture
def project() -> str:
    """A fresh project per test, so tests sharing the instances and the table never see each other."""
    return f"proj-{uuid.uuid4().hex[:10]}"
