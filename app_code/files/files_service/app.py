"""The Starlette application: routes for the configured role, error rendering, start-up and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from motion_common.auth import TokenVerifier
from motion_common.logs import request_context, request_id_from
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from files_service import metric_names
from files_service.api import FilesApi
from files_service.cleanup import sweep_forever
from files_service.db import Database, DatabaseUnavailable
from files_service.openapi import build_openapi
from files_service.responses import ApiError, JSONResponse, error_response
from files_service.routes import LIVENESS_PATH, OPENAPI_PATH, READINESS_PATH, REQUEST_HEADERS, routes_for
from files_service.settings import Settings
from files_service.signer import S3Signer, botocore_credentials
from files_service.storage import ObjectStore, StorageForbidden, StorageUnavailable

log = logging.getLogger(__name__)
access = logging.getLogger("files_service.access")
# Health checks come every few seconds from the ALB and ECS: not worth a line each.
QUIET_PATHS = frozenset({LIVENESS_PATH, READINESS_PATH})
SLOW_REQUEST_SECONDS = 1.0

# Refreshing task-role credentials may block on the credentials endpoint, so it happens here, in a
# worker thread, well before the signer (on the event loop) would have to refresh them itself.
CREDENTIALS_REFRESH_SECONDS = 60.0
HEALTH_TIMEOUT_SECONDS = 2.0


def create_app(settings: Settings) -> Starlette:
    api = FilesApi(settings)
    openapi_body = orjson.dumps(build_openapi(settings))

    async def openapi(request: Request) -> Response:
        return Response(openapi_body, media_type="application/json")

    async def liveness(request: Request) -> Response:
        # The event loop answers: nothing a restart could fix is wrong. Dependencies are readiness's.
        return JSONResponse({"status": "alive", "role": settings.role})

    async def database_check() -> str | None:
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
                await api.db.ping()
        except (DatabaseUnavailable, TimeoutError) as err:
            return f"PostgreSQL unavailable: {type(err).__name__}"
        return None

    async def storage_check(storage: ObjectStore) -> str | None:
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
                return await storage.check_bucket()
        except TimeoutError:
            return "S3 did not answer in time"

    async def readiness(request: Request) -> Response:
        # Every dependency a request of this role needs, checked concurrently, each bounded. The
        # download role signs URLs and never calls S3 itself, so only the upload role checks it.
        probes: dict[str, Awaitable[str | None]] = {"database": database_check()}
        if api.storage is not None:
            probes["storage"] = storage_check(api.storage)
        found = await asyncio.gather(*probes.values())
        checks = {name: problem or "ok" for name, problem in zip(probes, found, strict=True)}
        ready = not any(found)
        body = {"status": "ready" if ready else "not ready", "role": settings.role, "checks": checks}
        return JSONResponse(body, status_code=200 if ready else 503)

    routes = [
        Route(spec.path, getattr(api, spec.operation), methods=[spec.method])
        for spec in routes_for(settings.role)
    ]
    routes += [
        Route(LIVENESS_PATH, liveness, methods=["GET"]),
        Route(READINESS_PATH, readiness, methods=["GET"]),
        Route(OPENAPI_PATH, openapi, methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        credentials, refresh = await asyncio.to_thread(botocore_credentials)
        signer = S3Signer(settings.bucket, settings.region, credentials, settings.s3_endpoint_url)
        storage = None
        if settings.role in ("upload", "all"):
            storage = await asyncio.to_thread(
                ObjectStore, settings.bucket, settings.region, settings.s3_endpoint_url
            )
        verifier = TokenVerifier(settings.auth_jwks_url, settings.auth_issuer, settings.auth_audience)
        db = await Database.connect(settings.database, application_name=f"files-{settings.role}")
        api.start(db, signer, storage, verifier)
        background = [asyncio.create_task(_refresh_credentials(refresh))]
        if storage is not None:
            background.append(asyncio.create_task(sweep_forever(db, storage)))
        api.metrics.start()
        log.info("files service (%s) ready", settings.role)
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await db.close()
            # The last interval's metrics, before the task stops.
            await asyncio.to_thread(api.metrics.stop)

    # Outermost: every line logged for a request, CORS answers included, carries its id.
    middleware = [Middleware(RequestIds)]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST", "PUT", "DELETE"],
                allow_headers=list(REQUEST_HEADERS),
                # A frontend on another origin may read the id to quote it in a report.
                expose_headers=["X-Request-Id"],
                max_age=600,
            )
        )
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            DatabaseUnavailable: _unavailable,
            StorageUnavailable: _unavailable,
            StorageForbidden: _storage_forbidden,
            Exception: _internal_error,
        },
    )
    app.state.metrics = api.metrics
    return app


class RequestIds:
    """Runs each request in the context of its id (`motion_common.logs`): the ALB's trace id when
    there is one, and answers it in `X-Request-Id` so a client's report can name it. Plain ASGI:
    one context variable and one header per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        trace = next((v for k, v in scope["headers"] if k == b"x-amzn-trace-id"), None)
        request_id = request_id_from(trace.decode("latin-1") if trace is not None else None)
        header = (b"x-request-id", request_id.encode())
        status = 500  # what the server answers if the app fails before starting a response

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        started_response = False

        async def send_tracked(message: Message) -> None:
            nonlocal started_response
            started_response = started_response or message["type"] == "http.response.start"
            await send_with_id(message)

        with request_context(request_id):
            try:
                await self.app(scope, receive, send_tracked)
            except Exception:
                # Starlette hands an unhandled error to its outermost middleware, outside this one:
                # answered here instead, so the 500 carries its id and the error line names it.
                if started_response:
                    raise
                log.error("unhandled error on %s %s", scope["method"], scope["path"], exc_info=True)
                await error_response(500, "internal error")(scope, receive, send_with_id)
            finally:
                # A line for each refused, failed or slow request (no query string: cursors are
                # opaque, not for logs), so Logs Insights finds it by its id and counts answers by
                # status. Not for every success: that line would cost ~8 % of a download URL's CPU
                # (README, Performance), and the ALB's access log already has each one, trace id
                # included.
                duration = time.monotonic() - started
                if (status >= 400 or duration >= SLOW_REQUEST_SECONDS) and scope["path"] not in QUIET_PATHS:
                    access.log(
                        logging.WARNING if status >= 500 else logging.INFO,
                        "request",
                        extra={
                            "method": scope["method"],
                            "path": scope["path"],
                            "status": status,
                            "duration_ms": round(duration * 1000, 2),
                        },
                    )


