"""The route table the infrastructure is built from: ALB path patterns per role, and processes
that serve exactly their role's routes."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from files_service.routes import (
    ALB_PATH_PATTERNS,
    LIVENESS_PATH,
    OBJECT_KEY_PREFIX,
    OPENAPI_PATH,
    PENDING_TAG,
    READINESS_PATH,
    ROUTES,
    S3_OBJECT_ACTIONS,
    RouteSpec,
    alb_pattern_matches,
)

from tests.services.files.conftest import InProcessServer

SAMPLE = {"file_id": "123e4567-e89b-42d3-a456-426614174000", "project_id": "proj_1", "user_id": "user_2"}


def concrete(path: str) -> str:
    return path.format(**SAMPLE)


def served_by(path: str) -> set[str]:
    return {
        role
        for role, patterns in ALB_PATH_PATTERNS.items()
        if any(alb_pattern_matches(p, path) for p in patterns)
    }


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_each_route_reaches_exactly_its_role(route: RouteSpec) -> None:
    assert served_by(concrete(route.path)) == {route.role}


def test_pattern_sets_fit_alb_limits_and_do_not_overlap() -> None:
    for patterns in ALB_PATH_PATTERNS.values():
        # One listener rule takes at most 5 condition values, each at most 128 characters.
        assert 0 < len(patterns) <= 5
        assert all(p.startswith("/") and len(p) <= 128 for p in patterns)
    assert served_by(OPENAPI_PATH) == {"download"}
    assert served_by("/files/v1/uploadsX") == set()
    assert served_by(READINESS_PATH) == set() and served_by(LIVENESS_PATH) == set()
    assert served_by("/chat/v1/rooms") == set()


def test_alb_pattern_semantics() -> None:
    assert alb_pattern_matches("/files/v1/files/*", "/files/v1/files/a/b/c")
    assert not alb_pattern_matches("/files/v1/files/*", "/files/v1/FILES/a")
    assert alb_pattern_matches("/a?c", "/abc") and not alb_pattern_matches("/a?c", "/abbc")


def test_object_permissions_are_minimal() -> None:
    assert OBJECT_KEY_PREFIX == "uploads/"
    assert S3_OBJECT_ACTIONS["download"] == ("s3:GetObject",)
    assert set(S3_OBJECT_ACTIONS["upload"]) == {
        "s3:PutObject",
        # The upload form carries tags, and completion removes them.
        "s3:PutObjectTagging",
        "s3:DeleteObjectTagging",
        "s3:GetObject",
        "s3:DeleteObject",
    }


def test_pending_tag_is_the_one_the_lifecycle_rule_expires() -> None:
    """The bucket's lifecycle rule must filter on the very tag the upload form sets."""
    from components.files.files import PENDING_TAG as LIFECYCLE_TAG

    assert PENDING_TAG == LIFECYCLE_TAG == ("upload-state", "pending")


@pytest.fixture(scope="module", params=["upload", "download"])
def role_server(request: pytest.FixtureRequest, files_env: dict[str, str]) -> Iterator[tuple[str, str]]:
    role = str(request.param)
    with InProcessServer({**files_env, "FILES_ROLE": role}) as server:
        yield role, server.url


def test_a_role_serves_its_routes_and_nothing_else(role_server: tuple[str, str]) -> None:
    role, url = role_server
    with httpx.Client(base_url=url) as client:
        for route in ROUTES:
            resp = client.request(route.method, concrete(route.path))
            # Reaching the handler means the token check answers; a route not served is a 404.
            expected = 401 if route.role == role else 404
            assert resp.status_code == expected, (route, resp.text)
        health = client.get(READINESS_PATH)
        assert health.status_code == 200 and health.json()["role"] == role
        assert client.get(OPENAPI_PATH).status_code == 200
