"""The HTTP API in-process (uvicorn in a thread, real PostgreSQL and local S3): validation, every
denial path, state conflicts, the upload form the service hands out, and the pending tag."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError
from files_service.storage import ObjectStore
from starlette.applications import Starlette
from starlette.routing import Route

from devstack.identity import Issuer
from tests.browser_cors import preflight_grants, preflight_request
from tests.services.files.conftest import MAX_UPLOAD_BYTES, PRESIGN_TTL_SECONDS, InProcessServer, bearer

UPLOADS = "/files/v1/uploads"
OTHER_ID = "00000000-0000-4000-8000-000000000000"
PENDING_TAGGING = (
    "<Tagging><TagSet><Tag><Key>upload-state</Key><Value>pending</Value></Tag></TagSet></Tagging>"
)
PENDING_TAG_SET = [{"Key": "upload-state", "Value": "pending"}]

Auth = Callable[..., dict[str, str]]


@pytest.fixture(scope="module")
def auth(issuer: Issuer) -> Auth:
    tokens: dict[tuple[str, tuple[str, ...]], str] = {}

    def make(user: str, *projects: str) -> dict[str, str]:
        key = (user, projects)
        if key not in tokens:
            tokens[key] = issuer.mint(user, list(projects))
        return bearer(tokens[key])

    return make


def upload_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "project_id": "alpha",
        "file_name": "plan.pdf",
        "content_type": "application/pdf",
        "size_bytes": 5,
    }
    body.update(overrides)
    return body


@pytest.fixture(scope="module")
def make_file(client: httpx.Client, auth: Auth, s3: Any, files_bucket: str) -> Callable[..., dict[str, Any]]:
    """An available file: requested through the API, its object put in S3, then completed."""

    def make(
        owner: str = "owner", project: str = "alpha", name: str = "plan.pdf", complete: bool = True
    ) -> dict[str, Any]:
        resp = client.post(
            UPLOADS, json=upload_body(project_id=project, file_name=name), headers=auth(owner, project)
        )
        assert resp.status_code == 201, resp.text
        ticket = resp.json()
        if complete:
            # Tagged as S3 tags an object created through the form (moto ignores the form's tagging).
            s3.put_object(
                Bucket=files_bucket,
                Key=ticket["upload"]["fields"]["key"],
                Body=b"%PDF!",
                ContentType="application/pdf",
                Tagging="upload-state=pending",
            )
            done = client.post(f"{UPLOADS}/{ticket['file']['id']}/complete", headers=auth(owner, project))
            assert done.status_code == 200, done.text
            return dict(done.json()["file"])
        return dict(ticket["file"])

    return make


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def assert_error(resp: httpx.Response, status: int, fragment: str = "") -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error", "message"}
    assert fragment in body["message"], body["message"]


# --- authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", UPLOADS),
        ("POST", f"{UPLOADS}/{OTHER_ID}/complete"),
        ("DELETE", f"{UPLOADS}/{OTHER_ID}"),
        ("GET", "/files/v1/projects/alpha/files"),
        ("GET", f"/files/v1/files/{OTHER_ID}/download"),
        ("PUT", f"/files/v1/files/{OTHER_ID}/shares/someone"),
    ],
)
def test_requests_without_a_valid_token_are_401(
    client: httpx.Client, issuer: Issuer, method: str, path: str
) -> None:
    expired = issuer.mint("owner", ["alpha"], ttl_seconds=-60)
    foreign = Issuer(issuer=issuer.issuer, kid=issuer.kid).mint("owner", ["alpha"])
    for headers in [
        {},
        {"Authorization": "Basic b3duZXI6cHc="},
        bearer("not.a.jwt"),
        bearer(expired),
        bearer(foreign),
    ]:
        resp = client.request(method, path, headers=headers, json=upload_body())
        assert_error(resp, 401)
        assert resp.headers["www-authenticate"].startswith("Bearer")


# --- requesting an upload ----------------------------------------------------------------------


def test_upload_ticket_pins_key_type_size_and_expiry(client: httpx.Client, auth: Auth) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    resp = client.post(UPLOADS, json=upload_body(size_bytes=1234), headers=auth("owner", "alpha"))
    assert resp.status_code == 201
    ticket = resp.json()
    file, upload = ticket["file"], ticket["upload"]
    assert file["status"] == "pending" and file["owner_id"] == "owner" and file["size_bytes"] == 1234
    key = f"uploads/alpha/{file['id']}"
    assert upload["method"] == "POST"
    assert upload["fields"]["key"] == key
    assert upload["fields"]["Content-Type"] == "application/pdf"
    assert upload["fields"]["tagging"] == PENDING_TAGGING

    policy = json.loads(base64.b64decode(upload["fields"]["policy"]))
    conditions = policy["conditions"]
    assert {"key": key} in conditions
    assert {"Content-Type": "application/pdf"} in conditions
    assert ["content-length-range", 1234, 1234] in conditions
    # Exact match, and the only condition on the tags: the form cannot be posted without them.
    assert [c for c in conditions if "tagging" in c] == [{"tagging": PENDING_TAGGING}]
    expiration = datetime.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before + timedelta(seconds=PRESIGN_TTL_SECONDS) <= expiration
    assert expiration <= datetime.now(UTC) + timedelta(seconds=PRESIGN_TTL_SECONDS)
    assert upload["expires_at"] == policy["expiration"]


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\Windows\\win.ini", "win.ini"),
        ("/absolute/path/report.pdf", "report.pdf"),
        ("  .hidden  ", "hidden"),
        ('evil"; filename="x.exe', "evil_; filename=_x.exe"),
        ("line\r\nbreak\x00.pdf", "linebreak.pdf"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),
        ("ünïcödé ✓.pdf", "ünïcödé ✓.pdf"),
    ],
)
def test_file_names_are_reduced_to_a_safe_display_name(
    client: httpx.Client, auth: Auth, raw: str, stored: str
) -> None:
    resp = client.post(UPLOADS, json=upload_body(file_name=raw), headers=auth("owner", "alpha"))
    assert resp.status_code == 201, resp.text
    file = resp.json()["file"]
    assert file["file_name"] == stored
    # The name never reaches the object key.
    assert resp.json()["upload"]["fields"]["key"] == f"uploads/alpha/{file['id']}"


@pytest.mark.parametrize("raw", ["..", "/", "\\..\\", " . ", "\x00\x01", "dir/"])
def test_names_with_nothing_usable_are_refused(client: httpx.Client, auth: Auth, raw: str) -> None:
    resp = client.post(UPLOADS, json=upload_body(file_name=raw), headers=auth("owner", "alpha"))
    assert_error(resp, 400, "file_name")


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"size_bytes": MAX_UPLOAD_BYTES + 1}, f"maximum of {MAX_UPLOAD_BYTES} bytes"),
        ({"size_bytes": 0}, "positive integer"),
        ({"size_bytes": -5}, "positive integer"),
        ({"size_bytes": True}, "positive integer"),
        ({"size_bytes": 12.5}, "positive integer"),
        ({"size_bytes": "12"}, "positive integer"),
        ({"size_bytes": 10**30}, "size_bytes"),
        ({"content_type": "text/html"}, "'text/html' is not allowed"),
        ({"content_type": "application/x-msdownload"}, "not allowed"),
        ({"content_type": "text/plain; charset=utf-8"}, "media type"),
        ({"content_type": "image/*"}, "media type"),
        ({"content_type": 7}, "content_type must be a string"),
        ({"project_id": "../other"}, "project_id"),
        ({"project_id": "alpha/beta"}, "project_id"),
        ({"project_id": "alpha\x00"}, "project_id"),
        ({"project_id": ""}, "project_id"),
        ({"project_id": "a" * 129}, "project_id"),
        ({"file_name": ""}, "file_name"),
        ({"file_name": "x" * 1025}, "file_name"),
        ({"file_name": None}, "file_name"),
        ({"extra": 1}, "unknown field(s): 'extra'"),
    ],
)
def test_invalid_upload_requests_are_400_with_the_reason(
    client: httpx.Client, auth: Auth, overrides: dict[str, Any], fragment: str
) -> None:
    resp = client.post(UPLOADS, json=upload_body(**overrides), headers=auth("owner", "alpha"))
    assert_error(resp, 400, fragment)


def test_allowed_types_include_wildcard_families_and_ignore_case(client: httpx.Client, auth: Auth) -> None:
    resp = client.post(UPLOADS, json=upload_body(content_type="IMAGE/PNG"), headers=auth("owner", "alpha"))
    assert resp.status_code == 201
    assert resp.json()["file"]["content_type"] == "image/png"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "JSON object"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"text"', "JSON object"),
        (b'{"project_id": "alpha"}', "missing field(s): file_name, content_type, size_bytes"),
        (b'{"file_name": "\\ud800.pdf"}', ""),
    ],
)
def test_malformed_bodies_are_400(client: httpx.Client, auth: Auth, content: bytes, fragment: str) -> None:
    headers = {**auth("owner", "alpha"), "Content-Type": "application/json"}
    assert_error(client.post(UPLOADS, content=content, headers=headers), 400, fragment)


def test_oversized_body_is_413(client: httpx.Client, auth: Auth) -> None:
    resp = client.post(UPLOADS, json=upload_body(file_name="x" * 20_000), headers=auth("owner", "alpha"))
    assert_error(resp, 413, "at most")


def test_upload_to_a_project_the_caller_is_not_in_is_403(client: httpx.Client, auth: Auth) -> None:
    resp = client.post(UPLOADS, json=upload_body(project_id="beta"), headers=auth("owner", "alpha"))
    assert_error(resp, 403, "not a member")


# --- completing and deleting -------------------------------------------------------------------


def test_only_the_owner_completes_or_deletes(
    client: httpx.Client, auth: Auth, make_file: Callable[..., dict[str, Any]]
) -> None:
    pending = make_file(complete=False)
    member = auth("member", "alpha")
    assert_error(client.post(f"{UPLOADS}/{pending['id']}/complete", headers=member), 403, "owner")
    assert_error(client.delete(f"{UPLOADS}/{pending['id']}", headers=member), 403, "owner")
    assert client.delete(f"{UPLOADS}/{pending['id']}", headers=auth("owner", "alpha")).status_code == 204
    assert_error(client.post(f"{UPLOADS}/{pending['id']}/complete", headers=auth("owner", "alpha")), 404)


@pytest.fixture
def app_storage(app_server: InProcessServer) -> ObjectStore:
    """The in-process app's own ObjectStore, whose boto3 client a test may make fail."""
    app = app_server.server.config.app
    assert isinstance(app, Starlette)
    for route in app.routes:
        if isinstance(route, Route) and route.name == "complete_upload":
            storage = route.endpoint.__self__.storage  # type: ignore[attr-defined]
            assert isinstance(storage, ObjectStore)
            return storage
    raise AssertionError("no complete_upload route")


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, *args: Any, **kwargs: Any) -> Iterator[bytes]:
        yield self.data