async def _refresh_credentials(refresh: Callable[[], None]) -> None:
    while True:
        await asyncio.sleep(CREDENTIALS_REFRESH_SECONDS)
        try:
            await asyncio.to_thread(refresh)
        except Exception:
            log.exception("refreshing AWS credentials failed; will retry")


def _handler(
    fn: Callable[[Request, Exception], Response],
) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handle(request: Request, exc: Exception) -> Response:
        return fn(request, exc)

    return handle


@_handler
def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if exc.status in (401, 403):
        request.app.state.metrics.count(metric_names.DENIALS)
    return error_response(exc.status, exc.message, exc.headers)


@_handler
def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))


@_handler
def _unavailable(request: Request, exc: Exception) -> Response:
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return error_response(
        503, "a backing service is temporarily unavailable; retry shortly", {"Retry-After": "1"}
    )


@_handler
def _storage_forbidden(request: Request, exc: Exception) -> Response:
    # S3 refused the service's own request, and not as its way of saying "missing" (storage.py
    # checks that): a permission the task role lacks (components/files/files.py) or bad credentials. Not
    # the client's mistake, and no retry helps until the deployment is fixed, so a 500, logged as an
    # error (the ALB's 5XX alarm sees it). The refused call changed nothing, and every handler makes
    # its S3 call before its database write, so the file stays as it was and the client can retry.
    log.error("S3 refused the service on %s %s: %s", request.method, request.url.path, exc)
    return error_response(
        500, "the file store refused this service's request; nothing was changed, retry later"
    )


@_handler
def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal error")
