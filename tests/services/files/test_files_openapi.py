"""The served OpenAPI document matches the routes, and a bounded property-based run over it
(schemathesis) finds no 5xx and no response that breaks the document."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from files_service.routes import LIVENESS_PATH, READINESS_PATH, ROUTES
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from devstack.identity import Issuer
from tests.services.files.conftest import InProcessServer, bearer


def test_document_lists_exactly_the_routes(client: httpx.Client) -> None:
    spec = client.get("/files/v1/openapi.json").json()
    documented = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    assert documented == {(r.method, r.path) for r in ROUTES} | {
        ("GET", READINESS_PATH),
        ("GET", LIVENESS_PATH),
    }
    upload = spec["components"]["schemas"]["UploadRequest"]["properties"]
    assert upload["size_bytes"]["maximum"] == 64 * 1024


@pytest.fixture(scope="module")
def api_schema(app_server: InProcessServer) -> Any:
    return schemathesis.openapi.from_url(f"{app_server.url}/files/v1/openapi.json")


OPERATIONS = [(r.method, r.path) for r in ROUTES] + [("GET", READINESS_PATH), ("GET", LIVENESS_PATH)]


# The health checks take no input, so there is nothing to violate for it.
CASES = [
    (m, p, mode)
    for m, p in OPERATIONS
    for mode in GenerationMode
    if p not in (READINESS_PATH, LIVENESS_PATH) or mode is GenerationMode.POSITIVE
]


@pytest.mark.parametrize(
    ("method", "path", "mode"), CASES, ids=[f"{m} {p} {mode.value}" for m, p, mode in CASES]
)
def test_generated_requests_get_no_server_error(
    api_schema: Any, app_server: InProcessServer, issuer: Issuer, method: str, path: str, mode: GenerationMode
) -> None:
    """Schema-valid and schema-violating requests alike: always a documented answer, never a 5xx."""
    operation = api_schema[path][method]
    # A member of the projects the generator is likely to name, so requests get past the token check.
    headers = bearer(issuer.mint("st_user", ["alpha", "proj_1"]))
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    if mode is GenerationMode.NEGATIVE:
        checks.append(negative_data_rejection)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=10,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def run(case: Any) -> None:
        case.call_and_validate(base_url=app_server.url, headers=headers, checks=checks)

    run()
