"""Chat service fixtures: real `python -m chat_service` processes sharing a real Redis, DynamoDB on the
local AWS API (moto), and the stand-in identity provider.

The session pair (two instances, one Redis) serves most tests; tests that restart Redis or stop
an instance start their own with `make_instance`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from chat_service import HEALTH_CHECK_PATH, WS_PATH
from chat_service.schema import create_table_kwargs

from devstack.identity import Issuer
from devstack.servers import LOCALHOST, MotoServer, RedisServer, ServerError, free_port, wait_until

REPO = Path(__file__).resolve().parents[3]
PYTHONPATH = os.pathsep.join(str(REPO / p) for p in ("app_code/chat", "app_code/common"))


@dataclass
class ChatInstance:
    """One `python -m chat_service` process."""

    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://{LOCALHOST}:{self.port}{WS_PATH}"

    @property
    def health_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}{HEALTH_CHECK_PATH}"

    def start(self) -> ChatInstance:
        fd, log_name = tempfile.mkstemp(prefix="motion-chat-", suffix=".log")
        os.close(fd)
        self.log_path = Path(log_name)
        env = {**self.env, "PORT": str(self.port), "HOST": LOCALHOST, "PYTHONPATH": PYTHONPATH}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "chat_service"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_until(self._ready, 20, f"chat instance on port {self.port}")
        except ServerError as err:
            self.stop()
            raise ServerError(f"{err}\n{self.log()}") from None
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise ServerError(f"chat instance exited with {self.proc.returncode}:\n{self.log()}")
        return self.health()[0] == 200

    def health(self) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(self.health_url, timeout=2) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path else ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log_path is not None and self.log_path.exists():
            self.log_path.unlink()


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


def redis_env(redis: RedisServer) -> dict[str, str]:
    env = {"REDIS_HOST": LOCALHOST, "REDIS_PORT": str(redis.port)}
    if redis.password:
        env["REDIS_AUTH_TOKEN"] = redis.password
    return env


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


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
