"""Settings parsing: defaults, and a start-up failure that names every bad variable."""

from __future__ import annotations

import os
import subprocess
import sys

import certifi
import pytest
from files_service.settings import (
    DEFAULT_ALLOWED_CONTENT_TYPES,
    DEFAULT_MAX_PENDING_UPLOADS_PER_USER,
    DEFAULT_MAX_PROJECT_BYTES,
    DEFAULT_MAX_SHARE_DAYS,
    DEFAULT_MAX_UPLOAD_BYTES,
    MAX_MAX_PENDING_UPLOADS_PER_USER,
    MAX_MAX_PROJECT_BYTES,
    MAX_MAX_SHARE_DAYS,
    Settings,
    SettingsError,
)

from components.app_code import pythonpath
from components.config.keys import KEYS

MINIMAL = {
    "FILES_BUCKET": "motion-files-dev",
    "AWS_REGION": "eu-west-1",
    "DATABASE_HOST": "db.internal",
    "DATABASE_NAME": "files",
    "DATABASE_USER": "files",
    "DATABASE_PASSWORD": "s3cret-pw",
    # A real PEM bundle: verify-full (the default) needs trust anchors to check the server with.
    "DATABASE_SSLROOTCERT": certifi.where(),
    "AUTH_ISSUER": "https://clerk.motion.example",
    "AUTH_JWKS_URL": "https://clerk.motion.example/.well-known/jwks.json",
}


def test_minimal_environment_gets_safe_defaults() -> None:
    settings = Settings.from_env(MINIMAL)
    assert settings.role == "all"
    assert settings.port == 8080 and settings.host == "0.0.0.0"
    assert settings.database.port == 5432
    assert settings.database.sslmode == "verify-full" and settings.database.auth == "password"
    assert settings.database.sslrootcert == certifi.where()
    assert settings.presign_ttl_seconds == 300
    assert settings.max_upload_bytes == DEFAULT_MAX_UPLOAD_BYTES
    assert settings.allowed_content_types == DEFAULT_ALLOWED_CONTENT_TYPES
    assert settings.s3_endpoint_url is None
    assert settings.auth_audience is None
    assert settings.cors_origins == ()
    assert settings.log_level == "INFO"
    assert "s3cret-pw" not in repr(settings)


