"""The local API Gateway stand-in: JWT checks like the authorizer, payload 2.0 events, responses."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from motion_common.auth import TokenVerifier

from components.mailing.cors import MailApiCors, mail_api_cors
from devstack.apigw import GatewayCors, LocalHttpApi, cors_argument, gateway_claims, make_app, parse_cors
from devstack.identity import Issuer
from tests.browser_cors import cors_check, preflight_grants, preflight_request


class Recorder:
    """A handler that records its events and answers whatever the test tells it to."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.contexts: list[Any] = []
        self.answer: Callable[[dict[str, Any]], Any] = lambda event: {"statusCode": 204, "body": ""}

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.events.append(event)
        self.contexts.append(context)
        return self.answer(event)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def gateway(recorder: Recorder, verifier: TokenVerifier) -> Iterator[httpx.Client]:
    with (
        LocalHttpApi(make_app(recorder, verifier)) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        yield client


def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    "make_header",
    [
        lambda issuer: None,
        lambda issuer: "Basic dXNlcjpwdw==",
        lambda issuer: "Bearer not-a-jwt",
        lambda issuer: "Bearer " + Issuer().mint("user_alice"),  # signed by a key the JWKS does not hold
        lambda issuer: "Bearer " + issuer.mint("user_alice", ttl_seconds=-60),  # expired
        lambda issuer: "Bearer " + issuer.mint("user_alice", aud="someone-else"),
        lambda issuer: (
            "Bearer "
            + Issuer(issuer="https://evil.example", kid=issuer.kid, private_key=issuer.private_key).mint(
                "user_alice"
            )
        ),
    ],
    ids=["missing", "not-bearer", "malformed", "unknown-key", "expired", "wrong-audience", "wrong-issuer"],
)
def test_requests_without_a_valid_token_get_401_and_never_reach_the_handler(
    gateway: httpx.Client, recorder: Recorder, issuer: Issuer, make_header: Callable[[Issuer], str | None]
) -> None:
    header = make_header(issuer)
    headers = {"authorization": header} if header else {}
    for method in ("GET", "POST"):
        response = gateway.request(method, "/mail/messages", headers=headers, json={"x": 1})
        assert response.status_code == 401
        assert response.json() == {"message": "Unauthorized"}
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert recorder.events == []


def test_unknown_routes_are_404_before_any_auth(
    gateway: httpx.Client, recorder: Recorder, issuer: Issuer
) -> None:
    assert gateway.get("/mail/other").status_code == 404
    assert gateway.delete("/mail/messages", headers=auth(issuer.mint("user_alice"))).status_code == 404
    assert recorder.events == []


def test_an_authorized_request_becomes_a_payload_2_event(
    gateway: httpx.Client, recorder: Recorder, issuer: Issuer
) -> None:
    token = issuer.mint("user_alice", ["p1", "p2"], email="alice@example.org", scope="mail:send mail:read")
    response = gateway.post(
        "/mail/messages?limit=5&tag=a&tag=b",
        content=json.dumps({"subject": "Grüße"}).encode(),
        headers={**auth(token), "content-type": "application/json", "X-Trace": "t-1", "cookie": "theme=dark"},
    )
    assert response.status_code == 204

    [event] = recorder.events
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /mail/messages" == event["requestContext"]["routeKey"]
    assert event["rawPath"] == "/mail/messages"
    assert event["rawQueryString"] == "limit=5&tag=a&tag=b"
    assert event["queryStringParameters"] == {"limit": "5", "tag": "a,b"}
    assert event["headers"]["x-trace"] == "t-1" and "cookie" not in event["headers"]
    assert event["cookies"] == ["theme=dark"]
    assert json.loads(event["body"]) == {"subject": "Grüße"} and event["isBase64Encoded"] is False
    assert event["requestContext"]["http"]["method"] == "POST"
    jwt = event["requestContext"]["authorizer"]["jwt"]
    assert jwt["claims"]["sub"] == "user_alice"
    assert jwt["claims"]["email"] == "alice@example.org"
    assert jwt["claims"]["projects"] == "[p1 p2]"
    assert jwt["claims"]["exp"].isdigit()
    assert jwt["scopes"] == ["mail:send", "mail:read"]
    assert 0 < recorder.contexts[0].get_remaining_time_in_millis() <= 30_000


def test_binary_bodies_are_base64_encoded(gateway: httpx.Client, recorder: Recorder, issuer: Issuer) -> None:
    gateway.post("/mail/messages", content=b"\xff\xfe\x00", headers=auth(issuer.mint("user_alice")))
    [event] = recorder.events
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\xff\xfe\x00"


