"""The download role's handlers: download URLs (the hot path), file metadata, project listings, and
the owner's management of shares."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from files_service import metric_names
from files_service.handler_base import LEFT_PROJECT, HandlerBase
from files_service.names import content_disposition
from files_service.openapi import MAX_LIST_LIMIT
from files_service.request_parsing import (
    check_fields,
    checked_project_id,
    decode_cursor,
    encode_cursor,
    parse_expires_at,
    parse_limit,
    path_file_id,
    path_user_id,
    read_json_object,
)
from files_service.responses import ApiError, JSONResponse, file_json, iso_time, share_json

DEFAULT_LIST_LIMIT = 50


class DownloadHandlers(HandlerBase):
    async def download_file(self, request: Request) -> Response:
        identity = self._identity(request)
        file_id = path_file_id(request)
        row = await self.db.download_info(file_id, identity.user_id)
        if row is None:
            raise ApiError(404, "no such file")
        # Membership now, or an unexpired share; being the owner alone is not enough (see handler_base).
        if not (identity.member_of(row["project_id"]) or row["shared"]):
            raise ApiError(403, "you may not download this file")
        if row["status"] != "available":
            raise ApiError(409, "the file's upload has not been completed")
        now = datetime.now(UTC)
        # The copy completion made, which no upload form can overwrite; files completed before it
        # existed have none, and their forms expired long ago.
        url = self.signer.presign_get(
            row["stored_key"] or row["object_key"],
            self.ttl,
            {"response-content-disposition": content_disposition(row["file_name"])},
            now,
        )
        self.metrics.count(metric_names.DOWNLOAD_URLS_SIGNED)
        return JSONResponse(
            {
                "url": url,
                "method": "GET",
                "expires_at": iso_time(now + self._ttl_delta),
                "file_name": row["file_name"],
                "content_type": row["content_type"],
                "size_bytes": row["size_bytes"],
            },
            headers={"Cache-Control": "no-store"},
        )

    download_file_post = download_file

    async def get_file(self, request: Request) -> Response:
        identity = self._identity(request)
        file_id = path_file_id(request)
        row = await self.db.get_file(file_id)
        if row is None:
            raise ApiError(404, "no such file")
        allowed = identity.member_of(row["project_id"]) or await self.db.has_share(file_id, identity.user_id)
        if not allowed:
            raise ApiError(403, "you may not see this file")
        return JSONResponse(file_json(row))

    async def list_project_files(self, request: Request) -> Response:
        identity = self._identity(request)
        project_id = checked_project_id(request.path_params["project_id"])
        limit = parse_limit(request.query_params.get("limit"), DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)
        cursor = request.query_params.get("cursor")
        after = decode_cursor(cursor) if cursor else None
        if not identity.member_of(project_id):
            raise ApiError(403, "you are not a member of this project")
        rows = await self.db.list_project_files(project_id, limit + 1, after)
        next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
        return JSONResponse({"files": [file_json(r) for r in rows[:limit]], "next_cursor": next_cursor})

    # Any current member may see and revoke a file's shares, not only its owner: the service cannot
    # tell that an owner has left (membership is only in the caller's own token), so a leaver's
    # shares would otherwise keep working with nobody able to end them.
    async def list_shares(self, request: Request) -> Response:
        _, row = await self._member_file(request)
        shares = await self.db.list_shares(row["id"])
        return JSONResponse({"shares": [share_json(s) for s in shares]})

    async def share_file(self, request: Request) -> Response:
        identity = self._identity(request)
        file_id = path_file_id(request)
        user_id = path_user_id(request)
        data = await read_json_object(request)
        check_fields(data, ("expires_at",))
        expires_at = parse_expires_at(data["expires_at"], self.settings.max_share_days)
        row = await self.db.get_file(file_id)
        if row is None:
            raise ApiError(404, "no such file")
        if row["owner_id"] != identity.user_id:
            raise ApiError(403, "only the file's owner may share it")
        if not identity.member_of(row["project_id"]):
            raise ApiError(403, LEFT_PROJECT)
        share = await self.db.upsert_share(file_id, user_id, identity.user_id, expires_at)
        if share is None:
            raise ApiError(404, "no such file")
        return JSONResponse(share_json(share))

    async def revoke_share(self, request: Request) -> Response:
        _, row = await self._member_file(request)
        user_id = path_user_id(request)
        if not await self.db.delete_share(row["id"], user_id):
            raise ApiError(404, "this user has no share of the file")
        return Response(status_code=204)
