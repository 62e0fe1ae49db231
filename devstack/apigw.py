"""A stand-in for the mail API's API Gateway HTTP API and JWT authorizer, on 127.0.0.1.

It does what the cloud does in front of `mailer.api.handler`, so the handler runs unchanged:
- only configured routes exist (others: 404 `{"message":"Not Found"}`, before any auth);
- the bearer token is verified like the JWT authorizer does (signature from the JWKS URL, issuer,
  audience, expiry); on failure: 401 `{"message":"Unauthorized"}` and the handler is not called;
- the request becomes a payload format 2.0 event, with the token's claims in
  `requestContext.authorizer.jwt.claims` (as strings, the way API Gateway passes them);
- the handler's response (statusCode/headers/body/isBase64Encoded, or a bare JSON value) becomes
  the HTTP response; an exception becomes a 500 `{"message":"Internal Server Error"}`;
- routes configured without an authorizer (the Clerk webhook route, `PUBLIC_ROUTES`) go to their
  own handler with no token check at all: that handler authenticates the request (Svix signature);
- with a CORS configuration (the program's own, `components.mailing.cors.mail_api_cors`), CORS is
  the gateway's business as in the cloud (`GatewayCors`): it answers preflights itself, before
  routes and authorization, and sets the CORS headers of the handler's responses.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import jwt
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from components.facts import MAILER
from components.mailing.cors import MailApiCors
from devstack.servers import LOCALHOST, ServerError, free_port, wait_until
from devstack.service_imports import import_services
from devstack.sqs_poller import LambdaContext

if TYPE_CHECKING:
    from motion_common.auth import TokenVerifier

Handler = Callable[[dict[str, Any], Any], Any]
MAIL_ROUTES = MAILER.api_routes
# The route the program deploys with `authorization_type = NONE`, to its own function, as the
# mailer states it (app_code/mailer/mailer/__init__.py).
WEBHOOK_ROUTE = MAILER.webhook_route
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
_log = logging.getLogger("devstack.apigw")


def gateway_claims(claims: dict[str, Any]) -> dict[str, str]:
    """Claims the way an HTTP API JWT authorizer hands them over: every value a string.

    Lists become "[a b c]", numbers and booleans their JSON text, objects their JSON.
    """
    converted: dict[str, str] = {}
    for name, value in claims.items():
        if isinstance(value, str):
            converted[name] = value
        elif isinstance(value, list):
            converted[name] = "[" + " ".join(v if isinstance(v, str) else json.dumps(v) for v in value) + "]"
        else:
            converted[name] = json.dumps(value)
    return converted


def _scopes(claims: dict[str, Any]) -> list[str] | None:
    scope = claims.get("scope") or claims.get("scp")
    if isinstance(scope, str):
        return scope.split() or None
    if isinstance(scope, list):
        return [str(s) for s in scope] or None
    return None


async def build_event(request: Request, route_key: str, claims: dict[str, Any]) -> dict[str, Any]:
    """The payload format 2.0 event API Gateway would send for this request."""
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        # API Gateway joins repeated headers with commas and moves cookies to their own list.
        if name == "cookie":
            continue
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    query: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        query[name] = f"{query[name]},{value}" if name in query else value
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": request.url.path,
        "rawQueryString": request.url.query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": request.url.hostname or LOCALHOST,
            "domainPrefix": (request.url.hostname or LOCALHOST).split(".")[0],
            "http": {
                "method": request.method,
                "path": request.url.path,
                "protocol": f"HTTP/{request.scope.get('http_version', '1.1')}",
                "sourceIp": request.client.host if request.client else LOCALHOST,
                "userAgent": request.headers.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
            "authorizer": {"jwt": {"claims": gateway_claims(claims), "scopes": _scopes(claims)}},
        },
        "isBase64Encoded": False,
    }
    if request.cookies:
        event["cookies"] = [f"{k}={v}" for k, v in request.cookies.items()]
    if query:
        event["queryStringParameters"] = query
    raw = await request.body()
    if raw:
        try:
            event["body"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            event["body"] = base64.b64encode(raw).decode()
            event["isBase64Encoded"] = True
    return event


def to_response(result: Any) -> Response:
    """Turn the handler's return value into HTTP, as API Gateway does for payload 2.0."""
    if not (isinstance(result, dict) and "statusCode" in result):
        # A bare value means 200 with that value as JSON.
        return JSONResponse(result, status_code=200)
    body = result.get("body") or ""
    content = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    response = Response(content=content, status_code=int(result["statusCode"]))
    for name, value in (result.get("headers") or {}).items():
        response.headers[name] = str(value)
    for cookie in result.get("cookies") or []:
        response.headers.append("set-cookie", cookie)
    return response


