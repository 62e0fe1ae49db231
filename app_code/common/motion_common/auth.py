"""Bearer-token verification shared by the files and chat services.

Clerk signs session tokens with RS256; the public keys come from the JWKS URL in config. `sub` is
the user id and the `projects` claim lists the projects the user belongs to.

Verifying an RS256 signature costs ~90 us, so verified tokens are cached (bounded, keyed by the
raw token, and never past the token's own expiry).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.algorithms import RSAAlgorithm

# A JWK Set of a few keys is a few KiB; a larger answer is not one.
MAX_JWKS_BYTES = 1 << 20


class AuthError(Exception):
    """The request carries no usable token; the message is safe to show the caller."""


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    projects: frozenset[str]
    expires_at: float

    def member_of(self, project_id: str) -> bool:
        return project_id in self.projects


class JwksKeys:
    """Public keys by `kid`, fetched from the JWKS URL and refetched (rate-limited) on an unknown kid."""

    def __init__(self, jwks_url: str, min_refresh_seconds: float = 30.0, timeout: float = 5.0) -> None:
        self._url = jwks_url
        self._min_refresh = min_refresh_seconds
        self._timeout = timeout
        self._keys: dict[str, Any] = {}
        self._fetched_at = 0.0
        self._lock = threading.Lock()

    def get(self, kid: str) -> Any:
        key = self._keys.get(kid)
        if key is not None:
            return key
        with self._lock:
            if kid not in self._keys and time.monotonic() - self._fetched_at >= self._min_refresh:
                self._refresh()
        key = self._keys.get(kid)
        if key is None:
            raise AuthError("token signed by an unknown key")
        return key

    def _refresh(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            with urllib.request.urlopen(self._url, timeout=self._timeout) as resp:  # noqa: S310 - URL from config
                body = resp.read(MAX_JWKS_BYTES + 1)
            if len(body) > MAX_JWKS_BYTES:
                raise ValueError(f"the JWKS answer is over {MAX_JWKS_BYTES} bytes")
            document = json.loads(body)
        # OSError: refused, reset, timed out, an HTTP error status (urllib's HTTPError); HTTPException:
        # an answer that is not HTTP (a garbled status line, a truncated body, over-long headers);
        # ValueError: a body that is not JSON (or not UTF-8).
        except (OSError, http.client.HTTPException, ValueError) as err:
            raise AuthError("signing keys are unavailable") from err
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            # Not a JWK Set (RFC 7517 section 5: an object whose "keys" is an array): keep the keys
            # we had rather than forget them for a broken answer.
            raise AuthError("signing keys are unavailable")
        keys = {}
        for jwk in entries:
            if not (isinstance(jwk, dict) and jwk.get("kty") == "RSA" and isinstance(jwk.get("kid"), str)):
                continue  # RFC 7517 section 5: members of a type we do not use are ignored
            try:
                keys[jwk["kid"]] = RSAAlgorithm.from_jwk(json.dumps(jwk))
            except (jwt.exceptions.InvalidKeyError, ValueError, KeyError, TypeError):
                continue  # a malformed key cannot verify anything; the others still can
        if not keys:
            # Clerk always publishes its current signing key: a set with none we can use is broken,
            # and forgetting the keys we had would refuse every session for it.
            raise AuthError("signing keys are unavailable")
        self._keys = keys


class TokenVerifier:
    def __init__(
        self,
        jwks_url: str,
        issuer: str,
        audience: str | None = None,
        cache_size: int = 10_000,
        leeway_seconds: float = 5.0,
    ) -> None:
        self._keys = JwksKeys(jwks_url)
        self._issuer = issuer
        self._audience = audience or None
        self._cache: OrderedDict[str, Identity] = OrderedDict()
        self._cache_size = cache_size
        self._leeway = leeway_seconds

    def verify_header(self, authorization: str | None) -> Identity:
        if not authorization:
            raise AuthError("missing bearer token")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthError("authorization must be 'Bearer <token>'")
        return self.verify(token.strip())

    def verify(self, token: str) -> Identity:
        now = time.time()
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at + self._leeway > now:
                return cached
            self._cache.pop(token, None)
            raise AuthError("token expired")
        identity = self._decode(token)
        self._cache[token] = identity
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return identity

    def _decode(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as err:
            raise AuthError("malformed token") from err
        if header.get("alg") != "RS256":
            raise AuthError("token must be signed with RS256")
        key = self._keys.get(str(header.get("kid", "")))
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=["RS256"],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "sub", "iss"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError as err:
            raise AuthError("token expired") from err
        except jwt.PyJWTError as err:
            raise AuthError(f"invalid token: {err}") from err
        projects = claims.get("projects", [])
        if not isinstance(projects, list) or not all(isinstance(p, str) for p in projects):
            raise AuthError("invalid token: 'projects' must be a list of project ids")
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub:
            raise AuthError("invalid token: 'sub' must be a user id")
        return Identity(user_id=sub, projects=frozenset(projects), expires_at=float(claims["exp"]))
