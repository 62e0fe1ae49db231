"""Fixtures for the files service: its own database on the shared PostgreSQL server, a bucket in
the local AWS API, settings, an in-process app, and the real entry point as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import boto3
import httpx
import pytest
import uvicorn
from files_service.app import create_app
from files_service.migrate import run as migrate_step
from files_service.settings import DatabaseSettings, Settings

from components.app_code import SERVICE_ROOTS, pythonpath
from devstack.identity import Issuer
from devstack.servers import LOCALHOST, MotoServer, PostgresServer, free_port, wait_until

REPO = Path(__file__).resolve().parents[3]
SERVICE_PATHS = SERVICE_ROOTS["files"]
MAX_UPLOAD_BYTES = 64 * 1024
ALLOWED_CONTENT_TYPES = "text/plain,application/pdf,image/*"
PRESIGN_TTL_SECONDS = 120


def master_settings(server: PostgresServer, database: str) -> DatabaseSettings:
    """The migration step's settings: the master credential, the server verified with the local CA."""
    assert server.tls is not None
    return DatabaseSettings(
        host=LOCALHOST,
        port=server.port,
        name=database,
        user=server.user,
        password=server.password,
        sslmode="verify-full",
        sslrootcert=str(server.tls.ca_file),
    )


def create_database(server: PostgresServer, *, migrated: bool = True) -> str:
    """A fresh database on `server`, so these tests own their schema, migrated by the migration step
    as a release would be (unless `migrated` is False); returns its name."""
    name = f"files_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        conn = await asyncpg.connect(server.dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        if migrated:
            await migrate_step(master_settings(server, name))

    asyncio.run(create())
    return name


def make_bucket(moto: MotoServer) -> str:
    env = moto.env()
    s3 = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    name = f"motion-files-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    return name


def service_env(
    *,
    server: PostgresServer,
    database: str,
    moto: MotoServer,
    bucket: str,
    issuer: Issuer,
    jwks_url: str,
    port: int = 0,
    role: str = "all",
) -> dict[str, str]:
    """The environment contract, exactly as the task definition sets it (plus the local AWS API)."""
    return {
        **moto.env(),
        "PORT": str(port or free_port()),
        "HOST": LOCALHOST,
        "FILES_ROLE": role,
        "FILES_BUCKET": bucket,
        "DATABASE_HOST": LOCALHOST,
        "DATABASE_PORT": str(server.port),
        "DATABASE_NAME": database,
        "DATABASE_USER": server.user,
        "DATABASE_PASSWORD": server.password,
        "DATABASE_SSLMODE": "disable",
        "AUTH_ISSUER": issuer.issuer,
        "AUTH_JWKS_URL": jwks_url,
        "AUTH_AUDIENCE": issuer.audience,
        "CORS_ORIGINS": "http://localhost:5173",
        "MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
        "ALLOWED_CONTENT_TYPES": ALLOWED_CONTENT_TYPES,
        "PRESIGN_TTL_SECONDS": str(PRESIGN_TTL_SECONDS),
        "LOG_LEVEL": "WARNING",
    }


@pytest.fixture(scope="session")
def files_bucket(moto_server: MotoServer) -> str:
    return make_bucket(moto_server)


@pytest.fixture(scope="session")
def files_database(postgres: PostgresServer) -> str:
    return create_database(postgres)


@pytest.fixture(scope="session")
def files_env(
    postgres: PostgresServer,
    files_database: str,
    moto_server: MotoServer,
    files_bucket: str,
    issuer: Issuer,
    jwks_url: str,
) -> dict[str, str]:
    return service_env(
        server=postgres,
        database=files_database,
        moto=moto_server,
        bucket=files_bucket,
        issuer=issuer,
        jwks_url=jwks_url,
    )


@pytest.fixture(scope="session")
def s3(moto_server: MotoServer) -> Any:
    return s3_client(moto_server)


def s3_client(moto: MotoServer) -> Any:
    """An S3 client of this moto server."""
    env = moto.env()
    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


class InProcessServer:
    """The app under uvicorn in a thread of the test process: real HTTP, and a test can reach into
    the app (e.g. its settings), without a process start per module."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.settings = Settings.from_env(env)
        self.port = free_port()
        self.url = f"http://{LOCALHOST}:{self.port}"
        config = uvicorn.Config(
            create_app(self.settings), host=LOCALHOST, port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> InProcessServer:
        # botocore resolves credentials and endpoints from the process environment during start-up;
        # restore it afterwards so that no other test module sees this app's settings.
        with pytest.MonkeyPatch.context() as mp:
            for key, value in self.env.items():
                mp.setenv(key, value)
            self.thread.start()
            wait_until(lambda: self.server.started or not self.thread.is_alive(), 30, "in-process files app")
        if not self.server.started:
            raise RuntimeError("in-process files app failed to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture(scope="session")
def app_server(files_env: dict[str, str]) -> Iterator[InProcessServer]:
    with InProcessServer(files_env) as server:
        yield server


@pytest.fixture(scope="session")
def client(app_server: InProcessServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=app_server.url, timeout=10) as http:
        yield http


class ServiceProcess:
    """`python -m files_service`, the container's command, on a free local port."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.port = int(env["PORT"])
        self.url = f"http://{LOCALHOST}:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout: float = 30.0) -> ServiceProcess:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DATABASE_", "AUTH_", "FILES_"))
        }
        env.update(self.env)
        env["PYTHONPATH"] = pythonpath("files")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "files_service"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_until(self._healthy, ready_timeout, f"files service on port {self.port}")
        except Exception:
            self.stop()
            raise RuntimeError(f"files service did not start; log:\n{self.log()}") from None
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"files service exited with {self.proc.returncode}:\n{self.log()}")
        return httpx.get(f"{self.url}/files/readyz", timeout=1).status_code == 200

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], ServiceProcess]]:
    started: list[ServiceProcess] = []

    def start(env: dict[str, str]) -> ServiceProcess:
        service = ServiceProcess(env, tmp_path / f"files-{len(started)}.log").start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture(scope="module")
def service(files_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One shared subprocess for the module's end-to-end tests."""
    proc = ServiceProcess(files_env, tmp_path_factory.mktemp("files-service") / "files.log").start()
    try:
        yield proc
    finally:
        proc.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if check():
                return
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout}s")
