"""A local S3 that answers as real S3 does under a given grant: the moto server behind a small
HTTP proxy that applies the permission rules moto does not implement (it checks no IAM policy).

Every request goes to moto, and moto's own answer comes back unchanged, except where S3's answer
depends on the caller's permissions (what `Grants` says the task role holds):

- An object request on a key moto does not hold. HeadObject, "Permissions": "If the object you
  request doesn't exist, the error that Amazon S3 returns depends on whether you also have the
  s3:ListBucket permission. If you have the s3:ListBucket permission on the bucket, Amazon S3
  returns an HTTP status code 404 Not Found error. If you don't have the s3:ListBucket permission,
  Amazon S3 returns an HTTP status code 403 Forbidden error."
  (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html). Without
  `list_bucket_for_keys` the proxy answers 403, as S3 does: for a HEAD with no body ("The response is identical to the
  GET response except that there is no response body. Because of this, if the HEAD request
  generates an error, it returns a generic code, such as [...] 403 Forbidden", same page), for any
  other request with the REST error document of AccessDenied ("Content-Type: application/xml" and
  an XML error document as the body; AccessDenied is "Access Denied", 403 Forbidden: S3 API
  Reference, "Error responses", https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html).
  With it, a missing key is 404: moto's own answer, or NoSuchKey for DeleteObjectTagging, which moto
  5.x answers with a 500 there.
- A read (HEAD or GET) of any object without `read_objects` (s3:GetObject): 403, key present or not.
- A listing (ListObjects/ListObjectsV2) whose `prefix` does not start with one of `list_prefixes`
  when those are set (a `StringLike s3:prefix` condition; a listing without `prefix` has no such
  key, so the condition is false): 403 AccessDenied.

`requests` records what was answered (method, path and query, status, body length), so a test can
check that the service really saw the 403 it is about.
"""

from __future__ import annotations

import base64
import http.client
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from devstack.servers import LOCALHOST

# Hop-by-hop headers never cross a proxy (RFC 9110 7.6.1); lengths are set from the bytes sent.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
# Query parameters that make a request on a key an operation on one of the object's sub-resources
# rather than on its bytes (a plain GET or HEAD is what S3 authorizes as s3:GetObject).
_SUBRESOURCES = frozenset({"tagging", "acl", "attributes", "legal-hold", "retention", "torrent"})
_LISTING_PARAMETERS = frozenset(
    {
        "list-type",
        "prefix",
        "max-keys",
        "delimiter",
        "encoding-type",
        "continuation-token",
        "start-after",
        "marker",
        "fetch-owner",
    }
)


@dataclass
class Grants:
    """What the caller may do, in the terms S3's answers depend on. The default is the task role
    of components/files/files.py: GetObject on the objects, ListBucket on the bucket without a condition."""

    # s3:ListBucket on the bucket as S3 judges it for a request on a key (HEAD, GET,
    # DeleteObjectTagging): what decides between 404 and 403 for a missing key.
    list_bucket_for_keys: bool = True
    # Which listings are allowed: None any, else only those whose `prefix` starts with one of these
    # (a `StringLike s3:prefix` condition; a listing without `prefix` has no such key); () none.
    list_prefixes: tuple[str, ...] | None = None
    # s3:GetObject on the objects (HEAD and GET).
    read_objects: bool = True

    @classmethod
    def prefix_condition(cls, prefix: str = "uploads/") -> Grants:
        """ListBucket only under `StringLike s3:prefix <prefix>*`: listings of that prefix are
        allowed, and a request on a key, which carries no s3:prefix, is judged without ListBucket."""
        return cls(list_bucket_for_keys=False, list_prefixes=(prefix,))

    @classmethod
    def no_list_bucket(cls) -> Grants:
        return cls(list_bucket_for_keys=False, list_prefixes=())


@dataclass(frozen=True)
class Answered:
    method: str
    target: str
    status: int
    body_bytes: int


