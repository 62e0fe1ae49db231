"""A stand-in for Clerk: an RSA key pair, its JWKS served over local HTTP, a token minter, and the
webhooks Clerk sends (through Svix) when users and memberships change.

Tokens carry what Clerk's do for us: `iss`, `sub`, `iat`, `exp`, `azp`, and a `projects` claim.
A Motion project is a Clerk organization: the `projects` claim lists organization ids, and joining
one is an `organizationMembership.created` webhook. `ClerkWebhooks.create_user` does what signing
up and joining projects does in Clerk: it delivers `user.created` and one membership event per
project, signed as Svix signs them, to the mail service's webhook route, which keeps the user
directory the mail API resolves recipients in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from devstack.servers import LOCALHOST

DEFAULT_AUDIENCE = "motion-local"


@dataclass
class Issuer:
    """Signs tokens like the identity provider does. `issuer` must match the services' AUTH_ISSUER."""

    issuer: str = "https://clerk.motion.local"
    audience: str = DEFAULT_AUDIENCE
    kid: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    private_key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.private_key.public_key()))
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}

    def mint(
        self,
        user_id: str,
        projects: list[str] | tuple[str, ...] = (),
        ttl_seconds: int = 3600,
        **extra: Any,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": user_id,
            "azp": "http://localhost:5173",
            "iat": now,
            "nbf": now - 1,
            "exp": now + ttl_seconds,
            "projects": list(projects),
        }
        claims.update(extra)
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": self.kid})

    def save(self, path: Path) -> None:
        """Persist the key so another process (`devstack.mint`) can mint tokens for the same backend."""
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.write_text(
            json.dumps(
                {
                    "issuer": self.issuer,
                    "audience": self.audience,
                    "kid": self.kid,
                    "pem": pem.decode(),
                }
            )
        )
        path.chmod(0o600)

    @classmethod
    def load(cls, path: Path) -> Issuer:
        data = json.loads(path.read_text())
        key = serialization.load_pem_private_key(data["pem"].encode(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return cls(issuer=data["issuer"], audience=data["audience"], kid=data["kid"], private_key=key)


class JwksServer:
    """Serves the issuer's JWKS at http://127.0.0.1:<port>/.well-known/jwks.json."""

    def __init__(self, issuer: Issuer, port: int = 0) -> None:
        body = json.dumps(issuer.jwks()).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/.well-known/jwks.json":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((LOCALHOST, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self._server.server_address[1]}/.well-known/jwks.json"

    def start(self) -> JwksServer:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        """Whether it still serves (`make run`'s supervisor watches it)."""
        return self._thread.is_alive()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> JwksServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def svix_signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed by the base64 after `whsec_`.

    Written here again rather than imported from the mailer, so the receiver is checked against
    an independent signer (https://docs.svix.com/receiving/verifying-payloads/how-manual).
    """
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclass
class ClerkWebhooks:
    """Delivers Clerk events to `url` the way Svix does (headers svix-id, svix-timestamp, svix-signature)."""

    url: str
    secret: str
    timeout: float = 10.0

    def deliver(self, event_type: str, data: dict[str, Any]) -> httpx.Response:
        body = json.dumps({"object": "event", "type": event_type, "data": data}).encode()
        delivery_id = f"msg_{uuid.uuid4().hex}"
        timestamp = str(int(time.time()))
        return httpx.post(
            self.url,
            content=body,
            headers={
                "content-type": "application/json",
                "svix-id": delivery_id,
                "svix-timestamp": timestamp,
                "svix-signature": svix_signature(self.secret, delivery_id, timestamp, body),
            },
            timeout=self.timeout,
        )

    def create_user(
        self, user_id: str, email: str, projects: list[str] | tuple[str, ...] = (), name: str | None = None
    ) -> None:
        """Sign-up and project memberships, as the webhooks Clerk sends for them; raises if refused."""
        first, _, last = (name or user_id).partition(" ")
        responses = [
            self.deliver(
                "user.created",
                {
                    "id": user_id,
                    "object": "user",
                    "first_name": first,
                    "last_name": last or None,
                    "primary_email_address_id": f"idn_{user_id}",
                    "email_addresses": [
                        {"id": f"idn_{user_id}", "object": "email_address", "email_address": email}
                    ],
                },
            )
        ]
        for project in projects:
            responses.append(
                self.deliver(
                    "organizationMembership.created",
                    {
                        "id": f"orgmem_{uuid.uuid4().hex[:12]}",
                        "object": "organization_membership",
                        "role": "org:member",
                        "organization": {"id": project, "object": "organization"},
                        "public_user_data": {"user_id": user_id, "identifier": email},
                    },
                )
            )
        for response in responses:
            response.raise_for_status()
