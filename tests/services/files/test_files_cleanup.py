"""Uploads that were requested but never completed are swept, with their objects."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from files_service.cleanup import sweep_abandoned
from files_service.db import Database
from files_service.storage import ObjectStore

from devstack.identity import Issuer
from tests.services.files.conftest import InProcessServer, bearer


def test_abandoned_uploads_are_removed_and_nothing_else(
    client: httpx.Client,
    app_server: InProcessServer,
    issuer: Issuer,
    s3: Any,
    files_bucket: str,
    aws_env: dict[str, str],
) -> None:
    owner = bearer(issuer.mint("sweeper", ["alpha"]))

    def upload(name: str, put: bool) -> dict[str, Any]:
        resp = client.post(
            "/files/v1/uploads",
            json={"project_id": "alpha", "file_name": name, "content_type": "text/plain", "size_bytes": 3},
            headers=owner,
        )
        ticket: dict[str, Any] = resp.json()
        if put:
            s3.put_object(
                Bucket=files_bucket,
                Key=ticket["upload"]["fields"]["key"],
                Body=b"abc",
                ContentType="text/plain",
            )
        return ticket

    abandoned, fresh, done = upload("old.txt", True), upload("new.txt", False), upload("done.txt", True)
    assert client.post(f"/files/v1/uploads/{done['file']['id']}/complete", headers=owner).status_code == 200

    settings = app_server.settings

    async def run() -> int:
        db = await Database.connect(settings.database)
        try:
            await db.pool.execute(
                "UPDATE files SET created_at = now() - interval '2 days' WHERE id = ANY($1::uuid[])",
                [abandoned["file"]["id"], done["file"]["id"]],
            )
            storage = ObjectStore(settings.bucket, settings.region, settings.s3_endpoint_url)
            return await sweep_abandoned(db, storage)
        finally:
            await db.close()

    assert asyncio.run(run()) >= 1
    # The abandoned upload is gone, row and object, and can no longer be completed.
    key = abandoned["upload"]["fields"]["key"]
    assert "Contents" not in s3.list_objects_v2(Bucket=files_bucket, Prefix=key)
    late = client.post(f"/files/v1/uploads/{abandoned['file']['id']}/complete", headers=owner)
    assert late.status_code == 404
    # A recent pending upload and an old completed file are untouched.
    still = client.post(f"/files/v1/uploads/{fresh['file']['id']}/complete", headers=owner)
    assert still.status_code == 409
    assert client.get(f"/files/v1/files/{done['file']['id']}/download", headers=owner).status_code == 200
