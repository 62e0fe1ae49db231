"""The shared token verifier, against a real JWKS served over HTTP."""

from __future__ import annotations

import time

import jwt
import pytest
from motion_common.auth import AuthError, TokenVerifier

from devstack.identity import Issuer


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
