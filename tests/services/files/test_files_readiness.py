"""Readiness against S3 faults: the AWS API going away and the bucket being deleted. Readiness
(503, with the reason) takes the task out of the target group; liveness stays 200, since a restart
would not bring S3 back; both recover to 200 on their own once S3 is back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devstack.identity import Issuer
from devstack.servers import MotoServer, PostgresServer
from tests.services.files.conftest import InProcessServer, s3_client, service_env


@pytest.fixture
def own_moto() -> Iterator[MotoServer]:
    # A server of this test's own, so that stopping it takes S3 away from nobody else.
    with MotoServer() as server:
        yield server


def _health(app: InProcessServer) -> tuple[int, dict[str, Any], int]:
    ready = httpx.get(f"{app.url}/files/readyz", timeout=30)
    live = httpx.get(f"{app.url}/files/livez", timeout=30)
    return ready.status_code, ready.json(), live.status_code


def _app(
    postgres: PostgresServer,
    files_database: str,
    moto: MotoServer,
    bucket: str,
    issuer: Issuer,
    jwks_url: str,
) -> InProcessServer:
    env = service_env(
        server=postgres,
        database=files_database,
        moto=moto,
        bucket=bucket,
        issuer=issuer,
        jwks_url=jwks_url,
        role="upload",
    )
    return InProcessServer(env)


def test_readiness_fails_while_the_aws_api_is_down_and_recovers(
    own_moto: MotoServer, postgres: PostgresServer, files_database: str, issuer: Issuer, jwks_url: str
) -> None:
    bucket = "motion-files-readiness"
    s3_client(own_moto).create_bucket(Bucket=bucket)
    with _app(postgres, files_database, own_moto, bucket, issuer, jwks_url) as app:
        assert _health(app)[0] == 200
        own_moto.stop()  # the AWS API is gone: connections to its port are refused
        status, body, live = _health(app)
        assert (status, live) == (503, 200)
        assert body["status"] == "not ready" and body["checks"]["database"] == "ok"
        assert body["checks"]["storage"].startswith("S3 unreachable"), body
        own_moto.start()  # back on the same port, empty: the bucket is created again
        s3_client(own_moto).create_bucket(Bucket=bucket)
        status, body, live = _health(app)
        assert (status, live) == (200, 200) and body["checks"] == {"database": "ok", "storage": "ok"}


def test_readiness_fails_while_the_bucket_is_gone_and_recovers(
    own_moto: MotoServer, postgres: PostgresServer, files_database: str, issuer: Issuer, jwks_url: str
) -> None:
    bucket = "motion-files-deleted"
    s3 = s3_client(own_moto)
    s3.create_bucket(Bucket=bucket)
    with _app(postgres, files_database, own_moto, bucket, issuer, jwks_url) as app:
        assert _health(app)[0] == 200
        s3.delete_bucket(Bucket=bucket)
        status, body, live = _health(app)
        assert (status, live) == (503, 200)
        assert body["checks"]["storage"] == f"bucket {bucket!r} does not exist", body
        s3.create_bucket(Bucket=bucket)
        assert _health(app)[:1] == (200,)