def _slow_down(request: Any, **kwargs: Any) -> AWSResponse:
    body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
    return AWSResponse(request.url, 503, {"Content-Type": "application/xml"}, _Body(body))


def _unreachable(request: Any, **kwargs: Any) -> AWSResponse:
    raise EndpointConnectionError(endpoint_url=request.url)


class TagRemovalFault:
    """Makes the app's DeleteObjectTagging calls fail (after botocore's own retries) until healed."""

    EVENT = "before-send.s3.DeleteObjectTagging"

    def __init__(self, storage: ObjectStore) -> None:
        self.events = storage._client.meta.events
        self.handlers: list[Callable[..., AWSResponse]] = []

    def fail(self, handler: Callable[..., AWSResponse]) -> None:
        self.events.register(self.EVENT, handler)
        self.handlers.append(handler)

    def heal(self) -> None:
        while self.handlers:
            self.events.unregister(self.EVENT, self.handlers.pop())


@pytest.fixture
def tag_removal_fault(app_storage: ObjectStore) -> Iterator[TagRemovalFault]:
    fault = TagRemovalFault(app_storage)
    try:
        yield fault
    finally:
        fault.heal()


def _tags(s3: Any, bucket: str, key: str) -> list[dict[str, str]]:
    return list(s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"])


def _upload_tagged(s3: Any, bucket: str, file: dict[str, Any]) -> str:
    """What the form's POST leaves in S3 (moto ignores a POST form's `tagging`, so a PUT with tags)."""
    key = f"uploads/alpha/{file['id']}"
    s3.put_object(
        Bucket=bucket, Key=key, Body=b"%PDF!", ContentType="application/pdf", Tagging="upload-state=pending"
    )
    return key


def test_completion_removes_the_pending_tag(
    client: httpx.Client, auth: Auth, s3: Any, files_bucket: str, make_file: Callable[..., dict[str, Any]]
) -> None:
    file = make_file(complete=False)
    key = _upload_tagged(s3, files_bucket, file)
    assert _tags(s3, files_bucket, key) == PENDING_TAG_SET
    owner = auth("owner", "alpha")
    done = client.post(f"{UPLOADS}/{file['id']}/complete", headers=owner)
    assert done.status_code == 200, done.text
    assert done.json()["file"]["status"] == "available"
    # Downloads get the untagged copy; the upload key, which nothing reads any more, is gone.
    assert _tags(s3, files_bucket, key + ".stored") == []
    assert s3.list_objects_v2(Bucket=files_bucket, Prefix=key)["Contents"][0]["Key"] == key + ".stored"

    # A retried completion answers the same.
    again = client.post(f"{UPLOADS}/{file['id']}/complete", headers=owner)
    assert again.status_code == 200 and again.json() == done.json()

    # The form stays valid for its TTL; posting it again after completion creates the upload key
    # anew, tagged pending (so the lifecycle rule expires it), and never touches the stored copy.
    _upload_tagged(s3, files_bucket, file)
    again = client.post(f"{UPLOADS}/{file['id']}/complete", headers=owner)
    assert again.status_code == 200 and again.json() == done.json()
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=files_bucket, Prefix=key)["Contents"]] == [
        key + ".stored"
    ]
    assert _tags(s3, files_bucket, key + ".stored") == []


