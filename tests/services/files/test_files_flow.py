"""End to end through the real entry point (`python -m files_service` in a subprocess): an upload
through the pre-signed POST with real HTTP, completion (which removes the pending tag), a download
through the pre-signed GET, the completion check that catches an object S3 would have refused, and a
database restart."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import asyncpg
import boto3
import httpx
import pytest

from devstack.identity import Issuer
from devstack.servers import LOCALHOST, MotoServer, PostgresServer
from tests.services.files.conftest import (
    ServiceProcess,
    bearer,
    create_database,
    service_env,
    wait_for,
)

PENDING_TAG_SET = [{"Key": "upload-state", "Value": "pending"}]


def request_upload(
    base: str, token: str, *, name: str, content_type: str, size: int, project: str = "proj-1"
) -> dict[str, Any]:
    resp = httpx.post(
        f"{base}/files/v1/uploads",
        json={"project_id": project, "file_name": name, "content_type": content_type, "size_bytes": size},
        headers=bearer(token),
    )
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


def post_form(upload: dict[str, Any], content: bytes, content_type: str) -> httpx.Response:
    """What the browser does with the form: fields first, the file last."""
    return httpx.post(
        upload["url"], data=upload["fields"], files={"file": ("ignored-name.bin", content, content_type)}
    )


def test_upload_complete_download(
    service: ServiceProcess, issuer: Issuer, s3: Any, files_bucket: str
) -> None:
    owner = issuer.mint("user_owner", ["proj-1"])
    content = "Quarterly numbers: ünïcödé ✓\n".encode()
    ticket = request_upload(
        service.url,
        owner,
        name="C:\\Users\\me\\..\\Q3 report (final).txt",
        content_type="text/plain",
        size=len(content),
    )
    file = ticket["file"]
    assert file["status"] == "pending"
    assert file["file_name"] == "Q3 report (final).txt"

    uploaded = post_form(ticket["upload"], content, "text/plain")
    assert uploaded.status_code in (200, 201, 204), uploaded.text
    key = ticket["upload"]["fields"]["key"]
    assert "<Key>upload-state</Key><Value>pending</Value>" in ticket["upload"]["fields"]["tagging"]
    # S3 creates the object with the form's tags. moto (5.2.5) ignores the form's `tagging` field
    # (its POST handler keeps only the key, body, acl and metadata, and checks no policy), so here
    # the tag S3 would have set is put directly.
    tags = s3.get_object_tagging(Bucket=files_bucket, Key=key)["TagSet"]
    assert tags in ([], PENDING_TAG_SET)
    if not tags:
        s3.put_object_tagging(Bucket=files_bucket, Key=key, Tagging={"TagSet": PENDING_TAG_SET})

    done = httpx.post(f"{service.url}/files/v1/uploads/{file['id']}/complete", headers=bearer(owner))
    assert done.status_code == 200, done.text
    assert done.json()["file"]["status"] == "available"
    # An available file's object (the stored copy) carries no tag the lifecycle rule expires.
    assert s3.get_object_tagging(Bucket=files_bucket, Key=key + ".stored")["TagSet"] == []
    # A retried completion (lost response) is answered the same way.
    again = httpx.post(f"{service.url}/files/v1/uploads/{file['id']}/complete", headers=bearer(owner))
    assert (
        again.status_code == 200
        and again.json()["file"]["completed_at"] == done.json()["file"]["completed_at"]
    )

    member = issuer.mint("user_member", ["proj-1"])
    listed = httpx.get(f"{service.url}/files/v1/projects/proj-1/files", headers=bearer(member))
    assert listed.status_code == 200
    assert file["id"] in [f["id"] for f in listed.json()["files"]]

    ticket_get = httpx.get(f"{service.url}/files/v1/files/{file['id']}/download", headers=bearer(member))
    assert ticket_get.status_code == 200, ticket_get.text
    assert ticket_get.headers["cache-control"] == "no-store"
    got = httpx.get(ticket_get.json()["url"])
    assert got.status_code == 200
    assert got.content == content
    assert got.headers["content-type"] == "text/plain"
    assert got.headers["content-disposition"] == (
        "attachment; filename=\"Q3 report (final).txt\"; filename*=UTF-8''Q3%20report%20%28final%29.txt"
    )

    # Deleting removes the object and the metadata.
    deleted = httpx.delete(f"{service.url}/files/v1/uploads/{file['id']}", headers=bearer(owner))
    assert deleted.status_code == 204
    for gone in (key, key + ".stored"):
        with pytest.raises(s3.exceptions.ClientError, match="404"):
            s3.head_object(Bucket=files_bucket, Key=gone)
    gone = httpx.get(f"{service.url}/files/v1/files/{file['id']}/download", headers=bearer(owner))
    assert gone.status_code == 404


def test_reposting_the_upload_form_after_completion_changes_nothing_downloads_return(
    service: ServiceProcess, issuer: Issuer, s3: Any, files_bucket: str
) -> None:
    """The attack: complete an upload, then post its still-valid form again with other bytes of the
    same size and type (which S3 would accept: the policy pins key, type and size, not content)."""
    owner = issuer.mint("user_swapper", ["proj-1"])
    original, swapped = b"the approved contract\n", b"the tampered contract\n"
    assert len(original) == len(swapped)
    ticket = request_upload(service.url, owner, name="c.txt", content_type="text/plain", size=len(original))
    file_id, upload = ticket["file"]["id"], ticket["upload"]
    assert post_form(upload, original, "text/plain").status_code in (200, 201, 204)
    done = httpx.post(f"{service.url}/files/v1/uploads/{file_id}/complete", headers=bearer(owner))
    assert done.status_code == 200, done.text

    # moto checks no POST policy, so what makes the stored copy unreachable for a form is asserted
    # on the policy itself: it pins the upload key exactly, and the stored key is another key.
    policy = json.loads(base64.b64decode(upload["fields"]["policy"]))
    key_conditions = [
        c for c in policy["conditions"] if "key" in c or (isinstance(c, list) and c[1] == "$key")
    ]
    assert key_conditions == [{"key": upload["fields"]["key"]}]

    assert post_form(upload, swapped, "text/plain").status_code in (200, 201, 204)
    # The owner (or an attacker holding the form) even completes again: still the original.
    again = httpx.post(f"{service.url}/files/v1/uploads/{file_id}/complete", headers=bearer(owner))
    assert again.status_code == 200, again.text
    assert post_form(upload, swapped, "text/plain").status_code in (200, 201, 204)
    for reader in (owner, issuer.mint("user_reader", ["proj-1"])):
        url = httpx.get(f"{service.url}/files/v1/files/{file_id}/download", headers=bearer(reader))
        assert url.status_code == 200, url.text
        assert httpx.get(url.json()["url"]).content == original


@pytest.mark.parametrize(
    ("declared_size", "actual", "actual_type", "reason"),
    [
        (10, b"0123456789ABCDEF", "text/plain", "size is 16 bytes, declared 10"),
        (10, b"01234", "text/plain", "size is 5 bytes, declared 10"),
        (10, b"0123456789", "text/html", "content type is 'text/html', declared 'text/plain'"),
    ],
)
def test_completion_rejects_an_object_that_differs_from_the_declaration(
    service: ServiceProcess,
    issuer: Issuer,
    s3: Any,
    files_bucket: str,
    declared_size: int,
    actual: bytes,
    actual_type: str,
    reason: str,
) -> None:
    """Real S3 refuses such a POST by its policy; the local API does not, so completion must."""
    owner = issuer.mint("user_owner", ["proj-1"])
    ticket = request_upload(
        service.url, owner, name="notes.txt", content_type="text/plain", size=declared_size
    )
    key = ticket["upload"]["fields"]["key"]
    s3.put_object(Bucket=files_bucket, Key=key, Body=actual, ContentType=actual_type)

    file_id = ticket["file"]["id"]
    done = httpx.post(f"{service.url}/files/v1/uploads/{file_id}/complete", headers=bearer(owner))
    assert done.status_code == 409
    assert reason in done.json()["message"]
    # The wrong object is gone and the file stays pending, not downloadable.
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket=files_bucket, Key=key)
    pending = httpx.get(f"{service.url}/files/v1/files/{file_id}/download", headers=bearer(owner))
    assert pending.status_code == 409

    # The same form can still be used for the right object.
    assert post_form(ticket["upload"], b"x" * declared_size, "text/plain").status_code < 300
    done = httpx.post(f"{service.url}/files/v1/uploads/{file_id}/complete", headers=bearer(owner))
    assert done.status_code == 200, done.text


def test_completion_before_the_upload_is_a_conflict(service: ServiceProcess, issuer: Issuer) -> None:
    owner = issuer.mint("user_owner", ["proj-1"])
    ticket = request_upload(service.url, owner, name="a.pdf", content_type="application/pdf", size=3)
    done = httpx.post(
        f"{service.url}/files/v1/uploads/{ticket['file']['id']}/complete", headers=bearer(owner)
    )
    assert done.status_code == 409
    assert "not been uploaded" in done.json()["message"]


def _s3_kwargs(moto: MotoServer) -> dict[str, str]:
    env = moto.env()
    return {
        "endpoint_url": env["AWS_ENDPOINT_URL"],
        "region_name": env["AWS_REGION"],
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
    }


def test_the_service_survives_a_database_restart(
    make_postgres: Callable[[], PostgresServer],
    moto_server: MotoServer,
    files_bucket: str,
    issuer: Issuer,
    jwks_url: str,
    start_service: Callable[[dict[str, str]], ServiceProcess],
) -> None:
    server = make_postgres()
    database = create_database(server)
    env = service_env(
        server=server,
        database=database,
        moto=moto_server,
        bucket=files_bucket,
        issuer=issuer,
        jwks_url=jwks_url,
    )
    service = start_service(env)
    owner = issuer.mint("user_owner", ["proj-1"])
    ticket = request_upload(service.url, owner, name="r.txt", content_type="text/plain", size=4)
    assert post_form(ticket["upload"], b"data", "text/plain").status_code < 300
    file_id = ticket["file"]["id"]
    assert (
        httpx.post(f"{service.url}/files/v1/uploads/{file_id}/complete", headers=bearer(owner)).status_code
        == 200
    )
    download = f"{service.url}/files/v1/files/{file_id}/download"

    # Clients keep requesting download URLs throughout; none may see a 500 or a dropped connection.
    statuses: Counter[int] = Counter()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(headers=bearer(owner), timeout=10) as http:
            while not stop.is_set():
                statuses[http.get(download).status_code] += 1
                time.sleep(0.01)

    # Writers too: upload forms requested, filled in S3 and completed across the restart. Each
    # service answer is 2xx, or 503 with Retry-After (then the writer retries, as a client would).
    writes: Counter[int] = Counter()
    without_retry_after: list[str] = []
    accepted: list[str] = []  # file ids the service answered 201 for
    completed: list[str] = []

    def call(http: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
        while True:
            resp = http.request(method, url, **kwargs)
            writes[resp.status_code] += 1
            if resp.status_code != 503:
                return resp
            if "retry-after" not in resp.headers:
                without_retry_after.append(f"{method} {url}")
            time.sleep(0.05)

    def write() -> None:
        with httpx.Client(headers=bearer(owner), timeout=10) as http:
            while not stop.is_set():
                resp = call(
                    http,
                    "POST",
                    f"{service.url}/files/v1/uploads",
                    json={
                        "project_id": "proj-1",
                        "file_name": "w.txt",
                        "content_type": "text/plain",
                        "size_bytes": 5,
                    },
                )
                if resp.status_code != 201:
                    return
                ticket = resp.json()
                accepted.append(ticket["file"]["id"])
                assert post_form(ticket["upload"], b"write", "text/plain").status_code < 300
                done = call(http, "POST", f"{service.url}/files/v1/uploads/{ticket['file']['id']}/complete")
                if done.status_code == 200:
                    completed.append(ticket["file"]["id"])

    worker = threading.Thread(target=load)
    writer = threading.Thread(target=write)
    worker.start()
    writer.start()
    try:
        time.sleep(0.3)
        server.stop()
        # While the database is down: a clear 503 with Retry-After, and the health check says so.
        down = httpx.get(download, headers=bearer(owner))
        assert down.status_code == 503 and down.headers["retry-after"] == "1"
        not_ready = httpx.get(f"{service.url}/files/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["checks"]["database"].startswith("PostgreSQL unavailable")
        # Not ready, but alive: a restart would not bring PostgreSQL back, so ECS must not do one.
        assert httpx.get(f"{service.url}/files/livez").status_code == 200
        server.start()
        # The pooled connections died with the old server; the very next request must succeed.
        assert httpx.get(download, headers=bearer(owner)).status_code == 200
        time.sleep(0.3)
    finally:
        stop.set()
        worker.join()
        writer.join()
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[200] > 0
    assert set(writes) <= {200, 201, 503}, writes
    assert writes[503] > 0  # the writes really met the outage (and were answered, not dropped)
    assert without_retry_after == []
    assert accepted and completed == accepted  # every accepted upload was completed, once

    async def rows() -> list[Any]:
        conn = await asyncpg.connect(
            host=LOCALHOST,
            port=server.port,
            user=server.user,
            password=server.password,
            database=database,
            ssl=False,
        )
        try:
            return list(
                await conn.fetch("SELECT id::text, object_key, stored_key, status, size_bytes FROM files")
            )
        finally:
            await conn.close()

    # No row lost or doubled by the restart: one row per accepted upload (plus the first file),
    # each available with its stored object (the completion's copy, migration 0004) in S3 at the
    # size the row counts toward the project's bytes.
    found = asyncio.run(rows())
    ids = [row["id"] for row in found]
    assert len(ids) == len(set(ids)) and set(ids) == {file_id, *accepted}
    s3 = boto3.client("s3", **_s3_kwargs(moto_server))
    for row in found:
        assert row["status"] == "available", row
        assert (
            s3.head_object(Bucket=files_bucket, Key=row["stored_key"] or row["object_key"])["ContentLength"]
            == row["size_bytes"]
        )

    # A restart the service does not see coming, between two requests.
    server.restart()
    assert httpx.get(download, headers=bearer(owner)).status_code == 200
    wait_for(lambda: httpx.get(f"{service.url}/files/readyz").status_code == 200, 5, "healthy again")
    assert service.proc is not None and service.proc.poll() is None, "the service process itself kept running"
