"""The upload role's handlers: declaring an upload (a pre-signed POST), completing it once the object
is in the bucket, and deleting a file."""

from __future__ import annotations

import logging
import uuid

from starlette.requests import Request
from starlette.responses import Response

from files_service import metric_names
from files_service.db import ProjectFull, Quota, TooManyPending
from files_service.handler_base import HandlerBase
from files_service.names import content_type_allowed, normalize_content_type, sanitize_file_name
from files_service.request_parsing import check_fields, checked_project_id, read_json_object
from files_service.responses import ApiError, JSONResponse, file_json, iso_time
from files_service.routes import OBJECT_KEY_PREFIX, stored_key
from files_service.storage import PENDING_TAGGING, ObjectStore, StorageError, StorageForbidden

log = logging.getLogger(__name__)

MAX_RAW_FILE_NAME_CHARS = 1024
NOT_UPLOADED = "the object has not been uploaded yet: POST the file with the upload form, then complete again"


class UploadHandlers(HandlerBase):
    async def request_upload(self, request: Request) -> Response:
        identity = self._identity(request)
        data = await read_json_object(request)
        check_fields(data, ("project_id", "file_name", "content_type", "size_bytes"))
        project_id = checked_project_id(data["project_id"])
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
        quota = Quota(
            max_pending_per_user=self.settings.max_pending_uploads_per_user,
            pending_window_seconds=self.ttl,
            max_project_bytes=self.settings.max_project_bytes,
        )
        try:
            row = await self.db.create_pending(
                file_id, project_id, identity.user_id, object_key, file_name, content_type, size, quota
            )
        except TooManyPending as err:
            self.metrics.count(metric_names.QUOTA_REFUSALS)
            raise ApiError(
                429,
                f"you have {err.limit} uploads pending, the most allowed: complete or delete one, "
                f"or wait until the oldest upload form expires",
                {"Retry-After": str(err.retry_after)},
            ) from err
        except ProjectFull as err:
            self.metrics.count(metric_names.QUOTA_REFUSALS)
            raise ApiError(
                413,
                f"project {project_id} would exceed its storage quota of {err.limit} bytes "
                f"({err.used} bytes used or reserved by pending uploads); delete files to make room",
            ) from err
        # The object is created tagged as pending, so that the bucket's lifecycle rule removes it if
        # the upload is never completed; completion removes the tag.
        post = self.signer.presign_post(
            object_key, content_type, size, size, self.ttl, tagging=PENDING_TAGGING
        )
        self.metrics.count(metric_names.UPLOAD_FORMS_SIGNED)
        return JSONResponse(
            {
                "file": file_json(row),
                "upload": {
                    "method": "POST",
                    "url": post.url,
                    "fields": post.fields,
                    "expires_at": iso_time(post.expires_at),
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
            # have been posted again since (it stays valid for its TTL); that wrote only the upload
            # key, which downloads never use, so it is removed again, best effort (the lifecycle
            # rule expires it anyway: a re-posted object carries the pending tag).
            await self._discard_upload(row["object_key"])
            return JSONResponse({"file": file_json(row)})
        # None both when S3 answers 404 and when, lacking s3:ListBucket, it hides the missing object
        # behind a 403 (storage.py tells the two 403s apart): either way the client has not uploaded
        # yet, its mistake or its race, so a 409 with the reason and the row left pending for a retry.
        # A 403 on an object that exists is the deployment's fault: StorageForbidden, a logged 500.
        info = await storage.head(row["object_key"])
        if info is None:
            raise ApiError(409, NOT_UPLOADED)
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
            raise ApiError(409, NOT_UPLOADED)
        # Pin what was checked: copy exactly those bytes (by ETag) to a key no upload form can write,
        # and sign downloads for the copy only; a re-post of the form can then change nothing that
        # downloads return (routes.STORED_KEY_SUFFIX).
        target = stored_key(row["object_key"])
        etag = await storage.copy_if_match(row["object_key"], target, info.etag)
        if etag is None:
            raise ApiError(409, "the uploaded object changed while it was being completed: complete again")
        completed = await self.db.mark_available(row["id"], target, etag)
        if completed is not None:
            self.metrics.count(metric_names.UPLOADS_COMPLETED)
        else:
            completed = await self.db.get_file(row["id"])
            if completed is None:
                # Deleted meanwhile (by its owner or the sweep): the copy must not outlive the row.
                await storage.delete(target)
                raise ApiError(404, "no such file")
        await self._discard_upload(row["object_key"])
        return JSONResponse({"file": file_json(completed)})

    async def _discard_upload(self, object_key: str) -> None:
        """Remove the upload key of a completed file, best effort: nothing reads it any more."""
        try:
            await self._storage().delete(object_key)
        except StorageError as err:
            level = logging.ERROR if isinstance(err, StorageForbidden) else logging.WARNING
            log.log(level, "could not delete the upload object %s: %s", object_key, err)

    async def delete_file(self, request: Request) -> Response:
        _, row = await self._owned_file(request)
        # Object first: if the row went first and the object delete failed, nothing would point
        # at the orphan any more. A failure here leaves both, and the client can retry.
        await self._storage().delete(stored_key(row["object_key"]))
        await self._storage().delete(row["object_key"])
        await self.db.delete_file(row["id"])
        return Response(status_code=204)

    def _storage(self) -> ObjectStore:
        if self.storage is None:
            raise AssertionError("upload routes are only mounted when the role has object storage")
        return self.storage
