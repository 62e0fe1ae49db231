"""The files service's authorization matrix: every route of `files_service.routes.ROUTES` for every
kind of caller, with the status each must get, from this one table. A route without a row fails
`test_every_route_has_a_row`, so no route ships without its permissions stated and tested.

Each cell runs against a fresh available file in its own project, owned by `owner`, shared with
`sharee` (unexpired) and with `expired` (expired, set in the database since the API refuses a past
time). "former" is the owner after leaving the project: a valid token without the project, which
is all a removal from a project changes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from files_service.routes import ROUTES

from devstack.identity import Issuer
from devstack.servers import PostgresServer
from tests.services.files.conftest import bearer

PRINCIPALS = ("owner", "member", "former", "sharee", "expired", "outsider", "no_token", "forged")
ALLOW_READ = {"owner": 200, "member": 200, "sharee": 200}
MEMBERS = {"owner": 200, "member": 200}


def row(allowed: dict[str, int]) -> dict[str, int]:
    """Everyone not listed is refused: 403 with a valid token, 401 without one."""
    return {p: allowed.get(p, 401 if p in ("no_token", "forged") else 403) for p in PRINCIPALS}


# operation -> principal -> status
MATRIX: dict[str, dict[str, int]] = {
    "download_file": row(ALLOW_READ),
    "download_file_post": row(ALLOW_READ),
    "get_file": row(ALLOW_READ),
    "list_project_files": row(MEMBERS),
    "list_shares": row(MEMBERS),
    "share_file": row({"owner": 200}),
    "revoke_share": row({"owner": 204, "member": 204}),
    "request_upload": row({"owner": 201, "member": 201}),
    "complete_upload": row({"owner": 200}),
    "delete_file": row({"owner": 204}),
}


def test_every_route_has_a_row() -> None:
    operations = [r.operation for r in ROUTES]
    assert sorted(MATRIX) == sorted(operations), "each route in files_service/routes.py needs a row here"
    for operation, statuses in MATRIX.items():
        assert set(statuses) == set(PRINCIPALS), operation


@dataclass(frozen=True)
class Fixture:
    file_id: str
    project: str
    key: str


@pytest.fixture(scope="module")
def tokens(issuer: Issuer) -> Callable[[str, str], dict[str, str]]:
    forger = Issuer(issuer=issuer.issuer, kid=issuer.kid)  # same issuer and key id, another key

    def for_(principal: str, project: str) -> dict[str, str]:
        if principal == "no_token":
            return {}
        if principal == "forged":
            return bearer(forger.mint(f"owner-{project}", [project]))
        projects = {
            "owner": [project],
            "member": [project, "elsewhere"],
            "former": ["elsewhere"],
            "outsider": ["elsewhere"],
        }.get(principal, [])
        # Users of their own per cell (the project is unique), so that the upload requests of the
        # matrix never meet the pending-uploads quota; "former" is the owner who left.
        user = f"{'owner' if principal == 'former' else principal}-{project}"
        return bearer(issuer.mint(user, projects))

    return for_


@pytest.fixture
def fresh_file(
    client: httpx.Client,
    tokens: Callable[[str, str], dict[str, str]],
    s3: Any,
    files_bucket: str,
    postgres: PostgresServer,
    files_database: str,
) -> Fixture:
    project = f"authz-{uuid.uuid4().hex[:10]}"
    owner = tokens("owner", project)
    body = {"project_id": project, "file_name": "m.pdf", "content_type": "application/pdf", "size_bytes": 5}
    ticket = client.post("/files/v1/uploads", json=body, headers=owner)
    assert ticket.status_code == 201, ticket.text
    file_id, key = ticket.json()["file"]["id"], ticket.json()["upload"]["fields"]["key"]
    s3.put_object(Bucket=files_bucket, Key=key, Body=b"%PDF!", ContentType="application/pdf")
    assert client.post(f"/files/v1/uploads/{file_id}/complete", headers=owner).status_code == 200
    until = {"expires_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()}
    for principal in ("sharee", "expired"):
        user = f"{principal}-{project}"
        assert (
            client.put(f"/files/v1/files/{file_id}/shares/{user}", json=until, headers=owner).status_code
            == 200
        )

    async def expire() -> None:
        conn = await asyncpg.connect(postgres.dsn, database=files_database)
        try:
            await conn.execute(
                "UPDATE file_shares SET expires_at = now() - interval '1 minute' WHERE file_id = $1 AND user_id = $2",
                uuid.UUID(file_id),
                f"expired-{project}",
            )
        finally:
            await conn.close()

    asyncio.run(expire())
    return Fixture(file_id=file_id, project=project, key=key)


def request_for(operation: str, fixture: Fixture) -> tuple[str, str, dict[str, Any] | None]:
    (spec,) = [r for r in ROUTES if r.operation == operation]
    # user_id: the sharee's share (revoking it, or re-granting it, must be refused to the sharee too).
    path = spec.path.format(
        file_id=fixture.file_id, project_id=fixture.project, user_id=f"sharee-{fixture.project}"
    )
    body: dict[str, Any] | None = None
    if operation == "share_file":
        body = {"expires_at": (datetime.now(UTC) + timedelta(days=2)).isoformat()}
    elif operation == "request_upload":
        body = {
            "project_id": fixture.project,
            "file_name": "n.pdf",
            "content_type": "application/pdf",
            "size_bytes": 5,
        }
    return spec.method, path, body


@pytest.mark.parametrize("principal", PRINCIPALS)
@pytest.mark.parametrize("operation", sorted(MATRIX))
def test_authorization_matrix(
    client: httpx.Client,
    tokens: Callable[[str, str], dict[str, str]],
    fresh_file: Fixture,
    operation: str,
    principal: str,
) -> None:
    method, path, body = request_for(operation, fresh_file)
    resp = client.request(method, path, json=body, headers=tokens(principal, fresh_file.project))
    expected = MATRIX[operation][principal]
    assert resp.status_code == expected, f"{principal} {method} {path}: {resp.text}"
    if expected >= 400:
        assert set(resp.json()) == {"error", "message"}
        # A refusal changed nothing: the file is still there, its share still granted.
        owner = tokens("owner", fresh_file.project)
        assert client.get(f"/files/v1/files/{fresh_file.file_id}", headers=owner).status_code == 200
        shares = client.get(f"/files/v1/files/{fresh_file.file_id}/shares", headers=owner).json()["shares"]
        assert {s["user_id"] for s in shares} == {f"{p}-{fresh_file.project}" for p in ("sharee", "expired")}
