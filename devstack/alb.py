"""A local stand-in for the shared ALB's HTTP path rules, so a frontend can use one files URL locally
(`VITE_FILES_SERVICE_URL`) as it does in the cloud: requests go to the Upload or the Download service
by the same path patterns the listener rules use, anything else gets the ALB's 404, and so does a
service's health check path where its patterns would cover it (components/aws/alb_rules.py), as in the
cloud.

    python -m devstack.alb --port 8707 --target upload=http://127.0.0.1:8702 --target download=...
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from components.aws.alb_rules import (
    NOT_FOUND_BODY,
    NOT_FOUND_CONTENT_TYPE,
    NOT_FOUND_STATUS,
    PathRule,
    pattern_matches,
    service_rules,
)
from components.facts import CHAT, FILES
from components.platform.listener_priorities import LISTENER_PRIORITIES
from devstack.servers import LOCALHOST


@dataclass(frozen=True)
class Service:
    """What the listener knows of one service: its path patterns, health paths and priority."""

    path_patterns: tuple[str, ...]
    health_paths: tuple[str, ...]
    priority: int


# The services behind the shared ALB, by `--target` name, from the same facts the program reads.
SERVICES: dict[str, Service] = {
    "upload": Service(
        tuple(FILES.alb_path_patterns["upload"]),
        (FILES.liveness_path, FILES.readiness_path),
        LISTENER_PRIORITIES["files-upload"],
    ),
    "download": Service(
        tuple(FILES.alb_path_patterns["download"]),
        (FILES.liveness_path, FILES.readiness_path),
        LISTENER_PRIORITIES["files-download"],
    ),
    # Plain HTTP only (no WebSocket upgrades): enough to show its health path is refused.
    "chat": Service(
        tuple(CHAT.alb_path_patterns),
        (CHAT.liveness_path, CHAT.readiness_path),
        LISTENER_PRIORITIES["chat"],
    ),
}
# Hop-by-hop headers never cross a proxy (RFC 9110 7.6.1); the ALB sets its own Host/X-Forwarded-*.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}


def listener_rules(targets: Mapping[str, str]) -> list[tuple[PathRule, str | None]]:
    """The listener's rules for `targets` (service name -> base URL), as the program builds them
    (components/aws/alb_rules.py, service_rules): each service's forward rule, and a 404 for its health paths
    where its patterns cover them."""
    rules: list[tuple[PathRule, str | None]] = []
    for name, url in targets.items():
        service = SERVICES[name]
        for rule in service_rules(service.priority, service.path_patterns, service.health_paths):
            rules.append((rule, url.rstrip("/") if rule.forward else None))
    return rules


def pick_target(path: str, rules: Sequence[tuple[PathRule, str | None]]) -> str | None:
    """The URL the listener forwards `path` to, or None for its 404 (the default rule, or a refusal)."""
    for rule, url in sorted(rules, key=lambda item: item[0].priority):
        if any(pattern_matches(pattern, path) for pattern in rule.patterns):
            return url
    return None


def make_app(targets: Mapping[str, str]) -> Starlette:
    rules = listener_rules(targets)
    client = httpx.AsyncClient(timeout=30)

    async def forward(request: Request) -> Response:
        target = pick_target(request.url.path, rules)
        if target is None:
            return Response(NOT_FOUND_BODY, status_code=NOT_FOUND_STATUS, media_type=NOT_FOUND_CONTENT_TYPE)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["x-forwarded-for"] = request.client.host if request.client else LOCALHOST
        upstream = await client.request(
            request.method,
            target + request.url.path,
            params=request.query_params,
            headers=headers,
            content=await request.body(),
        )
        passed = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
        return Response(upstream.content, status_code=upstream.status_code, headers=passed)

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="ROLE=URL",
        help=f"a service ({', '.join(SERVICES)}) and its base URL",
    )
    args = parser.parse_args(argv)
    targets = dict(item.split("=", 1) for item in args.target)
    unknown = set(targets) - set(SERVICES)
    if unknown or not targets:
        parser.error(f"--target ROLE=URL with ROLE in {sorted(SERVICES)}")
    uvicorn.run(make_app(targets), host=LOCALHOST, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