def test_full_environment_is_parsed() -> None:
    settings = Settings.from_env(
        {
            **MINIMAL,
            "PORT": "9000",
            "FILES_ROLE": "Download",
            "DATABASE_PORT": "6432",
            "DATABASE_SSLMODE": "verify-full",
            "AUTH_AUDIENCE": "motion",
            "CORS_ORIGINS": "https://app.motion.example, http://localhost:5173/",
            "MAX_UPLOAD_BYTES": "1048576",
            "ALLOWED_CONTENT_TYPES": "Image/*, application/pdf,application/pdf",
            "PRESIGN_TTL_SECONDS": "900",
            "LOG_LEVEL": "debug",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:5000/",
        }
    )
    assert settings.role == "download" and settings.port == 9000
    assert settings.database.port == 6432 and settings.database.sslmode == "verify-full"
    assert settings.auth_audience == "motion"
    assert settings.cors_origins == ("https://app.motion.example", "http://localhost:5173")
    assert settings.max_upload_bytes == 1048576
    assert settings.allowed_content_types == ("image/*", "application/pdf")
    assert settings.presign_ttl_seconds == 900
    assert settings.log_level == "DEBUG"
    assert settings.s3_endpoint_url == "http://127.0.0.1:5000"


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("FILES_ROLE", "both", "FILES_ROLE must be one of upload, download, all"),
        ("PORT", "http", "PORT must be an integer"),
        ("PORT", "70000", "PORT must be between 1 and 65535"),
        ("FILES_BUCKET", "My_Bucket", "FILES_BUCKET is not a valid S3 bucket name"),
        ("FILES_BUCKET", "motion.files", "FILES_BUCKET is not a valid S3 bucket name"),
        ("AWS_REGION", "Europe", "AWS_REGION is not an AWS region name"),
        ("DATABASE_PORT", "-1", "DATABASE_PORT must be between"),
        ("DATABASE_SSLMODE", "on", "DATABASE_SSLMODE must be one of"),
        ("AUTH_JWKS_URL", "clerk.example/jwks", "AUTH_JWKS_URL must be an http(s) URL"),
        ("CORS_ORIGINS", "https://app.example/path", "CORS_ORIGINS entries must be origins"),
        ("MAX_UPLOAD_BYTES", "0", "MAX_UPLOAD_BYTES must be between 1 and"),
        ("MAX_UPLOAD_BYTES", "10GB", "MAX_UPLOAD_BYTES must be an integer"),
        ("ALLOWED_CONTENT_TYPES", "pdf, text/plain", "ALLOWED_CONTENT_TYPES has invalid media types: pdf"),
        ("ALLOWED_CONTENT_TYPES", " , ", "ALLOWED_CONTENT_TYPES must list at least one"),
        ("PRESIGN_TTL_SECONDS", "3600", "PRESIGN_TTL_SECONDS must be between 1 and 900"),
        ("LOG_LEVEL", "chatty", "LOG_LEVEL must be one of"),
        ("MAX_SHARE_DAYS", "0", "MAX_SHARE_DAYS must be between 1 and 365"),
        ("MAX_SHARE_DAYS", "forever", "MAX_SHARE_DAYS must be an integer"),
        ("MAX_PENDING_UPLOADS_PER_USER", "0", "MAX_PENDING_UPLOADS_PER_USER must be between 1 and"),
        ("MAX_PROJECT_BYTES", "10GiB", "MAX_PROJECT_BYTES must be an integer"),
        ("MAX_PROJECT_BYTES", "1000", "MAX_PROJECT_BYTES (1000) must be at least MAX_UPLOAD_BYTES"),
    ],
)
def test_bad_values_are_named(name: str, value: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({**MINIMAL, name: value})
    assert fragment in str(err.value)


def test_iam_authentication_needs_no_password_and_a_verified_server() -> None:
    iam = {k: v for k, v in MINIMAL.items() if k != "DATABASE_PASSWORD"}
    settings = Settings.from_env({**iam, "DATABASE_AUTH": "iam"})
    assert settings.database.auth == "iam" and settings.database.password is None
    assert settings.database.region == "eu-west-1"


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        # A stored password beside IAM authentication is a credential nobody should hold.
        ({"DATABASE_AUTH": "iam"}, "DATABASE_PASSWORD must not be set with DATABASE_AUTH=iam"),
        # The token is a bearer credential: only ever sent to a verified server.
        (
            {"DATABASE_AUTH": "iam", "DATABASE_PASSWORD": "", "DATABASE_SSLMODE": "require"},
            "DATABASE_SSLMODE must be verify-ca or verify-full with DATABASE_AUTH=iam",
        ),
        ({"DATABASE_AUTH": "kerberos"}, "DATABASE_AUTH must be one of iam, password"),
        ({"DATABASE_SSLROOTCERT": ""}, "DATABASE_SSLROOTCERT is required with DATABASE_SSLMODE=verify-full"),
        (
            {"DATABASE_SSLROOTCERT": "/nonexistent/rds.pem"},
            "DATABASE_SSLROOTCERT: cannot load CA certificates",
        ),
        ({"DATABASE_SSLROOTCERT": __file__}, "DATABASE_SSLROOTCERT: cannot load CA certificates"),
    ],
)
def test_database_authentication_and_tls_mistakes_are_named(changes: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({**MINIMAL, **changes})
    assert fragment in str(err.value)


def test_every_missing_variable_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"FILES_BUCKET": "motion-files-dev"})
    message = str(err.value)
    for name in [n for n in MINIMAL if n not in ("FILES_BUCKET", "DATABASE_SSLROOTCERT")]:
        assert f"{name} is required" in message
    assert "FILES_BUCKET" not in message


def test_entry_point_refuses_to_start_with_a_clear_message() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DATABASE_", "AUTH_", "FILES_"))}
    env.update({**MINIMAL, "PRESIGN_TTL_SECONDS": "86400", "PYTHONPATH": pythonpath("files")})
    result = subprocess.run(
        [sys.executable, "-m", "files_service"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "PRESIGN_TTL_SECONDS must be between 1 and 900, got 86400" in result.stderr
    assert "s3cret-pw" not in result.stderr


@pytest.mark.parametrize(
    ("key", "default", "maximum"),
    [
        ("filesMaxShareDays", DEFAULT_MAX_SHARE_DAYS, MAX_MAX_SHARE_DAYS),
        (
            "filesMaxPendingUploadsPerUser",
            DEFAULT_MAX_PENDING_UPLOADS_PER_USER,
            MAX_MAX_PENDING_UPLOADS_PER_USER,
        ),
        ("filesMaxProjectBytes", DEFAULT_MAX_PROJECT_BYTES, MAX_MAX_PROJECT_BYTES),
    ],
)
def test_the_stack_keys_accept_exactly_what_the_service_accepts(key: str, default: int, maximum: int) -> None:
    # A value the stack file passes must start the service: the key's range is the setting's.
    (declared,) = [k for k in KEYS if k.name == key]
    assert (declared.default, declared.minimum, declared.maximum) == (default, 1, maximum)
