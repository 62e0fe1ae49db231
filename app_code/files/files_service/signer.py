"""A small AWS Signature Version 4 signer for S3 pre-signed GET URLs and POST policies.

botocore's generate_presigned_url costs ~360 us per URL (request model, event hooks, endpoint
resolution), which halves the download service's throughput. This signer does only the maths:
the daily signing key is cached per (secret, date), so a URL costs one SHA-256 and one HMAC. Its
output is byte-for-byte botocore's for the same inputs and time (tests/services/files/test_files_signer.py).

Credentials come from a callable so that rotating task-role credentials (botocore's refreshable
provider chain) are read per signature; the session token is always included.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


class Credentials(NamedTuple):
    access_key: str
    secret_key: str
    token: str | None


CredentialSource = Callable[[], Credentials]


class SignerError(RuntimeError):
    """No usable AWS credentials."""


def botocore_credentials() -> tuple[CredentialSource, Callable[[], None]]:
    """Credentials from botocore's default chain (env, container/task role, instance profile).

    Returns (source, refresh): `source` is cheap and called per signature; `refresh` may block on
    the credentials endpoint, so the app calls it in a worker thread, which keeps refreshes of
    rotating task-role credentials off the event loop.
    """
    import botocore.session

    found = botocore.session.get_session().get_credentials()
    if found is None:
        raise SignerError("no AWS credentials found (task role, environment or profile)")
    credentials = found

    def source() -> Credentials:
        frozen = credentials.get_frozen_credentials()
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)

    def refresh() -> None:
        credentials.get_frozen_credentials()

    return source, refresh


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")
_KEY_SAFE = re.compile(r"[A-Za-z0-9_.~/-]*")


@functools.lru_cache(maxsize=4096)
def _encode(value: str) -> str:
    # botocore.utils.percent_encode: RFC 3986 unreserved characters stay as they are. Cached
    # because the same credential scope, session token and file names recur on every request.
    return value if _UNRESERVED.fullmatch(value) else quote(value, safe="-_.~")


def _encode_key(key: str) -> str:
    # Server-generated keys need no escaping; quote() costs more than the check.
    return key if _KEY_SAFE.fullmatch(key) else quote(key, safe="/~")


@dataclass(frozen=True, slots=True)
class PresignedPost:
    url: str
    fields: dict[str, str]
    expires_at: datetime


class S3Signer:
    def __init__(
        self, bucket: str, region: str, credentials: CredentialSource, endpoint_url: str | None = None
    ) -> None:
        self.bucket = bucket
        self.region = region
        self._credentials = credentials
        self._scope_suffix = f"/{region}/s3/aws4_request"
        if endpoint_url:
            # A local S3 API (moto): path-style, because it has no per-bucket host names.
            parts = urlsplit(endpoint_url.rstrip("/"))
            self._host = parts.netloc
            self._origin = f"{parts.scheme}://{parts.netloc}"
            self._path_prefix = "/" + quote(bucket, safe="") + "/"
            self.post_url = f"{self._origin}/{quote(bucket, safe='')}"
        else:
            self._host = f"{bucket}.s3.{region}.amazonaws.com"
            self._origin = f"https://{self._host}"
            self._path_prefix = "/"
            self.post_url = f"{self._origin}/"
        self._canonical_headers = f"host:{self._host}\n"
        self._key_cache: tuple[str, str, bytes] = ("", "", b"")

    def signing_key(self, secret_key: str, datestamp: str) -> bytes:
        cached_secret, cached_date, key = self._key_cache
        if cached_secret == secret_key and cached_date == datestamp:
            return key
        k = hmac.digest(f"AWS4{secret_key}".encode(), datestamp.encode(), "sha256")
        k = hmac.digest(k, self.region.encode(), "sha256")
        k = hmac.digest(k, b"s3", "sha256")
        key = hmac.digest(k, b"aws4_request", "sha256")
        # One entry: the date changes daily and rotated credentials replace the old secret.
        self._key_cache = (secret_key, datestamp, key)
        return key

    def presign_get(
        self,
        key: str,
        expires_in: int,
        params: Mapping[str, str] | None = None,
        now: datetime | None = None,
    ) -> str:
        """A pre-signed GetObject URL; `params` are extra query parameters such as response-content-disposition."""
        creds = self._credentials()
        now = now or datetime.now(UTC)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        datestamp = amz_date[:8]
        scope = datestamp + self._scope_suffix
        pairs: list[tuple[str, str]] = []
        if params:
            pairs.extend((_encode(k), _encode(v)) for k, v in params.items())
        pairs.append(("X-Amz-Algorithm", ALGORITHM))
        pairs.append(("X-Amz-Credential", _encode(f"{creds.access_key}/{scope}")))
        pairs.append(("X-Amz-Date", amz_date))
        pairs.append(("X-Amz-Expires", str(expires_in)))
        pairs.append(("X-Amz-SignedHeaders", "host"))
        if creds.token is not None:
            pairs.append(("X-Amz-Security-Token", _encode(creds.token)))
        # S3 keys are signed as given (no path normalization), encoded once.
        path = self._path_prefix + _encode_key(key)
        canonical_request = "\n".join(
            (
                "GET",
                path,
                "&".join(f"{k}={v}" for k, v in sorted(pairs)),
                self._canonical_headers,
                "host",
                UNSIGNED_PAYLOAD,
            )
        )
        string_to_sign = (
            f"{ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"
        )
        signature = hmac.new(
            self.signing_key(creds.secret_key, datestamp), string_to_sign.encode(), hashlib.sha256
        ).hexdigest()
        query = "&".join(f"{k}={v}" for k, v in pairs)
        return f"{self._origin}{path}?{query}&X-Amz-Signature={signature}"

    def presign_post(
        self,
        key: str,
        content_type: str,
        min_size: int,
        max_size: int,
        expires_in: int,
        now: datetime | None = None,
        *,
        tagging: str | None = None,
    ) -> PresignedPost:
        """A browser-upload form whose policy pins the key, the content type and the size range.

        `tagging` (an S3 `<Tagging>` XML document) becomes the form's `tagging` field, pinned by an
        exact-match condition, so the object is created with those tags and a client can neither
        drop nor change them.
        """
        creds = self._credentials()
        now = now or datetime.now(UTC)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        datestamp = amz_date[:8]
        credential = f"{creds.access_key}/{datestamp}{self._scope_suffix}"
        expires_at = (now + timedelta(seconds=expires_in)).replace(microsecond=0)
        # The same order as botocore's generate_presigned_post with Fields={"Content-Type", "tagging"}
        # and Conditions=[Content-Type, content-length-range, tagging]: caller's entries first.
        conditions: list[Any] = [{"Content-Type": content_type}, ["content-length-range", min_size, max_size]]
        fields = {"Content-Type": content_type}
        if tagging is not None:
            conditions.append({"tagging": tagging})
            fields["tagging"] = tagging
        conditions += [
            {"bucket": self.bucket},
            {"key": key},
            {"x-amz-algorithm": ALGORITHM},
            {"x-amz-credential": credential},
            {"x-amz-date": amz_date},
        ]
        fields["key"] = key
        fields["x-amz-algorithm"] = ALGORITHM
        fields["x-amz-credential"] = credential
        fields["x-amz-date"] = amz_date
        if creds.token is not None:
            fields["x-amz-security-token"] = creds.token
            conditions.append({"x-amz-security-token": creds.token})
        # json.dumps with its default separators, as botocore does, so the policies are identical.
        policy_json = json.dumps(
            {"expiration": expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"), "conditions": conditions}
        )
        policy = base64.b64encode(policy_json.encode()).decode()
        fields["policy"] = policy
        fields["x-amz-signature"] = hmac.new(
            self.signing_key(creds.secret_key, datestamp), policy.encode(), hashlib.sha256
        ).hexdigest()
        return PresignedPost(url=self.post_url, fields=fields, expires_at=expires_at)
