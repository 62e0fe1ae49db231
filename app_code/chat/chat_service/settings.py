"""Settings from environment variables (the contract is in docs/service-settings.md).

Everything is parsed and checked once at start-up and every problem names its variable, so a
misconfigured task fails at once with a message an operator can act on.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from motion_common.env import REGION_RE, EnvReader
from motion_common.env import SettingsError as SettingsError  # raised by Settings.from_env

from chat_service import DEFAULT_PORT, PING_INTERVAL_SECONDS, SHUTDOWN_GRACE_SECONDS

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

DEFAULT_MAX_MESSAGE_BYTES = 4096
# A DynamoDB item holds at most 400 KB; stay far below it with the other attributes.
MAX_MESSAGE_BYTES_LIMIT = 64 * 1024
DEFAULT_SEND_RATE = 10
DEFAULT_SEND_BURST = 20
DEFAULT_MAX_BUFFERED_BYTES = 1024 * 1024
# DynamoDB table names: 3-255 of [a-zA-Z0-9_.-].
TABLE_RE = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")


@dataclass(frozen=True, slots=True)
class RedisSettings:
    host: str
    port: int
    tls: bool
    auth_token: str | None

    def __repr__(self) -> str:
        # Keep the AUTH token out of logs and tracebacks.
        token = "<set>" if self.auth_token else None
        return f"RedisSettings(host={self.host!r}, port={self.port}, tls={self.tls}, auth_token={token})"


@dataclass(frozen=True, slots=True)
class Settings:
    host: str
    port: int
    table: str | None
    persist: bool
    region: str | None
    redis: RedisSettings
    auth_issuer: str
    auth_jwks_url: str
    auth_audience: str | None
    cors_origins: tuple[str, ...]
    max_message_bytes: int
    send_rate_per_second: float
    send_rate_burst: int
    max_buffered_bytes: int
    ping_interval_seconds: float
    shutdown_grace_seconds: float
    log_level: str

    @property
    def max_frame_bytes(self) -> int:
        """The largest frame read at all. JSON may escape a one-byte character as six (`\\u0001`), so a
        frame carrying a text within the limit can be up to six times longer, plus the envelope. Larger
        frames close the connection with 1009; smaller ones with too long a text get an error."""
        return self.max_message_bytes * 6 + 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        return _Parser(os.environ if env is None else env).parse()


class _Parser(EnvReader):
    def parse(self) -> Settings:
        persist = self.boolean("CHAT_PERSIST", True)
        table = self.raw("CHAT_TABLE") or None
        region = self.raw("AWS_REGION") or None
        if persist:
            if table is None:
                self.problems.append("CHAT_TABLE is required (unless CHAT_PERSIST=false)")
            if region is None:
                self.problems.append("AWS_REGION is required (unless CHAT_PERSIST=false)")
        self.expect_match("CHAT_TABLE", table, TABLE_RE, "a valid DynamoDB table name")
        self.expect_match("AWS_REGION", region, REGION_RE, "an AWS region name")
        redis = RedisSettings(
            host=self.required("REDIS_HOST"),
            port=self.integer("REDIS_PORT", 6379, 1, 65535),
            tls=self.boolean("REDIS_TLS", False),
            auth_token=self.raw("REDIS_AUTH_TOKEN") or None,
        )
        issuer = self.required("AUTH_ISSUER")
        jwks_url = self.url("AUTH_JWKS_URL", required=True)
        origins = self.origins("CORS_ORIGINS")
        max_message = self.integer("MAX_MESSAGE_BYTES", DEFAULT_MAX_MESSAGE_BYTES, 1, MAX_MESSAGE_BYTES_LIMIT)
        rate = self.number("SEND_RATE_PER_SECOND", DEFAULT_SEND_RATE, 0.01, 100_000)
        burst = self.integer("SEND_RATE_BURST", max(DEFAULT_SEND_BURST, int(rate)), 1, 1_000_000)
        buffered = self.integer("CHAT_MAX_BUFFERED_BYTES", DEFAULT_MAX_BUFFERED_BYTES, 16 * 1024, 1024**3)
        ping = self.number("CHAT_PING_INTERVAL_SECONDS", PING_INTERVAL_SECONDS, 0.1, 3600)
        grace = self.number("CHAT_SHUTDOWN_GRACE_SECONDS", SHUTDOWN_GRACE_SECONDS, 0, 600)
        log_level = self.choice("LOG_LEVEL", "INFO", LOG_LEVELS, upper=True)
        port = self.integer("PORT", DEFAULT_PORT, 1, 65535)
        host = self.raw("HOST") or "0.0.0.0"
        self.raise_if_problems("chat service")
        return Settings(
            host=host,
            port=port,
            table=table,
            persist=persist,
            region=region,
            redis=redis,
            auth_issuer=issuer,
            auth_jwks_url=jwks_url,
            auth_audience=self.raw("AUTH_AUDIENCE") or None,
            cors_origins=origins,
            max_message_bytes=max_message,
            send_rate_per_second=rate,
            send_rate_burst=burst,
            max_buffered_bytes=buffered,
            ping_interval_seconds=ping,
            shutdown_grace_seconds=grace,
            log_level=log_level,
        )
