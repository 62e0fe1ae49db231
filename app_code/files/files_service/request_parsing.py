"""Turning a request's path parameters, query cursor and JSON body into checked values, raising a
400 (or 413) ApiError that says what was expected, before a handler touches the database."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
from starlette.requests import Request

from files_service.names import PROJECT_ID_RE, USER_ID_RE, UUID_RE
from files_service.responses import ApiError

MAX_BODY_BYTES = 16 * 1024


def path_file_id(request: Request) -> uuid.UUID:
    raw = request.path_params["file_id"]
    if not UUID_RE.fullmatch(raw):
        raise ApiError(400, "file_id must be a UUID like 123e4567-e89b-12d3-a456-426614174000")
    return uuid.UUID(raw)


def path_user_id(request: Request) -> str:
    raw = request.path_params["user_id"]
    if not USER_ID_RE.fullmatch(raw):
        raise ApiError(400, "user_id must be 1-128 characters of letters, digits and _.@:|-")
    return str(raw)


def checked_project_id(value: object, where: str = "project_id") -> str:
    if not isinstance(value, str) or not PROJECT_ID_RE.fullmatch(value):
        raise ApiError(400, f"{where} must be 1-128 characters of letters, digits, _ and -")
    return value


def encode_cursor(row: asyncpg.Record) -> str:
    created_at: datetime = row["created_at"].astimezone(UTC)
    raw = f"{created_at.isoformat()}|{row['id']}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# What encode_cursor writes: unpadded URL-safe base64 of "<UTC ISO time>|<UUID>", well under this.
MAX_CURSOR_CHARS = 128
_CURSOR_RE = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_CURSOR_CHARS}}}")
CURSOR_ERROR = "cursor is not one this service returned"


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Only exactly what encode_cursor writes is accepted: anything else (another time zone, a date
    PostgreSQL or Python cannot take, a non-canonical UUID, stray bytes) would otherwise reach the
    query and fail there as a 500."""
    if not _CURSOR_RE.fullmatch(cursor):
        raise ApiError(400, CURSOR_ERROR)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        created, _, file_id = raw.partition("|")
        created_at = datetime.fromisoformat(created)
        valid = (
            created_at.utcoffset() == timedelta(0)
            and created_at.isoformat() == created
            and UUID_RE.fullmatch(file_id) is not None
            and str(uuid.UUID(file_id)) == file_id
        )
    except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError, TypeError) as err:
        raise ApiError(400, CURSOR_ERROR) from err
    if not valid:
        raise ApiError(400, CURSOR_ERROR)
    return created_at, uuid.UUID(file_id)


def parse_limit(raw: str | None, default: int, maximum: int) -> int:
    """A page size: ASCII digits only (str.isdigit also takes '²' and other digits int() refuses)."""
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4 and 1 <= int(raw) <= maximum):
        raise ApiError(400, f"limit must be an integer from 1 to {maximum}")
    return int(raw)


def check_fields(data: dict[str, Any], required: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(required))
    if unknown:
        raise ApiError(400, "unknown field(s): " + ", ".join(repr(k)[:64] for k in unknown[:5]))
    missing = [name for name in required if name not in data]
    if missing:
        raise ApiError(400, "missing field(s): " + ", ".join(missing))


async def read_json_object(request: Request) -> dict[str, Any]:
    length = request.headers.get("content-length")
    if length is not None and length.isascii() and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise ApiError(413, f"request body must be at most {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, f"request body must be at most {MAX_BODY_BYTES} bytes")
    if not body:
        raise ApiError(400, "request body must be a JSON object")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise ApiError(400, f"request body is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    return data


def parse_expires_at(value: object, max_days: int) -> datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise ApiError(400, "expires_at must be an ISO 8601 date-time string with a time zone")
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ApiError(400, "expires_at must include a time zone, e.g. 2030-01-01T00:00:00Z")
        parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError) as err:
        raise ApiError(400, f"expires_at is not an ISO 8601 date-time: {value!r}") from err
    now = datetime.now(UTC)
    if parsed <= now:
        raise ApiError(400, "expires_at must be in the future")
    if parsed > now + timedelta(days=max_days):
        raise ApiError(400, f"expires_at must be at most {max_days} days from now")
    return parsed