@pytest.mark.parametrize("failure", [_slow_down, _unreachable], ids=["s3-slow-down", "s3-unreachable"])
def test_completion_is_503_and_stays_pending_until_the_tag_is_removed(
    client: httpx.Client,
    auth: Auth,
    s3: Any,
    files_bucket: str,
    make_file: Callable[..., dict[str, Any]],
    tag_removal_fault: TagRemovalFault,
    failure: Callable[..., AWSResponse],
) -> None:
    file = make_file(complete=False)
    key = _upload_tagged(s3, files_bucket, file)
    owner = auth("owner", "alpha")
    tag_removal_fault.fail(failure)
    resp = client.post(f"{UPLOADS}/{file['id']}/complete", headers=owner)
    assert_error(resp, 503, "retry")
    assert resp.headers["retry-after"] == "1"
    # Not available with the tag still on: the row stays pending, the object keeps its tag.
    assert client.get(f"/files/v1/files/{file['id']}", headers=owner).json()["status"] == "pending"
    assert _tags(s3, files_bucket, key) == PENDING_TAG_SET
    assert_error(client.get(f"/files/v1/files/{file['id']}/download", headers=owner), 409)

    # S3 is back: the client's retry completes the upload and removes the tag.
    tag_removal_fault.heal()
    done = client.post(f"{UPLOADS}/{file['id']}/complete", headers=owner)
    assert done.status_code == 200, done.text
    assert done.json()["file"]["status"] == "available"
    assert _tags(s3, files_bucket, key + ".stored") == []


