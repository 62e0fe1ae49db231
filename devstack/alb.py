"""A local stand-in for the shared ALB's HTTP path rules, so a frontend can use one files URL locally
(`VITE_FILES_SERVICE_URL`) as it does in the cloud: requests go to the Upload or the Download service
by the same path patterns the listener rules use, anything else gets the ALB's 404.

    python -m devstack.alb --port 8707 --target upload=http://127.0.0.1:8702 --target download=...
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from components.app_facts import load_app_module
from devstack.servers import LOCALHOST

FILES_ROUTES = load_app_module("files/files_service/routes.py")
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


def pick_target(path: str, rules: Sequence[tuple[Sequence[str], str]]) -> str | None:
    """The first rule whose path patterns match, like listener rules in priority order."""
    for patterns, target in rules:
        if any(FILES_ROUTES.alb_pattern_matches(pattern, path) for pattern in patterns):
            return target
    return None


def make_app(targets: Mapping[str, str]) -> Starlette:
    rules = [(FILES_ROUTES.ALB_PATH_PATTERNS[role], url.rstrip("/")) for role, url in targets.items()]
    client = httpx.AsyncClient(timeout=30)

    async def forward(request: Request) -> Response:
        target = pick_target(request.url.path, rules)
        if target is None:
            return JSONResponse({"error": "not found"}, status_code=404)
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
        help="a files service role (upload, download) and its base URL",
    )
    args = parser.parse_args(argv)
    targets = dict(item.split("=", 1) for item in args.target)
    unknown = set(targets) - set(FILES_ROUTES.ALB_PATH_PATTERNS)
    if unknown or not targets:
        parser.error(f"--target ROLE=URL with ROLE in {sorted(FILES_ROUTES.ALB_PATH_PATTERNS)}")
    uvicorn.run(make_app(targets), host=LOCALHOST, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
