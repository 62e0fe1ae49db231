"""The S3 calls the upload role makes itself: HEAD to check an upload, DELETE to remove an object,
DeleteObjectTagging to drop the pending tag of a completed upload.

These are rare (once per upload or delete), so boto3 is fine here; it is blocking, so calls run in
a worker thread. File bytes never pass through this service.

What S3 answers for a key that is not there depends on the caller's permissions, not only on the
key. HeadObject, "Permissions": "If the object you request doesn't exist, the error that Amazon S3
returns depends on whether you also have the s3:ListBucket permission. If you have the
s3:ListBucket permission on the bucket, Amazon S3 returns an HTTP status code 404 Not Found error.
If you don't have the s3:ListBucket permission, Amazon S3 returns an HTTP status code 403
Forbidden error." (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html). And a HEAD
answer has no body, so the error code is not available either: "if the HEAD request generates an
error, it returns a generic code, such as 400 Bad Request, 403 Forbidden, 404 Not Found [...] It's
not possible to retrieve the exact exception of these error codes" (same page). So a 403 to a HEAD
means "missing, and S3 will not say so", or "you may not read it", or a bad signature, and only a
second question tells them apart: a listing of the key itself (`_listed`). The task role's grants
(components/files/files.py) make S3 answer 404; the listing then still tells a missing key (the client's
409) from a missing bucket (ours: 503, logged as an error), which a body-less 404 cannot say.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from files_service.routes import PENDING_TAG

log = logging.getLogger(__name__)

_MISSING = ("404", "NoSuchKey", "NotFound")
# The body-less code botocore gives a HEAD's 403 (its HTTP status), and the one S3 writes in the XML
# body of any other request's refusal, missing key included (ErrorResponses, "AccessDenied": 403).
_DENIED = ("403", "AccessDenied")


def tagging_xml(tags: dict[str, str]) -> str:
    """The `<Tagging>` document a POST form's `tagging` field takes."""
    body = "".join(f"<Tag><Key>{escape(k)}</Key><Value>{escape(v)}</Value></Tag>" for k, v in tags.items())
    return f"<Tagging><TagSet>{body}</TagSet></Tagging>"


# Set by the pre-signed POST on every upload; removed on completion (see routes.PENDING_TAG).
PENDING_TAGGING = tagging_xml(dict([PENDING_TAG]))


class StorageError(RuntimeError):
    """An S3 call of the service's own failed; the subclass says whose fault it is."""


class StorageUnavailable(StorageError):
    """S3 could not be reached or failed (transient: the client retries, 503)."""


class BucketMissing(StorageUnavailable):
    """The bucket itself is gone (deleted, or the service configured with the wrong name): a fault of
    the deployment, not the client's, answered 503 and logged as an error, never as "not uploaded"."""


