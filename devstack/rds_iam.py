"""A local stand-in for RDS IAM database authentication, so the files services log in locally exactly
as they do in the cloud: TLS, then an IAM authentication token as the password, checked per login.

Local PostgreSQL cannot check an IAM token, so this proxy sits in front of it. For each client it
answers PostgreSQL's SSLRequest with TLS (the local CA's server certificate, so clients verify it as
they verify RDS), asks for a cleartext password as RDS does for IAM users, and verifies that
password as RDS verifies a token (Amazon RDS User Guide, "IAM database authentication" and
"Connecting to your DB instance using IAM authentication"): a SigV4-presigned `GET /?Action=connect
&DBUser=<user>` for service `rds-db` and this endpoint's host:port, signed by credentials it knows,
unexpired (X-Amz-Expires, at most 900 s), for the user logging in. Only then does it log in to
PostgreSQL over the Unix socket as that user (which pg_hba trusts there and nowhere else; the role
has no password, so a direct TCP login fails), and, as RDS does, admits the login only if the role
is a member of `rds_iam` ("Creating a database account using IAM authentication"); then it relays
bytes both ways. Cancel requests are forwarded as they are.

`check_token` is the verification alone, with no I/O, so it is tested against tokens botocore
generates (the library the services use) and against forged, expired and misdirected ones.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging
import ssl
import struct
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

_SSL_REQUEST = 80877103
_CANCEL_REQUEST = 80877102
_GSSENC_REQUEST = 80877104
_PROTOCOL_3 = 196608
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_EXPIRES_SECONDS = 900
# Clock skew SigV4 tolerates between signer and verifier.
_SKEW = dt.timedelta(minutes=5)


class TokenRejected(ValueError):
    """Why a token does not let its bearer log in."""


@dataclass(frozen=True)
class AcceptedToken:
    access_key: str
    user: str


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="-_.~")


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def check_token(
    token: str,
    *,
    endpoint: str,
    user: str,
    region: str,
    secrets: Mapping[str, tuple[str, str | None]],
    now: dt.datetime | None = None,
) -> AcceptedToken:
    """Verify an RDS IAM authentication token for `user` at `endpoint` ("host:port"), signed by one
    of `secrets` ({access key id: (secret access key, session token)}); raise TokenRejected saying
    why not."""
    host, sep, query = token.partition("/?")
    if not sep or host != endpoint:
        raise TokenRejected(f"token is not for {endpoint}")
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError as err:
        raise TokenRejected("token is not a query string") from err
    params = dict(pairs)
    if len(params) != len(pairs):
        raise TokenRejected("token repeats a parameter")
    if params.get("Action") != "connect" or params.get("DBUser") != user:
        raise TokenRejected(f"token does not allow connecting as {user}")
    if params.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256" or params.get("X-Amz-SignedHeaders") != "host":
        raise TokenRejected("token is not SigV4 query-signed over the host header")
    access_key, _, scope = params.get("X-Amz-Credential", "").partition("/")
    date, _, rest = scope.partition("/")
    if rest != f"{region}/rds-db/aws4_request":
        raise TokenRejected(f"token is not scoped to rds-db in {region}")
    known = secrets.get(access_key)
    if known is None:
        raise TokenRejected("token is signed with unknown or revoked credentials")
    secret, session_token = known
    if params.get("X-Amz-Security-Token") != session_token:
        raise TokenRejected("token's session token does not belong to its access key")
    try:
        signed_at = dt.datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        expires = int(params["X-Amz-Expires"])
    except (KeyError, ValueError) as err:
        raise TokenRejected("token has no valid date or expiry") from err
    if not 1 <= expires <= MAX_EXPIRES_SECONDS or signed_at.strftime("%Y%m%d") != date:
        raise TokenRejected("token's expiry or date is out of range")
    now = now or dt.datetime.now(dt.UTC)
    if now > signed_at + dt.timedelta(seconds=expires) or now < signed_at - _SKEW:
        raise TokenRejected("token has expired or is not valid yet")
    # SigV4 (AWS General Reference, "Create a signed AWS API request"): canonical request with every
    # query parameter but the signature, sorted and RFC 3986-encoded; the payload is empty.
    canonical_query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(pairs) if k != "X-Amz-Signature")
    canonical = "\n".join(["GET", "/", canonical_query, f"host:{endpoint}", "", "host", _EMPTY_SHA256])
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", params["X-Amz-Date"], scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret}".encode(), date), region), "rds-db"), "aws4_request")
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, params.get("X-Amz-Signature", "")):
        raise TokenRejected("token's signature does not match")
    return AcceptedToken(access_key, user)


def _error(message: str, code: str = "28P01") -> bytes:
    """A PostgreSQL ErrorResponse (FATAL), as RDS sends for a refused IAM login."""
    fields = b"SFATAL\0" + b"VFATAL\0" + f"C{code}\0".encode() + f"M{message}\0".encode() + b"\0"
    return b"E" + struct.pack("!I", len(fields) + 4) + fields


@dataclass
class RdsIamProxy:
    """Listens on 127.0.0.1:`port`; logs in to PostgreSQL through its Unix socket in `socket_dir`."""

    port: int
    socket_dir: Path
    upstream_port: int
    certfile: Path
    keyfile: Path
    region: str
    # {access key id: (secret, session token)}: what the local credentials endpoint handed out and
    # has not revoked.
    secrets: Callable[[], Mapping[str, tuple[str, str | None]]]
    host: str = "127.0.0.1"
    accepted: list[AcceptedToken] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> RdsIamProxy:
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._client, self.host, self.port)
                )
            except BaseException as err:  # reported to the starting thread
                failure.append(err)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=serve, name="rds-iam-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    @property
    def alive(self) -> bool:
        """Whether it still serves (`make run`'s supervisor watches it)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return

        async def close() -> None:
            server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> RdsIamProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._session(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError) as err:
            log.debug("client connection ended: %s", err)
        finally:
            writer.close()

    async def _startup(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        (length,) = struct.unpack("!I", await reader.readexactly(4))
        if not 8 <= length <= 10_000:
            raise ConnectionError("bad startup packet length")
        body = await reader.readexactly(length - 4)
        (code,) = struct.unpack("!I", body[:4])
        return code, body

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        code, body = await self._startup(reader)
        if code == _CANCEL_REQUEST:
            await self._forward_cancel(body)
            return
        if code == _GSSENC_REQUEST:
            writer.write(b"N")
            await writer.drain()
            code, body = await self._startup(reader)
        if code != _SSL_REQUEST:
            # RDS refuses IAM logins without TLS; so does this stand-in.
            writer.write(_error("IAM authentication requires an SSL connection"))
            await writer.drain()
            return
        writer.write(b"S")
        await writer.drain()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certfile, self.keyfile)
        await writer.start_tls(context)
        code, body = await self._startup(reader)
        if code != _PROTOCOL_3:
            writer.write(_error("unsupported protocol", "08P01"))
            await writer.drain()
            return
        parts = body[4:].split(b"\0")
        options = dict(zip(parts[0::2], parts[1::2], strict=False))
        user = options.get(b"user", b"").decode()
        # AuthenticationCleartextPassword: RDS asks IAM users for the token this way.
        writer.write(b"R" + struct.pack("!II", 8, 3))
        await writer.drain()
        kind = await reader.readexactly(1)
        (length,) = struct.unpack("!I", await reader.readexactly(4))
        if kind != b"p" or not 5 <= length <= 16_384:
            raise ConnectionError("expected a password message")
        token = (await reader.readexactly(length - 4)).rstrip(b"\0").decode(errors="replace")
        try:
            accepted = check_token(
                token, endpoint=self.endpoint, user=user, region=self.region, secrets=self.secrets()
            )
        except TokenRejected as err:
            self.refused.append(str(err))
            log.warning("refused IAM login as %s: %s", user, err)
            writer.write(_error(f'PAM authentication failed for user "{user}"'))
            await writer.drain()
            return
        upstream_reader, upstream_writer = await asyncio.open_unix_connection(
            str(self.socket_dir / f".s.PGSQL.{self.upstream_port}")
        )
        # The client's own startup packet: PostgreSQL answers AuthenticationOk (trust on the
        # socket) and the rest of the login, which the client gets as the answer to its token, but
        # only once the role is known to be granted rds_iam.
        upstream_writer.write(struct.pack("!I", len(body) + 4) + body)
        await upstream_writer.drain()
        login = await _until_ready(upstream_reader)
        if login is None:
            writer.write(_error(f'PAM authentication failed for user "{user}"'))
            await writer.drain()
            upstream_writer.close()
            return
        query = b"SELECT pg_has_role(current_user, 'rds_iam', 'MEMBER')\0"
        upstream_writer.write(b"Q" + struct.pack("!I", len(query) + 4) + query)
        await upstream_writer.drain()
        answer = await _until_ready(upstream_reader)
        if answer is None or not _first_value_is_true(answer):
            self.refused.append(f"{user} is not granted rds_iam")
            log.warning("refused IAM login as %s: not granted rds_iam", user)
            writer.write(_error(f'PAM authentication failed for user "{user}"'))
            await writer.drain()
            upstream_writer.close()
            return
        self.accepted.append(accepted)
        writer.write(login)
        await writer.drain()
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    async def _forward_cancel(self, body: bytes) -> None:
        _, writer = await asyncio.open_unix_connection(
            str(self.socket_dir / f".s.PGSQL.{self.upstream_port}")
        )
        writer.write(struct.pack("!I", len(body) + 4) + body)
        await writer.drain()
        writer.close()


async def _until_ready(reader: asyncio.StreamReader) -> bytes | None:
    """PostgreSQL's messages up to and including ReadyForQuery, or None after an ErrorResponse."""
    messages = b""
    while True:
        kind = await reader.readexactly(1)
        header = await reader.readexactly(4)
        (length,) = struct.unpack("!I", header)
        payload = await reader.readexactly(length - 4)
        if kind == b"E":
            return None
        messages += kind + header + payload
        if kind == b"Z":
            return messages


def _first_value_is_true(messages: bytes) -> bool:
    """Whether the first DataRow among `messages` holds the text value 't'."""
    offset = 0
    while offset < len(messages):
        kind = messages[offset : offset + 1]
        (length,) = struct.unpack("!I", messages[offset + 1 : offset + 5])
        if kind == b"D":
            # Int16 column count, then Int32 length + bytes of the first column.
            (size,) = struct.unpack("!i", messages[offset + 7 : offset + 11])
            return size == 1 and messages[offset + 11 : offset + 12] == b"t"
        offset += 1 + length
    return False


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