@dataclass
class PolicyProxy:
    """`with PolicyProxy(moto_endpoint) as proxy:` an S3 endpoint at `proxy.endpoint`."""

    upstream: str
    grants: Grants = field(default_factory=Grants)
    requests: list[Answered] = field(default_factory=list)
    # Called after each answer with (method, key): lets a test change the bucket between two calls.
    after: Callable[[str, str], None] | None = None

    def __post_init__(self) -> None:
        up = urlsplit(self.upstream)
        self._upstream = (up.hostname or LOCALHOST, up.port or 80)
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = ThreadingHTTPServer((LOCALHOST, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://{LOCALHOST}:{self._server.server_address[1]}"

    def env(self, moto_env: dict[str, str]) -> dict[str, str]:
        """A service's AWS environment, pointed at this proxy instead of moto."""
        return {**moto_env, "AWS_ENDPOINT_URL": self.endpoint}

    def answered(self, method: str, key: str) -> list[Answered]:
        return [
            a for a in self.requests if a.method == method and urlsplit(a.target).path.endswith("/" + key)
        ]

    def listed(self, prefix: str) -> list[Answered]:
        return [
            a
            for a in self.requests
            if a.method == "GET" and parse_qs(urlsplit(a.target).query).get("prefix") == [prefix]
        ]

    def reset(self) -> None:
        self.grants = Grants()
        self.requests.clear()
        self.after = None

    def __enter__(self) -> PolicyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def upstream_connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(*self._upstream, timeout=10)


class _Handler(BaseHTTPRequestHandler):
    owner: PolicyProxy
    # Keep-alive, as botocore's pooled connections expect.
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        body = self._body()
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        bucket, _, key = unquote(url.path).lstrip("/").partition("/")
        grants = self.owner.grants
        method = self.command

        if key and not query.keys() & {"uploadId", "partNumber"}:
            reads = method in ("GET", "HEAD")
            if reads and not query.keys() & _SUBRESOURCES and not grants.read_objects:
                self._refuse(bucket, key)
                return
            asks_about_key = reads or (method == "DELETE" and "tagging" in query)
            if asks_about_key and not self._exists(key):
                if not grants.list_bucket_for_keys:
                    self._refuse(bucket, key)
                    return
                if method == "DELETE":
                    self._error(404, "NoSuchKey", "The specified key does not exist.", bucket, key)
                    return
        elif not key and method == "GET" and not query.keys() - _LISTING_PARAMETERS:
            prefix = query.get("prefix", [None])[0]
            allowed = grants.list_prefixes is None or (
                prefix is not None and prefix.startswith(grants.list_prefixes)
            )
            if not allowed:
                self._refuse(bucket, "")
                return
        self._forward(body, key)

    def _exists(self, key: str) -> bool:
        conn = self.owner.upstream_connection()
        try:
            conn.request("HEAD", urlsplit(self.path).path, headers={"Host": self.headers.get("Host", "")})
            status = conn.getresponse().status
        finally:
            conn.close()
        return status != 404

    def _forward(self, body: bytes, key: str) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        conn = self.owner.upstream_connection()
        try:
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            out = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP]
            length = resp.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
        finally:
            conn.close()
        self._record(resp.status, 0 if self.command == "HEAD" else len(data), key)
        self.send_response(resp.status)
        for name, value in out:
            self.send_header(name, value)
        if length is not None:
            self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _refuse(self, bucket: str, key: str) -> None:
        self._error(403, "AccessDenied", "Access Denied", bucket, key)

    def _error(self, status: int, code: str, message: str, bucket: str, key: str) -> None:
        request_id = os.urandom(8).hex().upper()
        host_id = base64.b64encode(os.urandom(48)).decode()
        key_element = f"<Key>{key}</Key>" if code == "NoSuchKey" else ""
        document = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>{key_element}"
            f"<RequestId>{request_id}</RequestId><HostId>{host_id}</HostId></Error>"
        ).encode()
        # A HEAD's answer has no body, so no code: its status is all the caller learns.
        body = b"" if self.command == "HEAD" else document
        self._record(status, len(body), key)
        self.send_response(status)
        # The headers S3 returns with every answer (x-amz-request-id, x-amz-id-2: S3 User Guide,
        # "The REST error response"), and an error's Content-Type.
        self.send_header("x-amz-request-id", request_id)
        self.send_header("x-amz-id-2", host_id)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Server", "AmazonS3")
        if body:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _record(self, status: int, body_bytes: int, key: str) -> None:
        """Before the answer is written, so that a change `after` makes to the bucket is in place
        by the time the client can ask its next question, on whichever connection."""
        self.owner.requests.append(Answered(self.command, self.path, status, body_bytes))
        if self.owner.after is not None and key:
            self.owner.after(self.command, key)
