"""The JSON protocol spoken over the WebSocket (documented in app_code/chat/README.md).

Client frames are parsed into small request objects here; anything malformed raises
`ProtocolError`, which the session turns into an `error` message (never a crash, never a close).
Server events are encoded with orjson; a broadcast is encoded and framed once per instance.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import orjson

from chat_service.core.keys import is_key

#: Close codes (1xxx from RFC 6455, 4xxx ours; the reason text says more).
CLOSE_GOING_AWAY: Final = 1001
CLOSE_MESSAGE_TOO_BIG: Final = 1009
CLOSE_INTERNAL_ERROR: Final = 1011
CLOSE_SERVICE_RESTART: Final = 1012
CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_FORBIDDEN: Final = 4403
CLOSE_SLOW_CONSUMER: Final = 4408
CLOSE_RATE_LIMITED: Final = 4429

#: Subprotocol a browser offers (with `bearer.<token>`) to carry its token; the server selects it.
SUBPROTOCOL: Final = "motion-chat.v1"
BEARER_PROTOCOL_PREFIX: Final = "bearer."

MAX_PROJECT_CHARS: Final = 200
MAX_REF_CHARS: Final = 64
DEFAULT_HISTORY_LIMIT: Final = 50
MAX_HISTORY_LIMIT: Final = 100


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, ref: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


# Project names that would share a table partition with send claims (schema.CLAIM_PARTITION_PREFIX,
# kept equal by a test).
RESERVED_PROJECT_PREFIX: Final = "send#"
# A send's optional client id (a UUID fits): what makes a resend idempotent.
CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


@dataclass(frozen=True, slots=True)
class Send:
    ref: object
    project: str
    text: str
    # The client's own id for the message: a resend with the same id (after a lost ack, to any
    # instance) gets the stored message's ack instead of storing it again.
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class Join:
    ref: object
    project: str


@dataclass(frozen=True, slots=True)
class Leave:
    ref: object
    project: str


@dataclass(frozen=True, slots=True)
class History:
    ref: object
    project: str
    before: str | None
    after: str | None
    limit: int


@dataclass(frozen=True, slots=True)
class Ping:
    ref: object


@dataclass(frozen=True, slots=True)
class Auth:
    ref: object
    token: str


Request = Send | Join | Leave | History | Ping | Auth


def _ref(doc: dict[str, Any]) -> object:
    ref = doc.get("ref")
    if ref is None or (isinstance(ref, int) and not isinstance(ref, bool) and -(2**53) < ref < 2**53):
        return ref
    if isinstance(ref, str) and len(ref) <= MAX_REF_CHARS:
        return ref
    raise ProtocolError(
        "bad_request", f"'ref' must be a string of at most {MAX_REF_CHARS} characters or an integer"
    )


def _project(doc: dict[str, Any], ref: object) -> str:
    project = doc.get("project")
    if not isinstance(project, str) or not 0 < len(project) <= MAX_PROJECT_CHARS:
        raise ProtocolError("bad_request", "'project' must be a non-empty string", ref)
    if project.startswith(RESERVED_PROJECT_PREFIX):
        # The partitions of send claims (chat_service.schema): never a project's.
        raise ProtocolError("bad_request", f"'project' must not start with {RESERVED_PROJECT_PREFIX!r}", ref)
    return project


def _cursor(doc: dict[str, Any], name: str, ref: object) -> str | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not is_key(value):
        raise ProtocolError("bad_request", f"'{name}' must be a message id", ref)
    return value


def parse(payload: bytes | memoryview, max_text_bytes: int) -> Request:
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise ProtocolError("bad_json", "frame is not a JSON document (UTF-8)") from None
    if not isinstance(doc, dict):
        raise ProtocolError("bad_request", "frame must be a JSON object")
    ref = _ref(doc)
    kind = doc.get("type")
    if kind == "send":
        project = _project(doc, ref)
        text = doc.get("text")
        if not isinstance(text, str) or not text:
            raise ProtocolError("bad_request", "'text' must be a non-empty string", ref)
        # Most texts are ASCII, where the character count is the byte count; skip the encode then.
        size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        if size > max_text_bytes:
            raise ProtocolError("too_large", f"'text' is longer than {max_text_bytes} bytes", ref)
        client_id = doc.get("client_id")
        if client_id is not None and (not isinstance(client_id, str) or not CLIENT_ID.fullmatch(client_id)):
            raise ProtocolError("bad_request", "'client_id' must be 1 to 64 letters, digits or . _ : -", ref)
        return Send(ref, project, text, client_id)
    if kind == "join":
        return Join(ref, _project(doc, ref))
    if kind == "leave":
        return Leave(ref, _project(doc, ref))
    if kind == "history":
        project = _project(doc, ref)
        before = _cursor(doc, "before", ref)
        after = _cursor(doc, "after", ref)
        if before is not None and after is not None:
            raise ProtocolError("bad_request", "give 'before' or 'after', not both", ref)
        limit = doc.get("limit", DEFAULT_HISTORY_LIMIT)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_HISTORY_LIMIT:
            raise ProtocolError(
                "bad_request", f"'limit' must be an integer from 1 to {MAX_HISTORY_LIMIT}", ref
            )
        return History(ref, project, before, after, limit)
    if kind == "ping":
        return Ping(ref)
    if kind == "auth":
        token = doc.get("token")
        if not isinstance(token, str) or not token:
            raise ProtocolError("bad_request", "'token' must be a non-empty string", ref)
        return Auth(ref, token)
    raise ProtocolError("unknown_type", f"unknown message type {kind!r}", ref)


def encode(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)


def error(code: str, message: str, ref: object = None) -> bytes:
    event: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if ref is not None:
        event["ref"] = ref
    return orjson.dumps(event)


def text_frame(payload: bytes) -> bytes:
    """A complete unmasked, unfragmented WebSocket text frame (RFC 6455 5.2), as a server sends it.

    Built once per message and written to every recipient's socket as is.
    """
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return b"\x81\x7e" + size.to_bytes(2, "big") + payload
    return b"\x81\x7f" + size.to_bytes(8, "big") + payload
