"""Settings from environment variables (the contract is in docs/service-settings.md).

Everything is parsed and checked once at start-up, and every problem names its variable, so a
misconfigured task fails fast with a message an operator can act on instead of failing later on a
request.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast

from motion_common.env import REGION_RE, EnvReader
from motion_common.env import SettingsError as SettingsError  # raised by Settings.from_env

from files_service.routes import DEFAULT_PORT

Role = Literal["upload", "download", "all"]
ROLES: tuple[Role, ...] = ("upload", "download", "all")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# How the service proves who it is to PostgreSQL: "iam", an RDS IAM authentication token generated
# per new connection from the task role's credentials (nothing to rotate, nothing stored), or
# "password" (the migration step's master credential, and local setups without IAM).
DATABASE_AUTH_MODES = ("iam", "password")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

DEFAULT_MAX_UPLOAD_BYTES = 50 * 1024 * 1024
# A pre-signed POST cannot accept more than 5 GiB in one request.
MAX_POST_UPLOAD_BYTES = 5 * 1024**3
DEFAULT_PRESIGN_TTL_SECONDS = 300
MAX_PRESIGN_TTL_SECONDS = 900
# A share is a grant to someone outside the project that nobody re-checks, so it must end: shares
# expire after at most this many days (the owner can renew one by sharing again).
DEFAULT_MAX_SHARE_DAYS = 30
MAX_MAX_SHARE_DAYS = 365
# Quotas: how many uploads one user may have pending at once (each holds a valid upload form), and
# how many bytes a project may hold, pending uploads included (they are counted as declared, since
# S3 enforces the declared size exactly).
DEFAULT_MAX_PENDING_UPLOADS_PER_USER = 20
MAX_MAX_PENDING_UPLOADS_PER_USER = 10_000
DEFAULT_MAX_PROJECT_BYTES = 10 * 1024**3
MAX_MAX_PROJECT_BYTES = 1024**5
DEFAULT_ALLOWED_CONTENT_TYPES = (
    "application/pdf",
    "application/zip",
    "application/msword",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "text/plain",
    "text/csv",
    "text/markdown",
)

# type/subtype tokens (RFC 6838 restricted names), or "type/*" to allow a whole family.
CONTENT_TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/(?:[a-z0-9][a-z0-9!#$&^_.+-]{0,126}|\*)$")
# S3 bucket naming rules; dots are refused because they break TLS for virtual-hosted URLs.
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    host: str
    port: int
    name: str
    user: str
    password: str | None  # None with auth="iam": each connection gets a fresh token instead
    sslmode: str
    auth: str = "password"
    sslrootcert: str | None = None  # the CA bundle that verify-ca / verify-full check the server with
    region: str | None = None  # where the IAM token is signed for (auth="iam")

    def __repr__(self) -> str:
        # Keep the password out of logs and tracebacks.
        return (
            f"DatabaseSettings(host={self.host!r}, port={self.port}, name={self.name!r}, "
            f"user={self.user!r}, auth={self.auth!r}, sslmode={self.sslmode!r}, sslrootcert={self.sslrootcert!r})"
        )


@dataclass(frozen=True, slots=True)
class Settings:
    role: Role
    host: str
    port: int
    bucket: str
    region: str
    s3_endpoint_url: str | None
    database: DatabaseSettings
    auth_issuer: str
    auth_jwks_url: str
    auth_audience: str | None
    cors_origins: tuple[str, ...]
    max_upload_bytes: int
    allowed_content_types: tuple[str, ...]
    presign_ttl_seconds: int
    log_level: str
    max_share_days: int = DEFAULT_MAX_SHARE_DAYS
    max_pending_uploads_per_user: int = DEFAULT_MAX_PENDING_UPLOADS_PER_USER
    max_project_bytes: int = DEFAULT_MAX_PROJECT_BYTES

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        return _Parser(os.environ if env is None else env).parse()


def database_settings_from_env(
    env: Mapping[str, str] | None = None, subject: str = "files migration"
) -> DatabaseSettings:
    """Only the DATABASE_* settings (and AWS_REGION for IAM), for the migration step."""
    parser = _Parser(os.environ if env is None else env)
    settings = parser.database(parser.raw("AWS_REGION") or None)
    parser.raise_if_problems(subject)
    return settings


class _Parser(EnvReader):
    def parse(self) -> Settings:
        role = cast(Role, self.choice("FILES_ROLE", "all", ROLES))
        port = self.integer("PORT", DEFAULT_PORT, 1, 65535)
        bucket = self.required("FILES_BUCKET")
        self.expect_match("FILES_BUCKET", bucket, BUCKET_RE, "a valid S3 bucket name without dots")
        region = self.required("AWS_REGION")
        self.expect_match("AWS_REGION", region, REGION_RE, "an AWS region name")
        endpoint = self.url("AWS_ENDPOINT_URL", required=False).rstrip("/") or None
        database = self.database(region)
        issuer = self.required("AUTH_ISSUER")
        jwks_url = self.url("AUTH_JWKS_URL", required=True)
        audience = self.raw("AUTH_AUDIENCE") or None
        origins = self.origins("CORS_ORIGINS")
        max_upload = self.integer("MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES, 1, MAX_POST_UPLOAD_BYTES)
        allowed = self.content_types()
        ttl = self.integer("PRESIGN_TTL_SECONDS", DEFAULT_PRESIGN_TTL_SECONDS, 1, MAX_PRESIGN_TTL_SECONDS)
        log_level = self.choice("LOG_LEVEL", "INFO", LOG_LEVELS, upper=True)
        share_days = self.integer("MAX_SHARE_DAYS", DEFAULT_MAX_SHARE_DAYS, 1, MAX_MAX_SHARE_DAYS)
        pending = self.integer(
            "MAX_PENDING_UPLOADS_PER_USER",
            DEFAULT_MAX_PENDING_UPLOADS_PER_USER,
            1,
            MAX_MAX_PENDING_UPLOADS_PER_USER,
        )
        project_bytes = self.integer("MAX_PROJECT_BYTES", DEFAULT_MAX_PROJECT_BYTES, 1, MAX_MAX_PROJECT_BYTES)
        if project_bytes < max_upload:
            self.problems.append(
                f"MAX_PROJECT_BYTES ({project_bytes}) must be at least MAX_UPLOAD_BYTES ({max_upload})"
            )
        host = self.raw("HOST") or "0.0.0.0"
        self.raise_if_problems("files service")
        return Settings(
            role=role,
            host=host,
            port=port,
            bucket=bucket,
            region=region,
            s3_endpoint_url=endpoint,
            database=database,
            auth_issuer=issuer,
            auth_jwks_url=jwks_url,
            auth_audience=audience,
            cors_origins=origins,
            max_upload_bytes=max_upload,
            allowed_content_types=allowed,
            presign_ttl_seconds=ttl,
            log_level=log_level,
            max_share_days=share_days,
            max_pending_uploads_per_user=pending,
            max_project_bytes=project_bytes,
        )

    def database(self, region: str | None) -> DatabaseSettings:
        """DATABASE_*: where, who, how it authenticates and how the server is verified."""
        auth = self.choice("DATABASE_AUTH", "password", DATABASE_AUTH_MODES)
        password: str | None = None
        if auth == "password":
            password = self.required("DATABASE_PASSWORD")
        elif self.raw("DATABASE_PASSWORD"):
            # A stored password next to IAM authentication is a credential nobody should hold.
            self.problems.append("DATABASE_PASSWORD must not be set with DATABASE_AUTH=iam")
        sslmode = self.choice("DATABASE_SSLMODE", "verify-full", SSL_MODES)
        if auth == "iam" and sslmode not in ("verify-ca", "verify-full"):
            # RDS requires TLS for IAM authentication, and the token is a bearer credential: it
            # must only ever be sent to a server whose certificate was checked.
            self.problems.append("DATABASE_SSLMODE must be verify-ca or verify-full with DATABASE_AUTH=iam")
        rootcert = self.raw("DATABASE_SSLROOTCERT") or None
        if sslmode in ("verify-ca", "verify-full"):
            if rootcert is None:
                self.problems.append(f"DATABASE_SSLROOTCERT is required with DATABASE_SSLMODE={sslmode}")
            else:
                self.ca_bundle("DATABASE_SSLROOTCERT", rootcert)
        return DatabaseSettings(
            host=self.required("DATABASE_HOST"),
            port=self.integer("DATABASE_PORT", 5432, 1, 65535),
            name=self.required("DATABASE_NAME"),
            user=self.required("DATABASE_USER"),
            password=password,
            sslmode=sslmode,
            auth=auth,
            sslrootcert=rootcert,
            region=region,
        )

    def ca_bundle(self, name: str, path: str) -> None:
        """A readable file of PEM certificates that the ssl module accepts as trust anchors."""
        try:
            loaded = ssl.create_default_context(cafile=path).cert_store_stats()["x509_ca"]
        except (OSError, ssl.SSLError) as err:
            self.problems.append(f"{name}: cannot load CA certificates from {path} ({err})")
            return
        if loaded == 0:
            self.problems.append(f"{name}: {path} holds no CA certificate")

    def content_types(self) -> tuple[str, ...]:
        value = self.raw("ALLOWED_CONTENT_TYPES")
        if not value:
            return DEFAULT_ALLOWED_CONTENT_TYPES
        types = tuple(dict.fromkeys(t.strip().lower() for t in value.split(",") if t.strip()))
        bad = [t for t in types if not CONTENT_TYPE_RE.match(t)]
        if bad:
            self.problems.append(f"ALLOWED_CONTENT_TYPES has invalid media types: {', '.join(bad)}")
        if not types:
            self.problems.append("ALLOWED_CONTENT_TYPES must list at least one media type")
        return types
