"""What an operator sees of the files service: JSON lines, and a line for each refused, failed or
slow request, carrying its id (the ALB's trace id when there is one, also answered in X-Request-Id),
and its own metrics as one EMF document per interval in the same log. Against the real entry point (`python -m files_service`) in a
subprocess, whose stdout is the container's log."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
from files_service import metric_names

from devstack.identity import Issuer
from tests.services.files.conftest import ServiceProcess, bearer

TRACE_ROOT = "1-67891233-abcdef012345678912345678"


def log_lines(service: ServiceProcess) -> list[dict[str, Any]]:
    lines = service.log_path.read_text().splitlines()
    parsed = [json.loads(line) for line in lines if line.startswith("{")]
    # Every line of the service's log is one JSON object (uvicorn's own included).
    assert len(parsed) == len([line for line in lines if line.strip()]), lines
    return parsed


def test_each_request_logs_one_line_with_its_id_and_metrics_are_published(
    files_env: dict[str, str], start_service: Callable[[dict[str, str]], ServiceProcess], issuer: Issuer
) -> None:
    service = start_service({**files_env, "LOG_LEVEL": "INFO"})  # the deployed level
    owner = issuer.mint("user_metrics", ["proj-metrics"])
    outsider = issuer.mint("user_outsider", [])
    traced = httpx.post(
        f"{service.url}/files/v1/uploads",
        json={
            "project_id": "proj-metrics",
            "file_name": "a.txt",
            "content_type": "text/plain",
            "size_bytes": 5,
        },
        headers={**bearer(owner), "X-Amzn-Trace-Id": f"Root={TRACE_ROOT};Parent=53995c3f42cd8ad8;Sampled=1"},
    )
    assert traced.status_code == 201, traced.text
    assert traced.headers["x-request-id"] == TRACE_ROOT
    denied = httpx.get(
        f"{service.url}/files/v1/projects/proj-metrics/files",
        headers={**bearer(outsider), "X-Amzn-Trace-Id": f"Root={TRACE_ROOT[:-1]}9"},
    )
    assert denied.status_code == 403
    assert denied.headers["x-request-id"] == TRACE_ROOT[:-1] + "9"
    anonymous = httpx.get(f"{service.url}/files/v1/projects/proj-metrics/files")
    assert anonymous.status_code == 401
    own_id = anonymous.headers["x-request-id"]
    assert len(own_id) == 24 and int(own_id, 16) >= 0  # no trace header: an id of its own
    forged = httpx.get(
        f"{service.url}/files/v1/projects/p/files", headers={"X-Amzn-Trace-Id": "Root=<script>"}
    )
    assert forged.status_code == 401 and forged.headers["x-request-id"] != "<script>"

    # SIGTERM, as ECS stops a task (uvicorn shuts down, then re-raises the signal): the last
    # interval is published on the way out.
    assert service.stop() in (0, -15)
    lines = log_lines(service)
    requests = {line["request_id"]: line for line in lines if line.get("message") == "request"}
    assert TRACE_ROOT not in requests  # a quick success: the ALB's access log has it
    assert requests[TRACE_ROOT[:-1] + "9"]["status"] == 403
    assert requests[TRACE_ROOT[:-1] + "9"]["path"] == "/files/v1/projects/proj-metrics/files"
    assert requests[own_id]["status"] == 401
    # Health checks (the readiness polling at start) are not logged line by line.
    assert not [line for line in requests.values() if line["path"].endswith(("/livez", "/readyz"))]

    [document] = [line for line in lines if "_aws" in line]
    directive = document["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == metric_names.NAMESPACE
    assert directive["Dimensions"] == [[metric_names.DIMENSION]]
    assert document[metric_names.DIMENSION] == metric_names.dimension_value("all")
    published = {m["Name"]: document[m["Name"]] for m in directive["Metrics"]}
    assert published == {metric_names.UPLOAD_FORMS_SIGNED: 1, metric_names.DENIALS: 3}
    assert set(published) <= set(metric_names.ALL)


def test_an_unhandled_error_is_answered_500_with_its_id_on_the_response_and_the_log_line(
    files_env: dict[str, str],
) -> None:
    """Starlette answers unhandled errors outside every middleware; the request-id layer answers
    them itself so the 500 an operator is asked about can be found by its id. (Without its lifespan
    the app has no token verifier yet: a real unhandled AttributeError.)"""
    import asyncio
    import io
    import logging

    from files_service.app import create_app
    from files_service.settings import Settings
    from motion_common.logs import JsonFormatter

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("files_service.app")
    logger.addHandler(handler)
    try:
        app = create_app(Settings.from_env(files_env))

        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://files") as http:
                return await http.get(
                    "/files/v1/projects/p/files",
                    headers={"Authorization": "Bearer x", "X-Amzn-Trace-Id": f"Root={TRACE_ROOT}"},
                )

        response = asyncio.run(call())
    finally:
        logger.removeHandler(handler)
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    assert response.headers["x-request-id"] == TRACE_ROOT
    [line] = [json.loads(x) for x in out.getvalue().splitlines() if "unhandled error" in x]
    assert line["request_id"] == TRACE_ROOT and "AttributeError" in line["error"]