def test_retried_completion_of_an_available_file_succeeds_even_if_s3_fails(
    client: httpx.Client,
    auth: Auth,
    make_file: Callable[..., dict[str, Any]],
    tag_removal_fault: TagRemovalFault,
) -> None:
    """Removing the tag again on a retried completion is only best effort."""
    file = make_file()
    tag_removal_fault.fail(_unreachable)
    again = client.post(f"{UPLOADS}/{file['id']}/complete", headers=auth("owner", "alpha"))
    assert again.status_code == 200, again.text
    assert again.json()["file"] == file


@pytest.mark.parametrize(("method", "suffix"), [("POST", "/complete"), ("DELETE", "")])
def test_unknown_or_malformed_file_ids(client: httpx.Client, auth: Auth, method: str, suffix: str) -> None:
    owner = auth("owner", "alpha")
    assert_error(client.request(method, f"{UPLOADS}/{OTHER_ID}{suffix}", headers=owner), 404, "no such file")
    for bad in ["not-a-uuid", "123", "{" + OTHER_ID + "}", OTHER_ID.replace("-", "")]:
        assert_error(client.request(method, f"{UPLOADS}/{bad}{suffix}", headers=owner), 400, "file_id")


# --- downloading -------------------------------------------------------------------------------


def test_download_allowed_for_owner_members_and_grantees(
    client: httpx.Client, auth: Auth, make_file: Callable[..., dict[str, Any]]
) -> None:
    file = make_file(name="ünï report.pdf")
    path = f"/files/v1/files/{file['id']}/download"
    # The owner (while a member), a member, and (below) a grantee.
    for headers in [auth("owner", "alpha"), auth("member", "alpha", "gamma")]:
        for method in ("GET", "POST"):
            resp = client.request(method, path, headers=headers)
            assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["file_name"] == "ünï report.pdf" and body["method"] == "GET"
    url = urlsplit(body["url"])
    query = parse_qs(url.query)
    assert url.path.endswith(f"/uploads/alpha/{file['id']}.stored")
    assert query["response-content-disposition"] == [
        "attachment; filename=\"_n_ report.pdf\"; filename*=UTF-8''%C3%BCn%C3%AF%20report.pdf"
    ]
    assert query["X-Amz-Expires"] == [str(PRESIGN_TTL_SECONDS)]
    expires_at = datetime.fromisoformat(body["expires_at"])
    assert timedelta(0) < expires_at - datetime.now(UTC) <= timedelta(seconds=PRESIGN_TTL_SECONDS)

    outsider = auth("outsider", "beta")
    assert_error(client.get(path, headers=outsider), 403, "may not download")
    share = client.put(
        f"/files/v1/files/{file['id']}/shares/outsider",
        json={"expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()},
        headers=auth("owner", "alpha"),
    )
    assert share.status_code == 200, share.text
    assert share.json()["user_id"] == "outsider" and share.json()["granted_by"] == "owner"
    assert client.get(path, headers=outsider).status_code == 200
    assert client.get(f"/files/v1/files/{file['id']}", headers=outsider).status_code == 200
    # A share grants the file, not the project.
    assert_error(client.get("/files/v1/projects/alpha/files", headers=outsider), 403)


def test_other_project_members_are_denied(
    client: httpx.Client, auth: Auth, make_file: Callable[..., dict[str, Any]]
) -> None:
    file = make_file()
    other = auth("stranger", "beta")
    assert_error(client.get(f"/files/v1/files/{file['id']}/download", headers=other), 403)
    assert_error(client.get(f"/files/v1/files/{file['id']}", headers=other), 403)
    assert_error(client.get("/files/v1/projects/alpha/files", headers=other), 403, "not a member")


def test_revoked_share_no_longer_grants(
    client: httpx.Client, auth: Auth, make_file: Callable[..., dict[str, Any]]
) -> None:
    file = make_file()
    shares = f"/files/v1/files/{file['id']}/shares"
    owner, guest = auth("owner", "alpha"), auth("guest")
    until = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    assert client.put(f"{shares}/guest", json={"expires_at": until}, headers=owner).status_code == 200
    assert client.get(f"/files/v1/files/{file['id']}/download", headers=guest).status_code == 200
    listed = client.get(shares, headers=owner)
    assert [s["user_id"] for s in listed.json()["shares"]] == ["guest"]

    assert client.delete(f"{shares}/guest", headers=owner).status_code == 204
    assert_error(client.get(f"/files/v1/files/{file['id']}/download", headers=guest), 403)
    assert_error(client.delete(f"{shares}/guest", headers=owner), 404, "no share")
    assert client.get(shares, headers=owner).json() == {"shares": []}


def test_expired_share_no_longer_grants(
    client: httpx.Client, auth: Auth, make_file: Callable[..., dict[str, Any]]
) -> None:
    file = make_file()
    path = f"/files/v1/files/{file['id']}/download"
    until = datetime.now(UTC) + timedelta(seconds=1.5)
    resp = client.put(
        f"/files/v1/files/{file['id']}/shares/brief",
        json={"expires_at": until.isoformat()},
        headers=auth("owner", "alpha"),
    )
    assert resp.status_code == 200
    assert client.get(path, headers=auth("brief")).status_code == 200
    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.05)
    assert_error(client.get(path, headers=auth("brief")), 403)


