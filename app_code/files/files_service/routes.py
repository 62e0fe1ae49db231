"""The HTTP surface of the files service, as plain data.

The Pulumi component imports this module (stdlib only, on purpose) to build the ALB listener
rules and the IAM policies of the two ECS services from the same facts the code serves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

ServiceRole = Literal["upload", "download"]

# The port the service listens on unless PORT says otherwise (the task definition, the health check).
DEFAULT_PORT = 8080

API_PREFIX = "/files/v1"
# "Restart me" (the container health check): the process answers. "Send me traffic" (the load
# balancer's health check): every dependency a request needs answers (README, "Health checks").
LIVENESS_PATH = "/files/livez"
READINESS_PATH = "/files/readyz"
OPENAPI_PATH = f"{API_PREFIX}/openapi.json"
# Every object the service creates lives under this prefix; IAM grants are scoped to it.
OBJECT_KEY_PREFIX = "uploads/"
# Completion copies the uploaded object to its object key plus this suffix and downloads are signed
# for the copy. An upload form stays valid for its TTL and pins its key exactly (S3 checks the POST
# policy), so re-posting it after completion writes only the upload key, never the stored one: the
# bytes that completion checked are the bytes every download gets.
STORED_KEY_SUFFIX = ".stored"


def stored_key(object_key: str) -> str:
    return object_key + STORED_KEY_SUFFIX


# The tag (key, value) every uploaded object carries from its pre-signed POST until its completion
# removes it. The bucket's lifecycle rule (components/files/files.py PENDING_TAG, kept equal by
# tests/services/files/test_files_routes.py) expires objects carrying it, as a safety net for
# uploads that are never completed.
PENDING_TAG: tuple[str, str] = ("upload-state", "pending")
# The request headers the handlers read that a page's script sets: the bearer token. The app's CORS
# allows exactly these (Starlette adds the CORS-safelisted ones, `content-type` among them, which
# JSON bodies carry); `content-length`, also read, is set by the browser itself.
AUTHORIZATION_HEADER = "authorization"
REQUEST_HEADERS: tuple[str, ...] = (AUTHORIZATION_HEADER,)


@dataclass(frozen=True, slots=True)
class RouteSpec:
    role: ServiceRole
    method: str
    path: str
    operation: str


# The download URL route is first because routes are matched in order and it is the hot path.
ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("download", "GET", f"{API_PREFIX}/files/{{file_id}}/download", "download_file"),
    RouteSpec("download", "POST", f"{API_PREFIX}/files/{{file_id}}/download", "download_file_post"),
    RouteSpec("download", "GET", f"{API_PREFIX}/files/{{file_id}}", "get_file"),
    RouteSpec("download", "GET", f"{API_PREFIX}/projects/{{project_id}}/files", "list_project_files"),
    RouteSpec("download", "GET", f"{API_PREFIX}/files/{{file_id}}/shares", "list_shares"),
    RouteSpec("download", "PUT", f"{API_PREFIX}/files/{{file_id}}/shares/{{user_id}}", "share_file"),
    RouteSpec("download", "DELETE", f"{API_PREFIX}/files/{{file_id}}/shares/{{user_id}}", "revoke_share"),
    RouteSpec("upload", "POST", f"{API_PREFIX}/uploads", "request_upload"),
    RouteSpec("upload", "POST", f"{API_PREFIX}/uploads/{{file_id}}/complete", "complete_upload"),
    RouteSpec("upload", "DELETE", f"{API_PREFIX}/uploads/{{file_id}}", "delete_file"),
)

# ALB path-pattern conditions (case-sensitive; `*` matches any characters, `/` included). The two
# sets are disjoint, so rule priorities do not matter. The health check path is not routed: each
# target group checks its own targets directly. The OpenAPI document describes the whole API.
ALB_PATH_PATTERNS: dict[ServiceRole, tuple[str, ...]] = {
    "upload": (f"{API_PREFIX}/uploads", f"{API_PREFIX}/uploads/*"),
    "download": (f"{API_PREFIX}/files/*", f"{API_PREFIX}/projects/*", OPENAPI_PATH),
}

# What each role's task role needs on the bucket. Object actions apply to
# arn:aws:s3:::<bucket>/uploads/*; bucket actions to arn:aws:s3:::<bucket>, without a condition.
# - upload signs the pre-signed POST (PutObject), checks the upload with HEAD (which IAM
#   authorizes as GetObject) and deletes files. ListBucket is what makes S3 answer a HEAD of a
#   missing object with 404 rather than 403, so "not uploaded yet" is told apart from "forbidden";
#   an s3:prefix condition on it would undo that, since a HEAD carries no s3:prefix (see
#   components/files/files.py). storage.py also tells a 403 for a missing object apart by a listing.
#   The POST form carries the PENDING_TAG tagging, and S3 authorizes a POST or PUT that sets tags
#   against PutObjectTagging as well as PutObject (without it every upload is refused with 403);
#   completion removes the tag with DeleteObjectTagging, so the lifecycle rule never expires a
#   completed file.
#   Completion then copies the object to its stored key (CopyObject: GetObject on the source,
#   PutObject on the target, both under uploads/), so no new action is needed for it.
# - download only signs pre-signed GETs, of available files only; without ListBucket, S3 answers
#   a browser's GET of an object that is gone (deleted after the URL was signed) with 403
#   AccessDenied rather than 404; the service itself never asks S3 about a key with this role.
S3_OBJECT_ACTIONS: dict[ServiceRole, tuple[str, ...]] = {
    "upload": (
        "s3:PutObject",
        "s3:PutObjectTagging",
        "s3:GetObject",
        "s3:DeleteObject",
        "s3:DeleteObjectTagging",
    ),
    "download": ("s3:GetObject",),
}
S3_BUCKET_ACTIONS: dict[ServiceRole, tuple[str, ...]] = {
    "upload": ("s3:ListBucket",),
    "download": (),
}


def routes_for(role: str) -> tuple[RouteSpec, ...]:
    """The routes a process with FILES_ROLE=`role` serves (`all` serves both sets)."""
    return tuple(r for r in ROUTES if role == "all" or r.role == role)


def alb_pattern_matches(pattern: str, path: str) -> bool:
    """ALB path-pattern semantics: `*` is any run of characters and `?` exactly one, case-sensitively."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, path) is not None
