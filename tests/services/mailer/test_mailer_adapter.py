"""The local API Gateway stand-in: JWT checks like the authorizer, payload 2.0 events, responses."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from motion_common.auth import TokenVerifier

from devstack.apigw import LocalHttpApi, gateway_claims, make_app
from devstack.identity import Issuer


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