def test_only_the_owner_shares_and_members_list_or_revoke(
    client: httpx.Client, auth: Auth, make_file: Callable[..., dict[str, Any]]
) -> None:
    file = make_file()
    shares = f"/files/v1/files/{file['id']}/shares"
    member = auth("member", "alpha")
    until = {"expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
    assert_error(client.put(f"{shares}/friend", json=until, headers=member), 403, "owner")
    assert client.put(f"{shares}/friend", json=until, headers=auth("owner", "alpha")).status_code == 200
    # A grantee cannot pass the file on, see its shares or end them.
    assert_error(client.put(f"{shares}/another", json=until, headers=auth("friend")), 403, "owner")
    assert_error(client.get(shares, headers=auth("friend")), 403, "members")
    assert_error(client.delete(f"{shares}/friend", headers=auth("friend")), 403, "members")
    # Any current member sees and ends shares (so that a leaver's shares can be ended).
    assert [s["user_id"] for s in client.get(shares, headers=member).json()["shares"]] == ["friend"]
    assert client.delete(f"{shares}/friend", headers=member).status_code == 204


def test_a_leaver_loses_every_operation_on_their_own_files(
    client: httpx.Client, auth: Auth, make_file: Callable[..., dict[str, Any]]
) -> None:
    """The attack: the owner is removed from the project (a token without it) and tries everything."""
    file = make_file(owner="leaver")
    pending = make_file(owner="leaver", complete=False)
    until = {"expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
    fid = file["id"]
    assert (
        client.put(
            f"/files/v1/files/{fid}/shares/pal", json=until, headers=auth("leaver", "alpha")
        ).status_code
        == 200
    )
    left = auth("leaver", "beta")
    for method, path, body in [
        ("GET", f"/files/v1/files/{fid}", None),
        ("GET", f"/files/v1/files/{fid}/download", None),
        ("POST", f"/files/v1/files/{fid}/download", None),
        ("GET", f"/files/v1/files/{fid}/shares", None),
        ("PUT", f"/files/v1/files/{fid}/shares/accomplice", until),
        ("DELETE", f"/files/v1/files/{fid}/shares/pal", None),
        ("POST", f"{UPLOADS}/{pending['id']}/complete", None),
        ("DELETE", f"{UPLOADS}/{fid}", None),
        ("GET", "/files/v1/projects/alpha/files", None),
    ]:
        assert_error(client.request(method, path, json=body, headers=left), 403)
    # Nothing changed: the file is there, and the share the leaver granted while a member still
    # works until it expires or a member revokes it (app_code/files/README.md, "Leaving a project").
    member = auth("member", "alpha")
    assert client.get(f"/files/v1/files/{fid}", headers=member).status_code == 200
    assert client.get(f"/files/v1/files/{fid}/download", headers=auth("pal")).status_code == 200
    assert client.delete(f"/files/v1/files/{fid}/shares/pal", headers=member).status_code == 204
    assert_error(client.get(f"/files/v1/files/{fid}/download", headers=auth("pal")), 403)
    # Rejoining restores the owner's rights.
    assert client.get(f"/files/v1/files/{fid}/download", headers=auth("leaver", "alpha")).status_code == 200


def test_shares_are_capped_at_max_share_days(
    client: httpx.Client, app_server: InProcessServer, auth: Auth, make_file: Callable[..., dict[str, Any]]
) -> None:
    file = make_file()
    path = f"/files/v1/files/{file['id']}/shares/friend"
    owner = auth("owner", "alpha")
    days = app_server.settings.max_share_days
    for far in ["9999-12-31T23:59:59Z", (datetime.now(UTC) + timedelta(days=days, minutes=1)).isoformat()]:
        assert_error(client.put(path, json={"expires_at": far}, headers=owner), 400, f"at most {days} days")
    assert client.get(f"/files/v1/files/{file['id']}/shares", headers=owner).json() == {"shares": []}
    near = (datetime.now(UTC) + timedelta(days=days, minutes=-1)).isoformat()
    assert client.put(path, json={"expires_at": near}, headers=owner).status_code == 200


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"expires_at": "2001-01-01T00:00:00Z"}, "in the future"),
        ({"expires_at": "2999-01-01T00:00:00"}, "time zone"),
        ({"expires_at": "2999-01-01T00:00:00Z"}, "at most 30 days"),
        ({"expires_at": "tomorrow"}, "ISO 8601"),
        ({"expires_at": "9999-12-31T23:59:59-05:00"}, "ISO 8601"),
        ({"expires_at": 1700000000}, "ISO 8601"),
        ({}, "missing field(s): expires_at"),
        ({"expires_at": "2999-01-01T00:00:00Z", "role": "admin"}, "unknown field"),
    ],
)
def test_invalid_share_requests_are_400(
    client: httpx.Client,
    auth: Auth,
    make_file: Callable[..., dict[str, Any]],
    body: dict[str, Any],
    fragment: str,
) -> None:
    file = make_file(complete=False)
    resp = client.put(f"/files/v1/files/{file['id']}/shares/friend", json=body, headers=auth("owner"))
    assert_error(resp, 400, fragment)


