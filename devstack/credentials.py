"""A local stand-in for the ECS container credentials endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI):
the task role's temporary credentials, which the services' botocore refreshes before they expire,
and which `rotate()` replaces, as AWS does every few hours.

botocore's container provider refreshes credentials that expire within 15 minutes (advisory) and
must refresh within 10 (botocore credentials.py, RefreshableCredentials): handing out credentials
that expire in `lifetime` (12 minutes by default) makes every signature ask again, so a rotation is
picked up by the next token a service signs, as it would be after a real rotation.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATH = "/v2/credentials/motion-local"


@dataclass(frozen=True)
class IssuedCredentials:
    access_key: str
    secret_key: str
    session_token: str


def _issue() -> IssuedCredentials:
    return IssuedCredentials(
        "ASIA" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30), secrets.token_urlsafe(48)
    )


@dataclass
class CredentialsEndpoint:
    port: int
    host: str = "127.0.0.1"
    lifetime: dt.timedelta = dt.timedelta(minutes=12)
    current: IssuedCredentials = field(default_factory=_issue)
    served: int = 0
    _revoked: set[str] = field(default_factory=set)
    _history: list[IssuedCredentials] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{PATH}"

    def env(self) -> dict[str, str]:
        """What a process needs to take its AWS credentials from here (and from nowhere else)."""
        return {"AWS_CONTAINER_CREDENTIALS_FULL_URI": self.url}

    def rotate(self, *, revoke: bool = True) -> IssuedCredentials:
        """New credentials from now on; with `revoke`, the old ones stop working at once (stricter
        than AWS, where they stay valid until they expire)."""
        with self._lock:
            if revoke:
                self._revoked.add(self.current.access_key)
            self.current = _issue()
            return self.current

    def valid(self) -> dict[str, tuple[str, str | None]]:
        """{access key: (secret, session token)} of the credentials handed out and not revoked."""
        with self._lock:
            issued = [self.current, *self._history]
            return {
                c.access_key: (c.secret_key, c.session_token)
                for c in issued
                if c.access_key not in self._revoked
            }

    def _document(self) -> bytes:
        with self._lock:
            if self.current not in self._history:
                self._history.append(self.current)
            issued = self.current
            self.served += 1
        expiration = dt.datetime.now(dt.UTC) + self.lifetime
        return json.dumps(
            {
                "AccessKeyId": issued.access_key,
                "SecretAccessKey": issued.secret_key,
                "Token": issued.session_token,
                "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "RoleArn": "arn:aws:iam::000000000000:role/motion-local-task",
            }
        ).encode()

    def start(self) -> CredentialsEndpoint:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != PATH:
                    self.send_error(404)
                    return
                body = endpoint._document()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="credentials", daemon=True)
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        """Whether it still serves (`make run`'s supervisor watches it)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> CredentialsEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
