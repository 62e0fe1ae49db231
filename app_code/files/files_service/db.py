"""PostgreSQL access: a pool and the queries the routes need.

The services never migrate: the migration step (`files_service.migrate`, run with the master
credential before a release rolls out) does. At start-up they only check that every migration this
code needs has been applied (`migrator.check_schema`); a newer schema is fine, because every
migration in a release keeps the previous release's queries working (see `migrator`), which is
what a rollback to the previous task definition relies on.

Credentials survive rotation: with DATABASE_AUTH=iam every new connection gets a fresh RDS IAM
authentication token (valid 15 minutes, used only to log in), signed with the task role's current
credentials, which botocore refreshes before they expire. The server is verified against the CA
bundle (verify-full), so a token is never sent to anyone but the database.

The service must outlive a database restart or fail-over without being restarted itself. asyncpg's
pool replaces a closed connection on the next acquire, so an operation that fails because its
connection died is retried once on a fresh one; if the database is still unreachable the caller
gets DatabaseUnavailable (503), never a 500. Every operation here is safe to repeat.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import asyncpg

from files_service.migrator import check_schema
from files_service.settings import DatabaseSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

# Raised when a connection is lost or the server is shutting down or starting up.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    # Class 53: too many connections, out of memory or disk: the server's state, not the request.
    asyncpg.exceptions.InsufficientResourcesError,
    OSError,
)
_STARTUP_ERRORS: tuple[type[BaseException], ...] = (*_CONNECTION_ERRORS, TimeoutError)


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached or did not answer in time."""


_DOWNLOAD_SQL = """
SELECT f.project_id, f.owner_id, f.object_key, f.stored_key, f.file_name, f.content_type, f.size_bytes, f.status,
       EXISTS (SELECT 1 FROM file_shares s
               WHERE s.file_id = f.id AND s.user_id = $2 AND s.expires_at > now()) AS shared
FROM files f WHERE f.id = $1
"""
_GET_SQL = "SELECT id, project_id, owner_id, object_key, stored_key, file_name, content_type, size_bytes, status, created_at, completed_at FROM files WHERE id = $1"
_SHARED_SQL = (
    "SELECT EXISTS (SELECT 1 FROM file_shares WHERE file_id = $1 AND user_id = $2 AND expires_at > now())"
)
_INSERT_SQL = """
INSERT INTO files (id, project_id, owner_id, object_key, file_name, content_type, size_bytes)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (id) DO NOTHING
RETURNING id, project_id, owner_id, object_key, stored_key, file_name, content_type, size_bytes, status, created_at, completed_at
"""
# Quotas, checked and the row inserted in one transaction under two advisory locks (the user's,
# then the project's, always in that order so that two requests cannot deadlock): concurrent
# requests take turns, so the counts they see include each other's rows and a cap holds exactly.
# Two-key advisory locks with this class id (the 4 bytes "file") and hashtext() of the name; a hash
# collision only makes two users (or projects) take turns needlessly.
_QUOTA_LOCK_SQL = (
    "SELECT pg_advisory_xact_lock(1718185061, hashtext($1)), pg_advisory_xact_lock(1718185062, hashtext($2))"
)
# Pending uploads whose upload form is still valid: an expired form can post nothing new, so it
# no longer counts against the user (its bytes still count against the project until completed
# or swept). Also the oldest one's age, for Retry-After.
_PENDING_QUOTA_SQL = """
SELECT count(*) AS pending, min(created_at) AS oldest FROM files
WHERE owner_id = $1 AND status = 'pending' AND created_at > now() - make_interval(secs => $2)
"""
_PROJECT_BYTES_SQL = "SELECT coalesce(sum(size_bytes), 0)::bigint FROM files WHERE project_id = $1"
_NOW_SQL = "SELECT now()"
_COMPLETE_SQL = """
UPDATE files SET status = 'available', completed_at = now(), stored_key = $2, stored_etag = $3
WHERE id = $1 AND status = 'pending'
RETURNING id, project_id, owner_id, object_key, stored_key, file_name, content_type, size_bytes, status, created_at, completed_at
"""
_DELETE_SQL = "DELETE FROM files WHERE id = $1"
_LIST_SQL = """
SELECT id, project_id, owner_id, object_key, file_name, content_type, size_bytes, status, created_at, completed_at FROM files
WHERE project_id = $1 AND status = 'available'
  AND ($2::timestamptz IS NULL OR (created_at, id) < ($2::timestamptz, $3::uuid))
ORDER BY created_at DESC, id DESC
LIMIT $4
"""
_DELETE_ABANDONED_SQL = """
DELETE FROM files WHERE id IN (
    SELECT id FROM files
    WHERE status = 'pending' AND created_at < now() - make_interval(secs => $1)
    ORDER BY created_at LIMIT $2
    FOR UPDATE SKIP LOCKED
)
RETURNING object_key
"""
_UPSERT_SHARE_SQL = """
INSERT INTO file_shares (file_id, user_id, granted_by, expires_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (file_id, user_id) DO UPDATE
SET expires_at = EXCLUDED.expires_at, granted_by = EXCLUDED.granted_by, created_at = now()
RETURNING file_id, user_id, granted_by, expires_at, created_at
"""
_DELETE_SHARE_SQL = "DELETE FROM file_shares WHERE file_id = $1 AND user_id = $2"
_LIST_SHARES_SQL = """
SELECT file_id, user_id, granted_by, expires_at, created_at FROM file_shares
WHERE file_id = $1 ORDER BY created_at, user_id
"""


