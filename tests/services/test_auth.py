"""The shared token verifier, against a real JWKS served over HTTP."""

from __future__ import annotations

import time

import jwt
import pytest
from motion_common.auth import AuthError, TokenVerifier

from devstack.identity import Issuer
from devstack.servers import LOCALHOST


@pytest.fixture
def verifier(issuer: Issuer, jwks_url: str) -> TokenVerifier:
    return TokenVerifier(jwks_url=jwks_url, issuer=issuer.issuer, audience=issuer.audience)


def test_valid_token_gives_user_and_projects(verifier: TokenVerifier, issuer: Issuer) -> None:
    identity = verifier.verify_header("Bearer " + issuer.mint("user_1", ["p1", "p2"]))
    assert identity.user_id == "user_1"
    assert identity.projects == frozenset({"p1", "p2"})
    assert identity.member_of("p1") and not identity.member_of("p3")


def test_cached_token_still_expires(verifier: TokenVerifier, issuer: Issuer) -> None:
    token = issuer.mint("user_1", ["p1"], ttl_seconds=1)
    verifier.verify(token)
    time.sleep(1.0 + 5.2)  # past expiry plus the verifier's leeway
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(token)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("Basic abc", "Bearer"),
        ("Bearer not-a-jwt", "malformed"),
    ],
)
def test_bad_headers(verifier: TokenVerifier, header: str | None, reason: str) -> None:
    with pytest.raises(AuthError, match=reason):
        verifier.verify_header(header)


def test_wrong_issuer_audience_key_and_algorithm(verifier: TokenVerifier, issuer: Issuer) -> None:
    with pytest.raises(AuthError, match="invalid token"):
        verifier.verify(issuer.mint("u", iss="https://evil.example"))
    with pytest.raises(AuthError, match="invalid token"):
        verifier.verify(issuer.mint("u", aud="someone-else"))
    other = Issuer(issuer=issuer.issuer, kid=issuer.kid)  # same kid, different key
    with pytest.raises(AuthError, match="invalid token"):
        verifier.verify(other.mint("u"))
    hs = jwt.encode({"sub": "u", "iss": issuer.issuer, "exp": time.time() + 60}, "s" * 32, algorithm="HS256")
    with pytest.raises(AuthError, match="RS256"):
        verifier.verify(hs)
    now = int(time.time())
    bad_projects = jwt.encode(
        {
            "sub": "u",
            "iss": issuer.issuer,
            "aud": issuer.audience,
            "iat": now,
            "exp": now + 60,
            "projects": "p1",
        },
        issuer.private_key,
        algorithm="RS256",
        headers={"kid": issuer.kid},
    )
    with pytest.raises(AuthError, match="projects"):
        verifier.verify(bad_projects)


class RawHttp:
    """A server on 127.0.0.1 that answers every connection with `answer`, bytes as they are."""

    def __init__(self) -> None:
        import socket
        import threading

        self.answer = b""
        self._sock = socket.create_server((LOCALHOST, 0))
        self.url = f"http://{LOCALHOST}:{self._sock.getsockname()[1]}/.well-known/jwks.json"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(self.answer)

    def close(self) -> None:
        self._sock.close()


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%b" % (
        len(body),
        body,
    )


GARBLED = {
    "not HTTP": b"garbage\r\n\r\n",
    "closed without an answer": b"",
    "truncated body": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{",
    "header line too long": b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000 + b"\r\n\r\n{}",
    "server error": b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
    "not JSON": ok(b"<html>"),
    "not UTF-8": ok(b"\xff\xfe{}"),
    "a JSON array": ok(b"[1, 2]"),
    "keys not a list": ok(b'{"keys": "k"}'),
    "a key that is no RSA key": ok(
        b'{"keys": [{"kty": "RSA", "kid": "k", "n": "!!", "e": 5}, 7, {"kid": 1}]}'
    ),
    "over a MiB": ok(b'{"keys": [], "pad": "' + b"a" * (1 << 20) + b'"}'),
}


@pytest.mark.parametrize("answer", sorted(GARBLED))
def test_a_garbled_jwks_answer_is_an_auth_error_not_a_crash(issuer: Issuer, answer: str) -> None:
    server = RawHttp()
    try:
        server.answer = GARBLED[answer]
        verifier = TokenVerifier(jwks_url=server.url, issuer=issuer.issuer, audience=issuer.audience)
        with pytest.raises(AuthError):
            verifier.verify(issuer.mint("user_1", ["p1"]))
    finally:
        server.close()


def test_the_keys_survive_a_broken_answer_and_a_valid_one_replaces_them(issuer: Issuer) -> None:
    import json

    from motion_common.auth import JwksKeys

    server = RawHttp()
    try:
        server.answer = ok(json.dumps(issuer.jwks()).encode())
        keys = JwksKeys(server.url, min_refresh_seconds=0)
        assert keys.get(issuer.kid) is not None
        for answer in GARBLED.values():
            server.answer = answer
            with pytest.raises(AuthError):
                keys.get("rotated-in")  # an unknown kid: a refetch, which fails
            assert keys.get(issuer.kid) is not None  # what we had is kept
        rotated = Issuer(issuer=issuer.issuer)
        server.answer = ok(json.dumps(rotated.jwks()).encode())
        assert keys.get(rotated.kid) is not None
        with pytest.raises(AuthError):
            keys.get(issuer.kid)  # a valid set without it: the key was retired
    finally:
        server.close()