def _unauthorized(reason: str) -> JSONResponse:
    description = reason.replace('"', "'")
    return JSONResponse(
        {"message": "Unauthorized"},
        status_code=401,
        headers={"www-authenticate": f'Bearer error="invalid_token", error_description="{description}"'},
    )


def _names(value: str | None) -> list[str]:
    """A comma-separated header value's items (`Access-Control-Request-Headers`)."""
    return [item.strip() for item in (value or "").split(",") if item.strip()]


class GatewayCors:
    """What API Gateway does with an HTTP API's CORS configuration, from AWS's "Configuring CORS for
    an HTTP API" (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-cors.html):

    - "API Gateway automatically sends a response to preflight OPTIONS requests, even if there isn't
      an OPTIONS route configured": answered here, before route matching and the authorizer;
    - "For the OPTIONS method, your request must contain an origin header and an
      Access-Control-Request-Method header": only such a request is a preflight; any other OPTIONS
      request goes to the routes like every method (and, having none, gets 404);
    - "To return CORS headers, your request must contain an origin header"; "API Gateway adds the
      configured CORS headers to the response from an integration" and "ignores CORS headers
      returned from your backend integration": the handler's own `access-control-*` are dropped.

    A preflight is granted when its origin is one of `allow_origins`, its method one of
    `allow_methods` and every requested header one of `allow_headers` (header names compare
    case-insensitively, as HTTP names do). The page does not say what API Gateway answers a
    preflight it does not grant; this stand-in answers 204 with no CORS header at all, which a
    browser refuses like any answer lacking the grant (Fetch standard, CORS-preflight fetch and CORS
    check). Wildcards (`*`) are refused at start: the program declares none, and their exact
    semantics here would be guesswork.
    """

    def __init__(self, config: MailApiCors) -> None:
        wildcards = [
            name for name, values in asdict(config).items() if isinstance(values, tuple) and "*" in values
        ]
        if wildcards:
            raise ValueError(f"CORS wildcards are not implemented by the stand-in: {', '.join(wildcards)}")
        self.config = config
        self._origins = frozenset(config.allow_origins)
        self._methods = frozenset(config.allow_methods)
        self._headers = frozenset(h.lower() for h in config.allow_headers)

    @staticmethod
    def is_preflight(request: Request) -> bool:
        headers = request.headers
        return (
            request.method == "OPTIONS" and "origin" in headers and "access-control-request-method" in headers
        )

    def preflight(self, request: Request) -> Response:
        origin = request.headers["origin"]
        method = request.headers["access-control-request-method"]
        asked = [name.lower() for name in _names(request.headers.get("access-control-request-headers"))]
        granted = (
            origin in self._origins and method in self._methods and all(h in self._headers for h in asked)
        )
        if not granted:
            return Response(status_code=204)
        return Response(
            status_code=204,
            headers={
                "access-control-allow-origin": origin,
                "access-control-allow-methods": ",".join(self.config.allow_methods),
                "access-control-allow-headers": ",".join(self.config.allow_headers),
                "access-control-max-age": str(self.config.max_age),
            },
        )

    def decorate(self, request: Request, response: Response) -> Response:
        """The CORS headers of an integration's response: the gateway's, never the handler's."""
        for name in [n for n in response.headers if n.lower().startswith("access-control-")]:
            del response.headers[name]
        origin = request.headers.get("origin")
        if origin is not None and origin in self._origins:
            response.headers["access-control-allow-origin"] = origin
        return response