async def _no_session_state(conn: asyncpg.Connection) -> None:
    return None


def ssl_context(settings: DatabaseSettings) -> ssl.SSLContext | str | bool:
    """asyncpg's `ssl` argument for DATABASE_SSLMODE: an SSLContext that checks the server against
    DATABASE_SSLROOTCERT for verify-ca and verify-full (and its name for verify-full), as libpq does."""
    if settings.sslmode == "disable":
        return False
    if settings.sslmode not in ("verify-ca", "verify-full"):
        return settings.sslmode  # allow / prefer / require: encrypted, server not verified
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.sslrootcert)
    context.check_hostname = settings.sslmode == "verify-full"
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def iam_token_source(settings: DatabaseSettings) -> Callable[[], Awaitable[str]]:
    """A fresh RDS IAM authentication token per call (botocore's RDSSigner: a SigV4-presigned
    `connect` request for DBUser, the form RDS documents), signed off the event loop because a
    credential refresh may block on the container credentials endpoint.

    Credentials that cannot be had (the endpoint down when they must be refreshed) raise
    ConnectionError, which the pool and the start-up loop treat like an unreachable database
    (retry, then 503), never a 500. The client is made on first use, inside that same handling."""
    import botocore.exceptions
    import botocore.session

    clients: list[Any] = []
    lock = threading.Lock()

    def generate() -> str:
        with lock:
            if not clients:
                clients.append(
                    botocore.session.get_session().create_client("rds", region_name=settings.region)
                )
        return str(
            clients[0].generate_db_auth_token(
                DBHostname=settings.host, Port=settings.port, DBUsername=settings.user, Region=settings.region
            )
        )

    async def token() -> str:
        try:
            return await asyncio.to_thread(generate)
        except botocore.exceptions.BotoCoreError as err:
            raise ConnectionError(f"cannot sign an IAM database token: {err}") from err

    return token


def connect_arguments(settings: DatabaseSettings, *, application_name: str, timeout: float) -> dict[str, Any]:
    """asyncpg.connect / create_pool arguments. asyncpg calls a callable password for every new
    connection (asyncpg connect_utils._connect_addr), which is where each one gets its own token."""
    password: str | Callable[[], Awaitable[str]] | None = settings.password
    if settings.auth == "iam":
        password = iam_token_source(settings)
    return {
        "host": settings.host,
        "port": settings.port,
        "user": settings.user,
        "password": password,
        "database": settings.name,
        "ssl": ssl_context(settings),
        "timeout": timeout,
        "command_timeout": timeout,
        "server_settings": {"application_name": application_name},
    }


