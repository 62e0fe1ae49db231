"""Request handlers. Each checks the token, validates input, checks permission, then acts.

Errors are raised as ApiError and rendered by app.py as {"error": code, "message": reason}; a
client's mistake is always a 4xx with the reason, and an unreachable dependency a 503.
"""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
from motion_common.auth import AuthError, Identity, TokenVerifier
from starlette.requests import Request
from starlette.responses import Response

from files_service.db import Database
from files_service.names import (
    PROJECT_ID_RE,
    USER_ID_RE,
    UUID_RE,
    content_disposition,
    content_type_allowed,
    normalize_content_type,
    sanitize_file_name,
)
from files_service.openapi import MAX_LIST_LIMIT
from files_service.routes import OBJECT_KEY_PREFIX
from files_service.settings import Settings
from files_service.signer import S3Signer
from files_service.storage import PENDING_TAGGING, ObjectStore, StorageUnavailable

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
MAX_RAW_FILE_NAME_CHARS = 1024
DEFAULT_LIST_LIMIT = 50


class ApiError(Exception):
    CODES = {
        400: "bad_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        409: "conflict",
        413: "payload_too_large",
        500: "internal_error",
        503: "unavailable",
    }

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    code = ApiError.CODES.get(status, "error")
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def file_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "project_id": row["project_id"],
        "owner_id": row["owner_id"],
        "file_name": row["file_name"],
        "content_type": row["content_type"],
        "size_bytes": row["size_bytes"],
        "status": row["status"],
        "created_at": _iso(row["created_at"]),
        "completed_at": _iso(row["completed_at"]),
    }


def share_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "file_id": str(row["file_id"]),
        "user_id": row["user_id"],
        "granted_by": row["granted_by"],
        "expires_at": _iso(row["expires_at"]),
        "created_at": _iso(row["created_at"]),
    }


def _file_id(request: Request) -> uuid.UUID:
    raw = request.path_params["file_id"]
    if not UUID_RE.fullmatch(raw):
        raise ApiError(400, "file_id must be a UUID like 123e4567-e89b-12d3-a456-426614174000")
    return uuid.UUID(raw)


def _user_id(request: Request) -> str:
    raw = request.path_params["user_id"]
    if not USER_ID_RE.fullmatch(raw):
        raise ApiError(400, "user_id must be 1-128 characters of letters, digits and _.@:|-")
    return str(raw)


def _project_id(value: object, where: str = "project_id") -> str:
    if not isinstance(value, str) or not PROJECT_ID_RE.fullmatch(value):
        raise ApiError(400, f"{where} must be 1-128 characters of letters, digits, _ and -")
    return value


def _encode_cursor(row: asyncpg.Record) -> str:
    raw = f"{row['created_at'].isoformat()}|{row['id']}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, file_id = raw.partition("|")
        created_at = datetime.fromisoformat(created)
        if created_at.tzinfo is None or not UUID_RE.fullmatch(file_id):
            raise ValueError(cursor)
        return created_at, uuid.UUID(file_id)
    except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError) as err:
        raise ApiError(400, "cursor is not one this service returned") from err


def _check_fields(data: dict[str, Any], required: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(required))
    if unknown:
        raise ApiError(400, "unknown field(s): " + ", ".join(repr(k)[:64] for k in unknown[:5]))
    missing = [name for name in required if name not in data]
    if missing:
        raise ApiError(400, "missing field(s): " + ", ".join(missing))


async def _json_object(request: Request) -> dict[str, Any]:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
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


