"""What the API sends back: JSON bodies (orjson), the resource representations, and errors.

Errors are raised as ApiError and rendered by app.py as {"error": code, "message": reason}; a
client's mistake is always a 4xx with the reason, and an unreachable dependency a 503.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from starlette.responses import Response


class ApiError(Exception):
    CODES = {
        400: "bad_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        409: "conflict",
        413: "payload_too_large",
        429: "too_many_requests",
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


def iso_time(value: datetime | None) -> str | None:
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
        "created_at": iso_time(row["created_at"]),
        "completed_at": iso_time(row["completed_at"]),
    }


def share_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "file_id": str(row["file_id"]),
        "user_id": row["user_id"],
        "granted_by": row["granted_by"],
        "expires_at": iso_time(row["expires_at"]),
        "created_at": iso_time(row["created_at"]),
    }
