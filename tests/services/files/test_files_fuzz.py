"""Negative, byte-level fuzzing of every path parameter, query parameter and body field of every
route (files_service.routes.ROUTES), beyond what the OpenAPI schema generates (schemathesis only
produces schema-shaped values): arbitrary bytes percent-encoded into paths and queries, arbitrary
bytes as bodies, and any JSON value in each body field. The only property: never a 5xx, since every
one of these is the client's mistake (or a valid request)."""

from __future__ import annotations

import base64
import json
import string
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote_from_bytes

import httpx
import pytest
from files_service.routes import ROUTES, RouteSpec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack.identity import Issuer
from tests.services.files.conftest import bearer

USER, PROJECT = "fuzzer", "fuzz"
FILE_ID = "00000000-0000-4000-8000-00000000f022"
VALID = {"file_id": FILE_ID, "project_id": PROJECT, "user_id": "friend"}
BODIES: dict[str, dict[str, Any]] = {
    "request_upload": {
        "project_id": PROJECT,
        "file_name": "f.pdf",
        "content_type": "application/pdf",
        "size_bytes": 5,
    },
    "share_file": {"expires_at": "2999-01-01T00:00:00Z"},
}
FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

raw_bytes = st.binary(max_size=300)
# Bytes that look almost right: digits of every script, signs, separators, near-UUIDs, dates.
near_miss = st.one_of(
    st.text(alphabet=string.digits + "²³¹٣०-_+.:|/ \t\x00", max_size=40),
    st.text(max_size=60),
    st.sampled_from(["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "NaN", "-1", "1e309", "%00"]),
).map(lambda s: s.encode("utf-8", "surrogatepass"))
# Digits int() refuses although str.isdigit() takes them ('²', '٣', ...), as whole values.
unicode_digits = st.text(alphabet=st.characters(categories=["Nd", "No"]), min_size=1, max_size=3).map(
    lambda s: s.encode()
)
# Cursors shaped like the service's own (base64url of "<time>|<uuid>") with any time the datetime
# type holds, at any UTC offset (year 1 at +14:00 or 9999 at -14:00 leave PostgreSQL's range once
# converted), in any ISO spelling, and ids in any case.
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
shaped_cursor = st.builds(
    lambda when, sep, file_id, upper: base64.urlsafe_b64encode(
        f"{when.isoformat(sep=sep)}|{str(file_id).upper() if upper else file_id}".encode()
    ).rstrip(b"="),
    st.builds(
        lambda when, tz: when.replace(tzinfo=tz),
        st.one_of(st.sampled_from([datetime.min, datetime.max]), st.datetimes()),
        offsets | st.none(),
    ),
    st.sampled_from(["T", " "]),
    st.uuids(),
    st.booleans(),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)


def params(spec: RouteSpec) -> list[str]:
    return [name for name in VALID if "{" + name + "}" in spec.path]


PATH_CASES = [(spec, name) for spec in ROUTES for name in params(spec)]
BODY_CASES = [(op, field) for op, body in BODIES.items() for field in body]


def test_fuzz_cases_cover_every_parameter_and_body_field() -> None:
    for spec in ROUTES:
        assert "{" not in spec.path.format(**VALID), (
            f"{spec.operation} has a parameter this module does not fuzz"
        )
    assert {s.operation for s in ROUTES if s.method in ("POST", "PUT")} - {
        "download_file_post",
        "complete_upload",
    } == set(BODIES)


@pytest.fixture(scope="module")
def headers(issuer: Issuer) -> dict[str, str]:
    return bearer(issuer.mint(USER, [PROJECT]))


def check(resp: httpx.Response) -> None:
    assert resp.status_code < 500, f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.text}"


@pytest.mark.parametrize(("spec", "name"), PATH_CASES, ids=[f"{s.operation}-{n}" for s, n in PATH_CASES])
@FUZZ
@given(value=st.one_of(raw_bytes, near_miss))
def test_path_parameters(
    client: httpx.Client, headers: dict[str, str], spec: RouteSpec, name: str, value: bytes
) -> None:
    path = spec.path.format(**{**VALID, name: quote_from_bytes(value, safe="")})
    check(client.request(spec.method, path, headers=headers, json=BODIES.get(spec.operation)))


@FUZZ
@given(
    limit=st.one_of(raw_bytes, near_miss, unicode_digits),
    cursor=st.one_of(raw_bytes, near_miss, shaped_cursor),
    extra=raw_bytes,
)
def test_listing_query(
    client: httpx.Client, headers: dict[str, str], limit: bytes, cursor: bytes, extra: bytes
) -> None:
    base = f"/files/v1/projects/{PROJECT}/files"
    for query in (
        f"limit={quote_from_bytes(limit, safe='')}",
        f"cursor={quote_from_bytes(cursor, safe='')}",
        f"limit={quote_from_bytes(limit, safe='')}&cursor={quote_from_bytes(cursor, safe='')}",
        quote_from_bytes(extra, safe="=&"),
    ):
        check(client.get(f"{base}?{query}", headers=headers))


@pytest.mark.parametrize(("operation", "field"), BODY_CASES, ids=[f"{o}-{f}" for o, f in BODY_CASES])
@FUZZ
@given(value=json_values)
def test_body_fields(
    client: httpx.Client, headers: dict[str, str], operation: str, field: str, value: Any
) -> None:
    (spec,) = [s for s in ROUTES if s.operation == operation]
    body = json.dumps({**BODIES[operation], field: value}).encode()
    check(client.request(spec.method, spec.path.format(**VALID), headers=headers, content=body))


@pytest.mark.parametrize("operation", sorted(BODIES))
@FUZZ
@given(body=st.one_of(raw_bytes, near_miss, st.integers().map(lambda n: f'{{"size_bytes": {n}}}'.encode())))
def test_raw_bodies(client: httpx.Client, headers: dict[str, str], operation: str, body: bytes) -> None:
    (spec,) = [s for s in ROUTES if s.operation == operation]
    for content_type in ("application/json", "text/plain; charset=utf-8"):
        resp = client.request(
            spec.method,
            spec.path.format(**VALID),
            headers={**headers, "Content-Type": content_type},
            content=body,
        )
        check(resp)
