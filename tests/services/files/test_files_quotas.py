"""Quotas, by performing the attack: one member firing many upload requests at once, and many members
filling one project at once. The caps must hold exactly under concurrency, answered 429 (pending
uploads, with Retry-After) and 413 (project storage) with the reason, and nothing over the cap is
recorded."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from devstack.identity import Issuer
from devstack.servers import PostgresServer
from tests.services.files.conftest import InProcessServer, bearer

UPLOADS = "/files/v1/uploads"
MAX_PENDING = 5
MAX_PROJECT_BYTES = 100_000
FILE_BYTES = 10_000
TTL = 3


@pytest.fixture(scope="module")
def quota_server(files_env: dict[str, str]) -> Iterator[InProcessServer]:
    env = {
        **files_env,
        "MAX_PENDING_UPLOADS_PER_USER": str(MAX_PENDING),
        "MAX_PROJECT_BYTES": str(MAX_PROJECT_BYTES),
        "PRESIGN_TTL_SECONDS": str(TTL),
    }
    with InProcessServer(env) as server:
        yield server


def body(project: str, size: int = FILE_BYTES) -> dict[str, Any]:
    return {
        "project_id": project,
        "file_name": "a.pdf",
        "content_type": "application/pdf",
        "size_bytes": size,
    }


async def burst(url: str, requests: list[tuple[dict[str, str], dict[str, Any]]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return list(await asyncio.gather(*(client.post(UPLOADS, json=b, headers=h) for h, b in requests)))


def rows(postgres: PostgresServer, database: str, project: str) -> list[asyncpg.Record]:
    async def fetch() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(postgres.dsn, database=database)
        try:
            return list(await conn.fetch("SELECT owner_id, status FROM files WHERE project_id = $1", project))
        finally:
            await conn.close()

    return asyncio.run(fetch())


def test_one_member_flooding_upload_requests_gets_exactly_the_pending_cap(
    quota_server: InProcessServer, issuer: Issuer, postgres: PostgresServer, files_database: str
) -> None:
    project = f"flood-{uuid.uuid4().hex[:8]}"
    headers = bearer(issuer.mint("flooder", [project]))
    answers = asyncio.run(burst(quota_server.url, [(headers, body(project, 1000))] * 40))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [201] * MAX_PENDING + [429] * (40 - MAX_PENDING)
    refused = [r for r in answers if r.status_code == 429]
    for resp in refused:
        assert resp.json()["error"] == "too_many_requests"
        assert f"{MAX_PENDING} uploads pending" in resp.json()["message"]
        assert 1 <= int(resp.headers["retry-after"]) <= TTL
    assert len(rows(postgres, files_database, project)) == MAX_PENDING
    # Another member of the same project is not held back by the flooder's cap.
    other = bearer(issuer.mint("bystander", [project]))
    assert asyncio.run(burst(quota_server.url, [(other, body(project, 1000))]))[0].status_code == 201
    # Once the forms have expired (they can post nothing any more) the slots are free again.
    time.sleep(int(refused[0].headers["retry-after"]) + 0.2)
    assert asyncio.run(burst(quota_server.url, [(headers, body(project, 1000))]))[0].status_code == 201


def test_members_filling_a_project_at_once_stop_exactly_at_its_storage_quota(
    quota_server: InProcessServer, issuer: Issuer, postgres: PostgresServer, files_database: str
) -> None:
    project = f"full-{uuid.uuid4().hex[:8]}"
    # 30 members, one request each, so only the project's quota can refuse them.
    requests = [(bearer(issuer.mint(f"member{i}", [project])), body(project)) for i in range(30)]
    answers = asyncio.run(burst(quota_server.url, requests))
    fit = MAX_PROJECT_BYTES // FILE_BYTES
    assert sorted(r.status_code for r in answers) == [201] * fit + [413] * (30 - fit)
    for resp in answers:
        if resp.status_code == 413:
            assert "storage quota of 100000 bytes" in resp.json()["message"]
    assert len(rows(postgres, files_database, project)) == fit
    # Deleting a file makes room again.
    first = next(i for i, r in enumerate(answers) if r.status_code == 201)
    file_id = answers[first].json()["file"]["id"]
    with httpx.Client(base_url=quota_server.url) as client:
        assert client.delete(f"{UPLOADS}/{file_id}", headers=requests[first][0]).status_code == 204
        again = client.post(UPLOADS, json=body(project), headers=requests[first][0])
        assert again.status_code == 201, again.text
        over = client.post(UPLOADS, json=body(project, 1), headers=requests[first][0])
        assert over.status_code == 413, over.text