class FilesApi:
    """The handlers; `start` supplies the dependencies once the app's lifespan has opened them."""

    db: Database
    signer: S3Signer
    storage: ObjectStore | None
    verifier: TokenVerifier

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ttl = settings.presign_ttl_seconds
        self._ttl_delta = timedelta(seconds=self.ttl)

    def start(
        self, db: Database, signer: S3Signer, storage: ObjectStore | None, verifier: TokenVerifier
    ) -> None:
        self.db = db
        self.signer = signer
        self.storage = storage
        self.verifier = verifier

    def _identity(self, request: Request) -> Identity:
        try:
            return self.verifier.verify_header(request.headers.get("authorization"))
        except AuthError as err:
            raise ApiError(401, str(err), {"WWW-Authenticate": 'Bearer error="invalid_token"'}) from err

    async def _owned_file(self, request: Request) -> tuple[Identity, asyncpg.Record]:
        identity = self._identity(request)
        file_id = _file_id(request)
        row = await self.db.get_file(file_id)
        if row is None:
            raise ApiError(404, "no such file")
        if row["owner_id"] != identity.user_id:
            raise ApiError(403, "only the file's owner may do this")
        return identity, row

    # --- download role -------------------------------------------------------------------------

    async def download_file(self, request: Request) -> Response:
        identity = self._identity(request)
        file_id = _file_id(request)
        row = await self.db.download_info(file_id, identity.user_id)
        if row is None:
            raise ApiError(404, "no such file")
        if not (
            row["owner_id"] == identity.user_id or row["project_id"] in identity.projects or row["shared"]
        ):
            raise ApiError(403, "you may not download this file")
        if row["status"] != "available":
            raise ApiError(409, "the file's upload has not been completed")
        now = datetime.now(UTC)
        url = self.signer.presign_get(
            row["object_key"],
            self.ttl,
            {"response-content-disposition": content_disposition(row["file_name"])},
            now,
        )
        return JSONResponse(
            {
                "url": url,
                "method": "GET",
                "expires_at": _iso(now + self._ttl_delta),
                "file_name": row["file_name"],
                "content_type": row["content_type"],
                "size_bytes": row["size_bytes"],
            },
            headers={"Cache-Control": "no-store"},
        )

    download_file_post = download_file

    async def get_file(self, request: Request) -> Response:
        identity = self._identity(request)
        file_id = _file_id(request)
        row = await self.db.get_file(file_id)
        if row is None:
            raise ApiError(404, "no such file")
        allowed = (
            row["owner_id"] == identity.user_id
            or row["project_id"] in identity.projects
            or await self.db.has_share(file_id, identity.user_id)
        )
        if not allowed:
            raise ApiError(403, "you may not see this file")
        return JSONResponse(file_json(row))

    async def list_project_files(self, request: Request) -> Response:
        identity = self._identity(request)
        project_id = _project_id(request.path_params["project_id"])
        limit_raw = request.query_params.get("limit")
        limit = DEFAULT_LIST_LIMIT
        if limit_raw is not None:
            if not limit_raw.isdigit() or not 1 <= int(limit_raw) <= MAX_LIST_LIMIT:
                raise ApiError(400, f"limit must be an integer from 1 to {MAX_LIST_LIMIT}")
            limit = int(limit_raw)
        cursor = request.query_params.get("cursor")
        after = _decode_cursor(cursor) if cursor else None
        if not identity.member_of(project_id):
            raise ApiError(403, "you are not a member of this project")
        rows = await self.db.list_project_files(project_id, limit + 1, after)
        next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
        return JSONResponse({"files": [file_json(r) for r in rows[:limit]], "next_cursor": next_cursor})

    async def list_shares(self, request: Request) -> Response:
        _, row = await self._owned_file(request)
        shares = await self.db.list_shares(row["id"])
        return JSONResponse({"shares": [share_json(s) for s in shares]})

    async def share_file(self, request: Request) -> Response:
        identity = self._identity(request)
        file_id = _file_id(request)
        user_id = _user_id(request)
        data = await _json_object(request)
        _check_fields(data, ("expires_at",))
        expires_at = self._future_time(data["expires_at"])
        row = await self.db.get_file(file_id)
        if row is None:
            raise ApiError(404, "no such file")
        if row["owner_id"] != identity.user_id:
            raise ApiError(403, "only the file's owner may share it")
        share = await self.db.upsert_share(file_id, user_id, identity.user_id, expires_at)
        if share is None:
            raise ApiError(404, "no such file")
        return JSONResponse(share_json(share))

    @staticmethod
    def _future_time(value: object) -> datetime:
        if not isinstance(value, str) or len(value) > 64:
            raise ApiError(400, "expires_at must be an ISO 8601 date-time string with a time zone")
        try:
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                raise ApiError(400, "expires_at must include a time zone, e.g. 2030-01-01T00:00:00Z")
            parsed = parsed.astimezone(UTC)
        except (ValueError, OverflowError) as err:
            raise ApiError(400, f"expires_at is not an ISO 8601 date-time: {value!r}") from err
        if parsed <= datetime.now(UTC):
            raise ApiError(400, "expires_at must be in the future")
        return parsed

    async def revoke_share(self, request: Request) -> Response:
        _, row = await self._owned_file(request)
        user_id = _user_id(request)
        if not await self.db.delete_share(row["id"], user_id):
            raise ApiError(404, "this user has no share of the file")
        return Response(status_code=204)

    # --- upload role ---------------------------------------------------------------------------

    async def request_upload(self, request: Request) -> Response:
        identity = self._identity(request)
        data = await _json_object(request)
        _check_fields(data, ("project_id", "file_name", "content_type", "size_bytes"))
        project_id = _project_id(data["project_id"])
        raw_name = data["file_name"]
        if not isinstance(raw_name, str) or not 1 <= len(raw_name) <= MAX_RAW_FILE_NAME_CHARS:
            raise ApiError(400, f"file_name must be a string of 1-{MAX_RAW_FILE_NAME_CHARS} characters")
        try:
            file_name = sanitize_file_name(raw_name)
        except ValueError as err:
            raise ApiError(400, str(err)) from err
        raw_type = data["content_type"]
        if not isinstance(raw_type, str):
            raise ApiError(400, "content_type must be a string")
        try:
            content_type = normalize_content_type(raw_type)
        except ValueError as err:
            raise ApiError(400, str(err)) from err
        if not content_type_allowed(content_type, self.settings.allowed_content_types):
            raise ApiError(400, f"content type {content_type!r} is not allowed")
        size = data["size_bytes"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ApiError(400, "size_bytes must be a positive integer")
        if size > self.settings.max_upload_bytes:
            raise ApiError(400, f"size_bytes exceeds the maximum of {self.settings.max_upload_bytes} bytes")
        if not identity.member_of(project_id):
            raise ApiError(403, "you are not a member of this project")
        file_id = uuid.uuid4()
        object_key = f"{OBJECT_KEY_PREFIX}{project_id}/{file_id}"
        row = await self.db.create_pending(
            file_id, project_id, identity.user_id, object_key, file_name, content_type, size
        )
        # The object is created tagged as pending, so that the bucket's lifecycle rule removes it if
        # the upload is never completed; completion removes the tag.
        post = self.signer.presign_post(
            object_key, content_type, size, size, self.ttl, tagging=PENDING_TAGGING
        )
        return JSONResponse(
            {
                "file": file_json(row),
                "upload": {
                    "method": "POST",
                    "url": post.url,
                    "fields": post.fields,
                    "expires_at": _iso(post.expires_at),
                },
            },
            status_code=201,
            headers={"Cache-Control": "no-store"},
        )

    async def complete_upload(self, request: Request) -> Response:
        _, row = await self._owned_file(request)
        storage = self._storage()
        if row["status"] == "available":
            # A retried completion (e.g. after a lost response) succeeds again. The upload form may
            # have been posted again since (it stays valid for its TTL), which tags the object as
            # pending anew; removing the tag again is cheap, and only best effort here.
            try:
                await storage.remove_tags(row["object_key"])
            except StorageUnavailable as err:
                log.warning("could not remove the pending tag of %s: %s", row["object_key"], err)
            return JSONResponse({"file": file_json(row)})
        info = await storage.head(row["object_key"])
        if info is None:
            raise ApiError(409, "the object has not been uploaded yet")
        problems = []
        if info.size != row["size_bytes"]:
            problems.append(f"size is {info.size} bytes, declared {row['size_bytes']}")
        try:
            actual_type = normalize_content_type(info.content_type)
        except ValueError:
            actual_type = info.content_type
        if actual_type != row["content_type"]:
            problems.append(f"content type is {info.content_type[:100]!r}, declared {row['content_type']!r}")
        if problems:
            # S3 enforces the POST policy; this catches what slipped past it. Removing the object lets
            # the client upload again with the same form while it is valid.
            await storage.delete(row["object_key"])
            raise ApiError(409, "the uploaded object does not match the declaration: " + "; ".join(problems))
        # Tag first, row second: an available file's object must never carry the pending tag, or
        # the bucket's lifecycle rule would expire it. If this fails (StorageUnavailable: 503) the
        # row stays pending and the client retries the completion.
        if not await storage.remove_tags(row["object_key"]):
            raise ApiError(409, "the object has not been uploaded yet")
        completed = await self.db.mark_available(row["id"])
        if completed is None:
            completed = await self.db.get_file(row["id"])
            if completed is None:
                raise ApiError(404, "no such file")
        return JSONResponse({"file": file_json(completed)})

    async def delete_file(self, request: Request) -> Response:
        _, row = await self._owned_file(request)
        # Object first: if the row went first and the object delete failed, nothing would point
        # at the orphan any more. A failure here leaves both, and the client can retry.
        await self._storage().delete(row["object_key"])
        await self.db.delete_file(row["id"])
        return Response(status_code=204)

    def _storage(self) -> ObjectStore:
        if self.storage is None:
            raise AssertionError("upload routes are only mounted when the role has object storage")
        return self.storage