def test_share_targets_must_be_user_ids(client: httpx.Client, auth: Auth) -> None:
    until = {"expires_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()}
    resp = client.put(f"/files/v1/files/{OTHER_ID}/shares/a%20b", json=until, headers=auth("owner"))
    assert_error(resp, 400, "user_id")
    resp = client.put(f"/files/v1/files/{OTHER_ID}/shares/friend", json=until, headers=auth("owner"))
    assert_error(resp, 404)


def test_pending_files_cannot_be_downloaded(
    client: httpx.Client, auth: Auth, make_file: Callable[..., dict[str, Any]]
) -> None:
    file = make_file(complete=False)
    assert_error(client.get(f"/files/v1/files/{file['id']}/download", headers=auth("owner", "alpha")), 409)
    # An outsider learns nothing about the state.
    assert_error(client.get(f"/files/v1/files/{file['id']}/download", headers=auth("x", "beta")), 403)
    # Nor does the listing show it.
    listed = client.get("/files/v1/projects/alpha/files?limit=200", headers=auth("owner", "alpha")).json()
    assert file["id"] not in [f["id"] for f in listed["files"]]


def test_unknown_file_is_404(client: httpx.Client, auth: Auth) -> None:
    for path in [f"/files/v1/files/{OTHER_ID}/download", f"/files/v1/files/{OTHER_ID}"]:
        assert_error(client.get(path, headers=auth("owner", "alpha")), 404, "no such file")
    assert_error(client.get("/files/v1/files/zzz/download", headers=auth("owner", "alpha")), 400, "file_id")


# --- listing -----------------------------------------------------------------------------------


def test_listing_pages_through_a_project_newest_first(
    client: httpx.Client, auth: Auth, make_file: Callable[..., dict[str, Any]]
) -> None:
    project = f"list-{uuid.uuid4().hex[:8]}"
    made = [make_file(project=project, name=f"f{i}.pdf")["id"] for i in range(5)]
    headers = auth("member", project)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/files/v1/projects/{project}/files", params=params, headers=headers)
        assert page.status_code == 200
        seen += [f["id"] for f in page.json()["files"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("cursor=%%%", "cursor"),
        ("cursor=bm9wZQ", "cursor"),
        ("limit=%C2%B2", "limit"),
        ("limit=%D9%A3", "limit"),
        ("limit=+5", "limit"),
        ("limit=1_0", "limit"),
        ("limit=00000000000000000000010", "limit"),
        # Out-of-range or foreign times and non-canonical ids, each a 500 before.
        ("cursor=" + b64("0001-01-01T00:00:00+14:00|" + OTHER_ID), "cursor"),
        ("cursor=" + b64("9999-12-31T23:59:59-14:00|" + OTHER_ID), "cursor"),
        ("cursor=" + b64("2020-01-01T00:00:00+01:00|" + OTHER_ID), "cursor"),
        ("cursor=" + b64("2020-01-01T00:00:00+00:00|" + "ABCDEF00-0000-4000-8000-000000000000"), "cursor"),
        ("cursor=" + b64("2020-01-01 00:00:00+00:00|" + OTHER_ID), "cursor"),
        ("cursor=" + b64("2020-01-01T00:00:00+00:00|" + OTHER_ID) + "~", "cursor"),
        ("cursor=" + "A" * 500, "cursor"),
    ],
)
def test_invalid_listing_parameters_are_400(
    client: httpx.Client, auth: Auth, query: str, fragment: str
) -> None:
    assert_error(
        client.get(f"/files/v1/projects/alpha/files?{query}", headers=auth("m", "alpha")), 400, fragment
    )


def test_listing_checks_the_project_id(client: httpx.Client, auth: Auth) -> None:
    assert_error(
        client.get("/files/v1/projects/al%20pha/files", headers=auth("m", "alpha")), 400, "project_id"
    )


# --- plumbing ----------------------------------------------------------------------------------


def test_health_openapi_and_unknown_routes(client: httpx.Client) -> None:
    ready = client.get("/files/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "role": "all", "checks": {"database": "ok", "storage": "ok"}}
    alive = client.get("/files/livez")
    assert alive.status_code == 200 and alive.json() == {"status": "alive", "role": "all"}
    spec = client.get("/files/v1/openapi.json")
    assert spec.status_code == 200 and spec.json()["openapi"].startswith("3.0")
    assert_error(client.get("/files/v1/nothing-here"), 404)
    assert_error(client.patch(f"/files/v1/files/{OTHER_ID}"), 405)


def test_cors_preflight_allows_only_the_configured_origin(client: httpx.Client) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    ok = client.options(UPLOADS, headers={"Origin": "http://localhost:5173", **preflight})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "http://localhost:5173"
    bad = client.options(UPLOADS, headers={"Origin": "https://evil.example", **preflight})
    assert bad.status_code == 400
    assert "access-control-allow-origin" not in bad.headers


def test_cors_allows_the_headers_the_service_reads_and_no_other(client: httpx.Client) -> None:
    """As a browser judges the preflight (tests/browser_cors.py): the token and a JSON body pass, a
    header no handler reads does not (`files_service.routes.REQUEST_HEADERS`, plus the safelisted ones, is what the app allows)."""
    origin = "http://localhost:5173"
    upload = {"authorization": "Bearer t", "content-type": "application/json"}
    for headers in (upload, {**upload, "x-unread": "1"}):
        answer = client.options(UPLOADS, headers=preflight_request(origin, "POST", headers))
        assert preflight_grants(answer, origin, "POST", headers) is ("x-unread" not in headers)
