"""The S3 calls the upload role makes itself: HEAD to check an upload, DELETE to remove an object,
DeleteObjectTagging to drop the pending tag of a completed upload.

These are rare (once per upload or delete), so boto3 is fine here; it is blocking, so calls run in
a worker thread. File bytes never pass through this service.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from files_service.routes import PENDING_TAG

_MISSING = ("404", "NoSuchKey", "NotFound")


def tagging_xml(tags: dict[str, str]) -> str:
    """The `<Tagging>` document a POST form's `tagging` field takes."""
    body = "".join(f"<Tag><Key>{escape(k)}</Key><Value>{escape(v)}</Value></Tag>" for k, v in tags.items())
    return f"<Tagging><TagSet>{body}</TagSet></Tagging>"


# Set by the pre-signed POST on every upload; removed on completion (see routes.PENDING_TAG).
PENDING_TAGGING = tagging_xml(dict([PENDING_TAG]))


class StorageUnavailable(RuntimeError):
    """S3 could not be reached or refused the call."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    size: int
    content_type: str


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

    def _head(self, key: str) -> ObjectInfo | None:
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise StorageUnavailable(f"S3 HEAD failed: {err}") from err
        except BotoCoreError as err:
            raise StorageUnavailable(f"S3 HEAD failed: {err}") from err
        return ObjectInfo(size=int(head["ContentLength"]), content_type=str(head.get("ContentType", "")))

    def _delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as err:
            raise StorageUnavailable(f"S3 DELETE failed: {err}") from err

    def _remove_tags(self, key: str) -> bool:
        try:
            self._client.delete_object_tagging(Bucket=self.bucket, Key=key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in _MISSING:
                return False
            raise StorageUnavailable(f"S3 DeleteObjectTagging failed: {err}") from err
        except BotoCoreError as err:
            raise StorageUnavailable(f"S3 DeleteObjectTagging failed: {err}") from err
        return True

    async def head(self, key: str) -> ObjectInfo | None:
        """The object's size and content type, or None if there is no such object."""
        return await asyncio.to_thread(self._head, key)

    async def delete(self, key: str) -> None:
        """Deleting a missing object succeeds, so retries are safe."""
        await asyncio.to_thread(self._delete, key)

    async def remove_tags(self, key: str) -> bool:
        """Remove every tag of the object (its current version); False if there is no such object.

        Removing the tags of an untagged object succeeds, so retries are safe.
        """
        return await asyncio.to_thread(self._remove_tags, key)
