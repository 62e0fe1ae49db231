"""Fixtures shared by every test: real local servers and a stand-in identity provider.

Servers are session-scoped; a test that restarts one (to prove the service survives it) starts
its own with the factory fixtures instead, so other tests never see the outage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from devstack.identity import Issuer, JwksServer
from devstack.servers import MotoServer, PostgresServer, RedisServer


@pytest.fixture(scope="session")
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture(scope="session")
def jwks_url(issuer: Issuer) -> Iterator[str]:
    with JwksServer(issuer) as server:
        yield server.url


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture
def aws_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point boto3 in this process at the local AWS API."""
    env = moto_server.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def make_postgres() -> Iterator[Callable[[], PostgresServer]]:
    started: list[PostgresServer] = []

    def make() -> PostgresServer:
        server = PostgresServer().start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.cleanup()


@pytest.fixture
def make_redis() -> Iterator[Callable[..., RedisServer]]:
    started: list[RedisServer] = []

    def make(**kwargs: object) -> RedisServer:
        server = RedisServer(**kwargs).start()  # type: ignore[arg-type]
        started.append(server)
        return server

    yield make
    for server in started:
        server.cleanup()