class QuotaExceeded(Exception):
    """An upload request over a quota; nothing was inserted."""


class TooManyPending(QuotaExceeded):
    def __init__(self, limit: int, retry_after: int) -> None:
        super().__init__(f"{limit} pending uploads")
        self.limit = limit
        self.retry_after = retry_after


class ProjectFull(QuotaExceeded):
    def __init__(self, limit: int, used: int) -> None:
        super().__init__(f"{used} of {limit} bytes")
        self.limit = limit
        self.used = used


@dataclass(frozen=True, slots=True)
class Quota:
    max_pending_per_user: int
    pending_window_seconds: int
    max_project_bytes: int


@dataclass(frozen=True, slots=True)
class Database:
    pool: asyncpg.Pool
    # FIFO admission to the pool. asyncpg's pool hands a released connection to whichever task
    # asks next, so under load a newcomer can overtake a task that was already waiting, again and
    # again: that made p99 ~10x p50 at 64 connections. asyncio.Semaphore is first come, first served.
    gate: asyncio.Semaphore
    # Upper bound for one operation, including waiting for a pooled connection.
    timeout: float = 5.0

    @classmethod
    async def connect(
        cls,
        settings: DatabaseSettings,
        *,
        application_name: str = "files",
        max_size: int = 8,
        startup_deadline: float = 30.0,
        op_timeout: float = 5.0,
    ) -> Database:
        """Open the pool after checking the schema, retrying while the database is not up yet (e.g.
        RDS rebooting)."""
        connect_args = connect_arguments(settings, application_name=application_name, timeout=op_timeout)
        deadline = time.monotonic() + startup_deadline
        delay = 0.2
        while True:
            try:
                # A connection of its own for the check, so pooled connections carry no state.
                conn = await asyncpg.connect(**connect_args)
                break
            except _STARTUP_ERRORS as err:
                if time.monotonic() + delay > deadline:
                    raise DatabaseUnavailable(
                        f"cannot connect to PostgreSQL at {settings.host}:{settings.port}: {err}"
                    ) from err
                log.warning("database not reachable yet (%s); retrying", err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        try:
            await check_schema(conn)
        finally:
            await conn.close()
        pool = await asyncpg.create_pool(
            **connect_args,
            min_size=1,
            max_size=max_size,
            max_inactive_connection_lifetime=300.0,
            # asyncpg's default reset costs a second round trip per checkout (RESET ALL, UNLISTEN,
            # unlock); no query here leaves session state behind, so only the transaction check
            # that asyncpg always does remains.
            reset=_no_session_state,
        )
        return cls(pool=pool, gate=asyncio.Semaphore(max_size), timeout=op_timeout)

    async def close(self) -> None:
        await asyncio.wait_for(self.pool.close(), timeout=10)

    async def _run(self, op: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        for attempt in (1, 2):
            try:
                async with asyncio.timeout(self.timeout), self.gate, self.pool.acquire() as conn:
                    return await op(conn)
            except TimeoutError as err:
                raise DatabaseUnavailable("database did not answer in time") from err
            except _CONNECTION_ERRORS as err:
                if attempt == 2:
                    raise DatabaseUnavailable(f"database unavailable: {err}") from err
                log.warning("database connection lost (%s); retrying on a new connection", err)
        raise AssertionError("unreachable")

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return await self._run(lambda conn: conn.fetchrow(sql, *args))

    async def ping(self) -> None:
        await self._run(lambda conn: conn.fetchval("SELECT 1"))

    async def download_info(self, file_id: uuid.UUID, user_id: str) -> asyncpg.Record | None:
        """The file and whether `user_id` holds an unexpired share, in one round trip."""
        return await self._fetchrow(_DOWNLOAD_SQL, file_id, user_id)

    async def get_file(self, file_id: uuid.UUID) -> asyncpg.Record | None:
        return await self._fetchrow(_GET_SQL, file_id)

    async def has_share(self, file_id: uuid.UUID, user_id: str) -> bool:
        return bool(await self._run(lambda conn: conn.fetchval(_SHARED_SQL, file_id, user_id)))

    async def create_pending(
        self,
        file_id: uuid.UUID,
        project_id: str,
        owner_id: str,
        object_key: str,
        file_name: str,
        content_type: str,
        size_bytes: int,
        quota: Quota,
    ) -> asyncpg.Record:
        """Insert the pending file if the owner and the project are within `quota`, else raise
        TooManyPending or ProjectFull; the check and the insert are one transaction."""

        async def op(conn: asyncpg.Connection) -> asyncpg.Record | None:
            async with conn.transaction():
                existing = await conn.fetchrow(_GET_SQL, file_id)
                if existing is not None:
                    # The insert committed but its answer was lost; the retry finds the row there.
                    return existing
                await conn.execute(_QUOTA_LOCK_SQL, owner_id, project_id)
                pending = await conn.fetchrow(
                    _PENDING_QUOTA_SQL, owner_id, float(quota.pending_window_seconds)
                )
                if pending["pending"] >= quota.max_pending_per_user:
                    now = await conn.fetchval(_NOW_SQL)
                    frees_in = (pending["oldest"] - now).total_seconds() + quota.pending_window_seconds
                    raise TooManyPending(quota.max_pending_per_user, max(1, math.ceil(frees_in)))
                used = await conn.fetchval(_PROJECT_BYTES_SQL, project_id)
                if used + size_bytes > quota.max_project_bytes:
                    raise ProjectFull(quota.max_project_bytes, used)
                return await conn.fetchrow(
                    _INSERT_SQL,
                    file_id,
                    project_id,
                    owner_id,
                    object_key,
                    file_name,
                    content_type,
                    size_bytes,
                )

        row = await self._run(op)
        assert row is not None
        return row

    async def mark_available(self, file_id: uuid.UUID, stored_key: str, etag: str) -> asyncpg.Record | None:
        """The file after marking it available with the object downloads get, or None if it was
        not pending any more."""
        return await self._fetchrow(_COMPLETE_SQL, file_id, stored_key, etag)

    async def delete_file(self, file_id: uuid.UUID) -> None:
        await self._run(lambda conn: conn.execute(_DELETE_SQL, file_id))

    async def delete_abandoned(self, older_than_seconds: float, limit: int) -> list[str]:
        """Delete up to `limit` uploads pending for longer than that; returns their object keys.

        The row goes first: a completion racing with this then finds no pending row (404) instead
        of making available a file whose object is being deleted.
        """
        rows = await self._run(lambda conn: conn.fetch(_DELETE_ABANDONED_SQL, older_than_seconds, limit))
        return [row["object_key"] for row in rows]

    async def list_project_files(
        self, project_id: str, limit: int, after: tuple[datetime, uuid.UUID] | None
    ) -> list[asyncpg.Record]:
        created_at, last_id = after if after is not None else (None, None)
        return await self._run(lambda conn: conn.fetch(_LIST_SQL, project_id, created_at, last_id, limit))

    async def upsert_share(
        self, file_id: uuid.UUID, user_id: str, granted_by: str, expires_at: datetime
    ) -> asyncpg.Record | None:
        """None if the file no longer exists."""

        async def op(conn: asyncpg.Connection) -> asyncpg.Record | None:
            try:
                return await conn.fetchrow(_UPSERT_SHARE_SQL, file_id, user_id, granted_by, expires_at)
            except asyncpg.ForeignKeyViolationError:
                return None

        return await self._run(op)

    async def delete_share(self, file_id: uuid.UUID, user_id: str) -> bool:
        status = await self._run(lambda conn: conn.execute(_DELETE_SHARE_SQL, file_id, user_id))
        return bool(status != "DELETE 0")

    async def list_shares(self, file_id: uuid.UUID) -> list[asyncpg.Record]:
        return await self._run(lambda conn: conn.fetch(_LIST_SHARES_SQL, file_id))