def test_handler_responses_become_http_responses(
    gateway: httpx.Client, recorder: Recorder, issuer: Issuer
) -> None:
    headers = auth(issuer.mint("user_alice"))
    recorder.answer = lambda event: {
        "statusCode": 201,
        "headers": {"content-type": "text/plain", "x-message-id": "m-1"},
        "body": base64.b64encode(b"created").decode(),
        "isBase64Encoded": True,
        "cookies": ["seen=1"],
    }
    created = gateway.post("/mail/messages", headers=headers)
    assert (created.status_code, created.content, created.headers["x-message-id"]) == (201, b"created", "m-1")
    assert created.headers["set-cookie"] == "seen=1"

    recorder.answer = lambda event: {"bare": ["json"]}
    bare = gateway.get("/mail/messages", headers=headers)
    assert (bare.status_code, bare.json()) == (200, {"bare": ["json"]})

    def explode(event: dict[str, Any]) -> Any:
        raise RuntimeError("bug")

    recorder.answer = explode
    failed = gateway.get("/mail/messages", headers=headers)
    assert (failed.status_code, failed.json()) == (500, {"message": "Internal Server Error"})


def test_claims_are_strings_like_api_gateway_passes_them() -> None:
    assert gateway_claims({"sub": "u", "exp": 17, "admin": True, "groups": ["a", "b"], "org": {"id": 1}}) == {
        "sub": "u",
        "exp": "17",
        "admin": "true",
        "groups": "[a b]",
        "org": '{"id": 1}',
    }


APP = "https://app.example"
LOCAL = "http://localhost:5173"
# What the frontend sends with POST /mail/messages: its token, a JSON body and a retry key.
SEND_HEADERS = {"authorization": "Bearer t", "content-type": "application/json", "idempotency-key": "k-1"}


@pytest.fixture
def cors_gateway(recorder: Recorder, verifier: TokenVerifier) -> Iterator[httpx.Client]:
    """The stand-in started with the program's own CORS configuration for two origins."""
    with (
        LocalHttpApi(make_app(recorder, verifier, cors=mail_api_cors((APP, LOCAL)))) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        yield client


def preflight(client: httpx.Client, origin: str, method: str, headers: dict[str, str]) -> bool:
    answer = client.options("/mail/messages", headers=preflight_request(origin, method, headers))
    return preflight_grants(answer, origin, method, headers)


def test_preflights_are_answered_by_the_gateway_before_routes_and_authorization(
    cors_gateway: httpx.Client, recorder: Recorder
) -> None:
    sent = preflight_request(APP, "POST", SEND_HEADERS)
    assert sent["Access-Control-Request-Headers"] == "authorization,content-type,idempotency-key"
    answer = cors_gateway.options("/mail/messages", headers=sent)
    assert preflight_grants(answer, APP, "POST", SEND_HEADERS)
    assert answer.headers["access-control-max-age"] == "600"
    assert preflight(cors_gateway, LOCAL, "GET", {"authorization": "Bearer t"})
    # No OPTIONS route exists and no token was sent: the gateway alone answered.
    assert recorder.events == []


@pytest.mark.parametrize(
    ("origin", "method", "headers"),
    [
        (APP, "POST", {**SEND_HEADERS, "x-unread": "1"}),  # a header the API does not read
        ("https://evil.example", "POST", SEND_HEADERS),
        (f"{APP}:8443", "POST", SEND_HEADERS),  # another origin, though the same host
        (APP, "DELETE", {"authorization": "Bearer t"}),
    ],
    ids=["unread-header", "other-origin", "other-port", "other-method"],
)
def test_preflights_outside_the_configuration_are_not_granted(
    cors_gateway: httpx.Client, recorder: Recorder, origin: str, method: str, headers: dict[str, str]
) -> None:
    assert not preflight(cors_gateway, origin, method, headers)
    assert recorder.events == []


def test_an_options_request_that_is_no_preflight_goes_to_the_routes(
    cors_gateway: httpx.Client, recorder: Recorder
) -> None:
    # Without Access-Control-Request-Method it is not a preflight (AWS: both headers are needed).
    assert cors_gateway.options("/mail/messages", headers={"Origin": APP}).status_code == 404
    assert recorder.events == []


def test_integration_responses_carry_the_gateways_cors_headers_only(
    cors_gateway: httpx.Client, recorder: Recorder, issuer: Issuer
) -> None:
    recorder.answer = lambda event: {
        "statusCode": 202,
        "headers": {"access-control-allow-origin": "*", "access-control-expose-headers": "x-secret"},
        "body": "{}",
    }
    headers = {**SEND_HEADERS, "authorization": f"Bearer {issuer.mint('user_alice')}"}
    allowed = cors_gateway.post("/mail/messages", headers={**headers, "Origin": APP})
    assert allowed.status_code == 202 and cors_check(allowed, APP)
    assert allowed.headers["access-control-allow-origin"] == APP
    assert "access-control-expose-headers" not in allowed.headers
    refused = cors_gateway.post("/mail/messages", headers={**headers, "Origin": "https://evil.example"})
    assert refused.status_code == 202 and not cors_check(refused, "https://evil.example")


def test_the_cors_argument_round_trips_and_wildcards_are_refused() -> None:
    config = mail_api_cors((APP, LOCAL))
    assert parse_cors(cors_argument(config)) == config
    with pytest.raises(ValueError, match="allow_headers"):
        GatewayCors(
            MailApiCors(allow_origins=(APP,), allow_methods=("GET",), allow_headers=("*",), max_age=1)
        )
