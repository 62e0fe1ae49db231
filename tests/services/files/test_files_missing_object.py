"""Completing an upload whose object is not there, against both answers S3 gives for it: 404 (moto
as it is, and S3 when the task role holds s3:ListBucket) and 403 with no body (S3 when it does not:
the policy proxy in front of moto answers as S3 does, see s3_policy_proxy.py). Either way the client
gets a 409 with the reason, the row stays pending, and a later upload completes. A 403 on an object
that exists is a permission fault of the deployment: a logged 500 that changes nothing. A missing
bucket is not a missing object: a 503, logged as an error, the row left pending."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from files_service.storage import ObjectStore, StorageForbidden

from devstack.identity import Issuer
from devstack.servers import LOCALHOST, MotoServer, PostgresServer
from tests.services.files.conftest import InProcessServer, bearer
from tests.services.files.s3_policy_proxy import Grants, PolicyProxy

NOT_UPLOADED = "the object has not been uploaded yet"


@pytest.fixture(scope="module")
def policy_proxy(moto_server: MotoServer) -> Iterator[PolicyProxy]:
    with PolicyProxy(moto_server.endpoint) as proxy:
        yield proxy


@pytest.fixture
def proxy(policy_proxy: PolicyProxy) -> Iterator[PolicyProxy]:
    """The proxy with the grants a test sets, and a fresh record of what it answered."""
    policy_proxy.reset()
    yield policy_proxy
    policy_proxy.reset()


@pytest.fixture(scope="module")
def proxied_app(files_env: dict[str, str], policy_proxy: PolicyProxy) -> Iterator[InProcessServer]:
    """The service on the shared database and bucket, talking to S3 through the policy proxy."""
    with InProcessServer(policy_proxy.env(files_env)) as server:
        yield server


def file_rows(postgres: PostgresServer, database: str, file_id: str) -> list[dict[str, Any]]:
    async def fetch() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(
            host=LOCALHOST,
            port=postgres.port,
            user=postgres.user,
            password=postgres.password,
            database=database,
        )
        try:
            rows = await conn.fetch("SELECT * FROM files WHERE id = $1", uuid.UUID(file_id))
        finally:
            await conn.close()
        return [dict(r) for r in rows]

    return asyncio.run(fetch())


def request_upload(base: str, token: str, size: int) -> dict[str, Any]:
    resp = httpx.post(
        f"{base}/files/v1/uploads",
        json={
            "project_id": "proj-1",
            "file_name": "notes.txt",
            "content_type": "text/plain",
            "size_bytes": size,
        },
        headers=bearer(token),
    )
    assert resp.status_code == 201, resp.text
    ticket: dict[str, Any] = resp.json()
    return ticket


def post_form(upload: dict[str, Any], content: bytes) -> None:
    """What the browser does, through the same S3 endpoint the service signed the form for."""
    resp = httpx.post(upload["url"], data=upload["fields"], files={"file": ("n.txt", content, "text/plain")})
    assert resp.status_code < 300, resp.text


def complete(base: str, token: str, file_id: str) -> httpx.Response:
    return httpx.post(f"{base}/files/v1/uploads/{file_id}/complete", headers=bearer(token))


@pytest.mark.parametrize("s3_answer", ["404", "403"])
def test_completing_before_the_upload_is_a_409_whichever_way_s3_says_missing(
    s3_answer: str,
    app_server: InProcessServer,
    proxied_app: InProcessServer,
    proxy: PolicyProxy,
    issuer: Issuer,
    postgres: PostgresServer,
    files_database: str,
    s3: Any,
    files_bucket: str,
) -> None:
    # 404: moto as it is, which is what S3 answers a role holding s3:ListBucket on the bucket.
    # 403: what S3 answers a role without it (e.g. one limited by an s3:prefix condition).
    base = app_server.url if s3_answer == "404" else proxied_app.url
    proxy.grants = Grants.prefix_condition()
    owner = issuer.mint("user_owner", ["proj-1"])
    ticket = request_upload(base, owner, size=5)
    file_id, key = ticket["file"]["id"], ticket["upload"]["fields"]["key"]
    (before,) = file_rows(postgres, files_database, file_id)

    early = complete(base, owner, file_id)
    assert early.status_code == 409, early.text
    assert early.json()["error"] == "conflict"
    assert early.json()["message"].startswith(NOT_UPLOADED)
    if s3_answer == "403":
        # The service really saw S3's body-less 403, and asked the listing that told it "missing".
        (head,) = proxy.answered("HEAD", key)
        assert (head.status, head.body_bytes) == (403, 0)
        assert [a.status for a in proxy.listed(key)] == [200]
    # Nothing changed in PostgreSQL: the same pending row, declaration and all.
    assert file_rows(postgres, files_database, file_id) == [before]
    assert before["status"] == "pending" and before["completed_at"] is None
    assert before["object_key"] == key

    # The client uploads with the same form and completes: the file becomes available.
    post_form(ticket["upload"], b"hello")
    done = complete(base, owner, file_id)
    assert done.status_code == 200, done.text
    assert done.json()["file"]["status"] == "available"
    (after,) = file_rows(postgres, files_database, file_id)
    assert after["status"] == "available" and after["completed_at"] is not None
    assert {k: after[k] for k in ("object_key", "size_bytes", "content_type", "owner_id")} == {
        k: before[k] for k in ("object_key", "size_bytes", "content_type", "owner_id")
    }
    assert s3.get_object(Bucket=files_bucket, Key=key + ".stored")["Body"].read() == b"hello"


def test_a_403_on_an_object_that_exists_is_a_logged_server_error_that_changes_nothing(
    proxied_app: InProcessServer,
    proxy: PolicyProxy,
    issuer: Issuer,
    postgres: PostgresServer,
    files_database: str,
    s3: Any,
    files_bucket: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    owner = issuer.mint("user_owner", ["proj-1"])
    ticket = request_upload(proxied_app.url, owner, size=5)
    file_id, key = ticket["file"]["id"], ticket["upload"]["fields"]["key"]
    post_form(ticket["upload"], b"hello")
    (before,) = file_rows(postgres, files_database, file_id)

    # The role lost s3:GetObject: S3 refuses the HEAD, although the object is there.
    proxy.grants = Grants(read_objects=False)
    with caplog.at_level(logging.ERROR, logger="files_service"):
        refused = complete(proxied_app.url, owner, file_id)
    assert refused.status_code == 500, refused.text
    assert refused.json()["error"] == "internal_error"
    assert "refused" in refused.json()["message"]
    logged = [r for r in caplog.records if r.levelno == logging.ERROR and key in r.getMessage()]
    assert logged, caplog.text
    # The accepted upload is kept: the row still pending, the object untouched.
    assert file_rows(postgres, files_database, file_id) == [before]
    assert s3.get_object(Bucket=files_bucket, Key=key)["Body"].read() == b"hello"

    # Once the permission is back, the same completion succeeds.
    proxy.grants = Grants()
    done = complete(proxied_app.url, owner, file_id)
    assert done.status_code == 200, done.text
    assert file_rows(postgres, files_database, file_id)[0]["status"] == "available"


def test_a_403_that_no_listing_can_explain_is_a_server_error(
    proxied_app: InProcessServer,
    proxy: PolicyProxy,
    issuer: Issuer,
    postgres: PostgresServer,
    files_database: str,
) -> None:
    """Without any s3:ListBucket the service cannot tell "missing" from "forbidden": it says so
    (500, logged) rather than guess, and changes nothing."""
    owner = issuer.mint("user_owner", ["proj-1"])
    ticket = request_upload(proxied_app.url, owner, size=5)
    file_id = ticket["file"]["id"]
    (before,) = file_rows(postgres, files_database, file_id)
    proxy.grants = Grants.no_list_bucket()
    refused = complete(proxied_app.url, owner, file_id)
    assert refused.status_code == 500, refused.text
    assert [a.status for a in proxy.listed(ticket["upload"]["fields"]["key"])] == [403]
    assert file_rows(postgres, files_database, file_id) == [before]


@pytest.fixture
def store(aws_env: dict[str, str], proxy: PolicyProxy, files_bucket: str) -> ObjectStore:
    return ObjectStore(files_bucket, aws_env["AWS_REGION"], proxy.endpoint)


def test_the_store_reads_a_bodyless_403_for_a_missing_key_as_missing(
    store: ObjectStore, proxy: PolicyProxy
) -> None:
    proxy.grants = Grants.prefix_condition()
    key = f"uploads/proj-1/{uuid.uuid4()}"
    assert asyncio.run(store.head(key)) is None
    assert asyncio.run(store.remove_tags(key)) is False
    # DeleteObjectTagging's refusal carries S3's AccessDenied document; HEAD's carries nothing.
    assert [(a.status, a.body_bytes > 0) for a in proxy.answered("HEAD", key)] == [(403, False)]
    assert [(a.status, a.body_bytes > 0) for a in proxy.answered("DELETE", key)] == [(403, True)]


def test_the_store_sees_an_upload_that_lands_between_the_head_and_the_listing(
    store: ObjectStore, proxy: PolicyProxy, s3: Any, files_bucket: str
) -> None:
    """The browser's POST may complete after the HEAD was refused and before the listing: the
    object is then there, and a second HEAD reads it rather than calling the refusal real."""
    proxy.grants = Grants.prefix_condition()
    key = f"uploads/proj-1/{uuid.uuid4()}"

    def upload_after_first_head(method: str, answered_key: str) -> None:
        if method == "HEAD" and answered_key == key and len(proxy.answered("HEAD", key)) == 1:
            s3.put_object(Bucket=files_bucket, Key=key, Body=b"late", ContentType="text/plain")

    proxy.after = upload_after_first_head
    info = asyncio.run(store.head(key))
    assert info is not None and (info.size, info.content_type) == (4, "text/plain")
    assert [a.status for a in proxy.answered("HEAD", key)] == [403, 200]


def test_the_store_calls_a_403_on_an_existing_object_forbidden(
    store: ObjectStore, proxy: PolicyProxy, s3: Any, files_bucket: str
) -> None:
    key = f"uploads/proj-1/{uuid.uuid4()}"
    s3.put_object(Bucket=files_bucket, Key=key, Body=b"x", ContentType="text/plain")
    proxy.grants = Grants(read_objects=False)
    with pytest.raises(StorageForbidden, match="existing object"):
        asyncio.run(store.head(key))
    # A role that may not even list cannot tell, and says so rather than guess "missing".
    proxy.grants = Grants.no_list_bucket()
    with pytest.raises(StorageForbidden, match="refused to list"):
        asyncio.run(store.head(f"uploads/proj-1/{uuid.uuid4()}"))


def test_a_missing_bucket_is_a_503_not_a_missing_upload(
    files_env: dict[str, str],
    issuer: Issuer,
    postgres: PostgresServer,
    files_database: str,
    s3: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The bucket goes away (deleted, or a deployment naming the wrong one): S3's HEAD answers a
    # body-less 404 exactly as for a missing key; completion must not tell the client "not uploaded".
    bucket = f"motion-gone-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    with InProcessServer({**files_env, "FILES_BUCKET": bucket}) as server:
        owner = issuer.mint("user_owner", ["proj-1"])
        ticket = request_upload(server.url, owner, size=5)
        file_id = ticket["file"]["id"]
        post_form(ticket["upload"], b"hello")
        for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"])
        s3.delete_bucket(Bucket=bucket)
        with caplog.at_level(logging.ERROR, logger="files_service.storage"):
            answer = complete(server.url, owner, file_id)
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "1"
        assert NOT_UPLOADED not in answer.text
        assert any(f"S3 bucket {bucket!r} does not exist" in r.getMessage() for r in caplog.records)
        (row,) = file_rows(postgres, files_database, file_id)
        assert row["status"] == "pending" and row["completed_at"] is None
        # Once the bucket is back and the client uploads again, the same file completes.
        s3.create_bucket(Bucket=bucket)
        post_form(ticket["upload"], b"hello")
        assert complete(server.url, owner, file_id).status_code == 200