def make_app(
    handler: Handler,
    verifier: TokenVerifier,
    *,
    routes: Iterable[str] = MAIL_ROUTES,
    function_name: str = "mail-api",
    function_timeout: float = 30.0,
    cors: MailApiCors | None = None,
    public: dict[str, Handler] | None = None,
) -> Starlette:
    """An ASGI app that authorizes and forwards `routes` ("METHOD /path") to `handler`, handling
    CORS as API Gateway does when `cors` is given (without it, as an API with no CORS config)."""
    import_services()
    from motion_common.auth import AuthError

    route_keys = frozenset(routes)
    public_routes = dict(public or {})
    gateway_cors = GatewayCors(cors) if cors is not None else None

    async def invoke(target: Handler, event: dict[str, Any]) -> Response:
        context = LambdaContext(function_name=function_name, timeout_seconds=function_timeout)
        try:
            result = await run_in_threadpool(target, event, context)
        except Exception:
            _log.exception("handler raised")
            return JSONResponse({"message": "Internal Server Error"}, status_code=500)
        return to_response(result)

    async def endpoint(request: Request) -> Response:
        if gateway_cors is not None and gateway_cors.is_preflight(request):
            return gateway_cors.preflight(request)
        route_key = f"{request.method} {request.url.path}"
        if route_key in public_routes:
            # No authorizer on this route, as deployed; no CORS either (servers call it, not browsers).
            return await invoke(public_routes[route_key], await build_event(request, route_key, {}))
        if route_key not in route_keys:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        authorization = request.headers.get("authorization")
        try:
            verifier.verify_header(authorization)
        except AuthError as err:
            return _unauthorized(str(err))
        assert authorization is not None  # verify_header refuses a missing header
        token = authorization.partition(" ")[2].strip()
        # Verified just above; this only reads the claims out for the event.
        claims = jwt.decode(token, options={"verify_signature": False})
        event = await build_event(request, route_key, claims)
        response = await invoke(handler, event)
        return gateway_cors.decorate(request, response) if gateway_cors is not None else response

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=_METHODS)])


class LocalHttpApi:
    """Serves an app with uvicorn on 127.0.0.1 in a background thread (tests, `make run`)."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(app, host=LOCALHOST, port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="local-http-api", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def start(self) -> LocalHttpApi:
        self._thread.start()
        try:
            wait_until(lambda: bool(self._server.started), 10, f"local HTTP API on port {self.port}")
        except ServerError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def __enter__(self) -> LocalHttpApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cors_argument(config: MailApiCors) -> str:
    return json.dumps(asdict(config))


def parse_cors(text: str) -> MailApiCors:
    fields = json.loads(text)
    return MailApiCors(
        allow_origins=tuple(fields["allow_origins"]),
        allow_methods=tuple(fields["allow_methods"]),
        allow_headers=tuple(fields["allow_headers"]),
        max_age=int(fields["max_age"]),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Serve mailer.api.handler behind a local JWT-authorizing gateway, and the Clerk "
        "webhook route (mailer.webhook.handler) without the authorizer."
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8083")))
    parser.add_argument("--issuer", default=os.environ.get("AUTH_ISSUER"), help="default: $AUTH_ISSUER")
    parser.add_argument("--jwks-url", default=os.environ.get("AUTH_JWKS_URL"), help="default: $AUTH_JWKS_URL")
    parser.add_argument("--audience", default=os.environ.get("AUTH_AUDIENCE") or None)
    parser.add_argument(
        "--cors",
        type=parse_cors,
        default=None,
        help="the HTTP API's CORS configuration as JSON (fields of MailApiCors); default: no CORS",
    )
    args = parser.parse_args(argv)
    if not args.issuer or not args.jwks_url:
        parser.error("--issuer and --jwks-url (or AUTH_ISSUER and AUTH_JWKS_URL) are required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)

    import_services()
    from mailer import api, webhook
    from motion_common.auth import TokenVerifier

    verifier = TokenVerifier(jwks_url=args.jwks_url, issuer=args.issuer, audience=args.audience)
    app = make_app(api.handler, verifier, cors=args.cors, public={WEBHOOK_ROUTE: webhook.handler})
    uvicorn.run(app, host=LOCALHOST, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