class StorageForbidden(StorageError):
    """S3 refused the service's own request on an object that exists, or refused it a listing: the
    task role lacks a permission or its credentials are bad. A fault of the deployment, never of the
    client, and it does not go away by retrying, so it is a logged 500, not a 503."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    size: int
    content_type: str
    etag: str


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


class ObjectStore:
    def __init__(self, bucket: str, region: str, endpoint_url: str | None = None) -> None:
        self.bucket = bucket
        config = Config(
            region_name=region,
            connect_timeout=3,
            read_timeout=5,
            retries={"mode": "standard", "max_attempts": 3},
            s3={"addressing_style": "path" if endpoint_url else "virtual"},
        )
        self._client: Any = boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)

    def _listed(self, key: str) -> bool:
        """Whether `key` exists, asked of a listing rather than of the object.

        ListObjectsV2 with the key as prefix: S3 authorizes it as s3:ListBucket with s3:prefix set to
        the key, so even a grant limited by an s3:prefix condition (uploads/*) allows it. "List
        results are always returned in UTF-8 binary order" (S3 User Guide, "Listing object keys
        programmatically"), and any other key with this prefix is longer, so the key itself, if it
        exists, is the first one. A listing is strongly consistent with writes and deletes (S3 User
        Guide, "Amazon S3 data consistency model"), so it sees an upload the HEAD would have seen.
        """
        try:
            page = self._client.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1)
        except ClientError as err:
            if _code(err) == "NoSuchBucket":
                log.error(
                    "S3 bucket %r does not exist: every upload completion fails until it does", self.bucket
                )
                raise BucketMissing(f"the bucket {self.bucket!r} does not exist") from err
            if err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403:
                raise StorageForbidden(f"S3 refused to list {key!r}: {err}") from err
            raise StorageUnavailable(f"S3 ListObjectsV2 failed: {err}") from err
        except BotoCoreError as err:
            raise StorageUnavailable(f"S3 ListObjectsV2 failed: {err}") from err
        contents = page.get("Contents") or []
        return bool(contents) and contents[0].get("Key") == key

    def _hidden_missing(self, key: str, operation: str, err: ClientError, last_try: bool) -> bool:
        """After S3 refused `operation` on `key` with 403: True if the key is missing (S3 hid that
        because the role may not list it); False to try the operation once more, because the object
        was created since (the browser's POST may land between the two calls). Otherwise the refusal
        is real and raises StorageForbidden."""
        if not self._listed(key):
            # Not an error (the client is told 409), but a sign that the task role lost the
            # unconditioned s3:ListBucket it has for exactly this (components/files/files.py).
            log.warning(
                "S3 answered 403 to %s of %s, which a listing shows does not exist: the task role "
                "lacks s3:ListBucket for it, so S3 hides missing objects; treated as missing",
                operation,
                key,
            )
            return True
        if last_try:
            raise StorageForbidden(f"S3 refused {operation} of existing object {key!r}: {err}") from err
        return False

    def _head(self, key: str) -> ObjectInfo | None:
        for last_try in (False, True):
            try:
                head = self._client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as err:
                code = _code(err)
                if code in _MISSING:
                    # A HEAD's 404 has no body, so "no such key" and "no such bucket" look the same
                    # (HeadObject: "It's not possible to retrieve the exact exception"); the listing
                    # tells them apart (BucketMissing, a 503) and sees an upload landing meanwhile.
                    if not self._listed(key):
                        return None
                    if last_try:
                        raise StorageUnavailable(
                            f"S3 HEAD of {key!r} says missing, a listing shows it"
                        ) from err
                    continue
                if code in _DENIED:
                    if self._hidden_missing(key, "HEAD", err, last_try):
                        return None
                    continue
                raise StorageUnavailable(f"S3 HEAD failed: {err}") from err
            except BotoCoreError as err:
                raise StorageUnavailable(f"S3 HEAD failed: {err}") from err
            return ObjectInfo(
                size=int(head["ContentLength"]),
                content_type=str(head.get("ContentType", "")),
                etag=str(head.get("ETag", "")),
            )
        raise AssertionError("unreachable: the last try returns or raises")

    def _delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except ClientError as err:
            # S3 answers a DELETE of a missing key with success, so a refusal is never "missing".
            if _code(err) in _DENIED:
                raise StorageForbidden(f"S3 refused DELETE of {key!r}: {err}") from err
            raise StorageUnavailable(f"S3 DELETE failed: {err}") from err
        except BotoCoreError as err:
            raise StorageUnavailable(f"S3 DELETE failed: {err}") from err

    def _remove_tags(self, key: str) -> bool:
        for last_try in (False, True):
            try:
                self._client.delete_object_tagging(Bucket=self.bucket, Key=key)
            except ClientError as err:
                code = _code(err)
                if code in _MISSING:
                    return False
                if code in _DENIED:
                    if self._hidden_missing(key, "DeleteObjectTagging", err, last_try):
                        return False
                    continue
                raise StorageUnavailable(f"S3 DeleteObjectTagging failed: {err}") from err
            except BotoCoreError as err:
                raise StorageUnavailable(f"S3 DeleteObjectTagging failed: {err}") from err
            return True
        raise AssertionError("unreachable: the last try returns or raises")

    def _copy(self, source: str, target: str, etag: str) -> str | None:
        try:
            copied = self._client.copy_object(
                Bucket=self.bucket,
                Key=target,
                CopySource={"Bucket": self.bucket, "Key": source},
                # Only the bytes that were checked: a re-post between the HEAD and this copy fails it.
                CopySourceIfMatch=etag,
                MetadataDirective="COPY",
                # Without the pending tag: the lifecycle rule must never expire a completed file.
                TaggingDirective="REPLACE",
                Tagging="",
            )
        except ClientError as err:
            code = _code(err)
            if code == "NoSuchBucket":
                raise BucketMissing(f"the bucket {self.bucket!r} does not exist") from err
            if code in ("PreconditionFailed", "412", *_MISSING):
                return None
            if code in _DENIED:
                raise StorageForbidden(f"S3 refused CopyObject of {source!r}: {err}") from err
            raise StorageUnavailable(f"S3 CopyObject failed: {err}") from err
        except BotoCoreError as err:
            raise StorageUnavailable(f"S3 CopyObject failed: {err}") from err
        return str(copied.get("CopyObjectResult", {}).get("ETag", etag))

    def _check_bucket(self) -> str | None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as err:
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404 or _code(err) in ("404", "NoSuchBucket", "NotFound"):
                return f"bucket {self.bucket!r} does not exist"
            if status == 403 or _code(err) in _DENIED:
                return f"S3 refuses HeadBucket of {self.bucket!r} (task role or credentials)"
            return f"S3 HeadBucket failed: {_code(err) or status}"
        except BotoCoreError as err:
            return f"S3 unreachable: {type(err).__name__}"
        return None

    async def check_bucket(self) -> str | None:
        """None when the bucket answers (HeadBucket, authorized as s3:ListBucket, which the upload
        role holds), else what is wrong, for the readiness check."""
        return await asyncio.to_thread(self._check_bucket)

    async def copy_if_match(self, source: str, target: str, etag: str) -> str | None:
        """Copy `source` to `target` (untagged) if its ETag is still `etag`; the copy's ETag, or None
        if the source changed or is gone. Repeating it is safe."""
        return await asyncio.to_thread(self._copy, source, target, etag)

    async def head(self, key: str) -> ObjectInfo | None:
        """The object's size and content type, or None if there is no such object (whether S3 said
        so with a 404 or, lacking s3:ListBucket, hid it behind a 403)."""
        return await asyncio.to_thread(self._head, key)

    async def delete(self, key: str) -> None:
        """Deleting a missing object succeeds, so retries are safe."""
        await asyncio.to_thread(self._delete, key)

    async def remove_tags(self, key: str) -> bool:
        """Remove every tag of the object (its current version); False if there is no such object.

        Removing the tags of an untagged object succeeds, so retries are safe.
        """
        return await asyncio.to_thread(self._remove_tags, key)
