"""Versioned migrations under an advisory lock, against a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import asyncpg
import pytest
from files_service.db import Database, DatabaseUnavailable
from files_service.migrator import Migration, MigrationError, load_migrations, migrate
from files_service.settings import DatabaseSettings

from devstack.servers import LOCALHOST, PostgresServer, free_port
from tests.services.files.conftest import create_database


def dsn(server: PostgresServer, database: str) -> str:
    return f"postgresql://{server.user}:{server.password}@{LOCALHOST}:{server.port}/{database}"


def test_migration_files_are_numbered_without_gaps() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "files_and_shares"


def test_concurrent_start_ups_apply_each_migration_once(postgres: PostgresServer) -> None:
    """Both services and all their tasks migrate at start-up, at the same time."""
    database = create_database(postgres)

    async def run() -> list[list[int]]:
        conns = [await asyncpg.connect(dsn(postgres, database)) for _ in range(4)]
        try:
            results = await asyncio.gather(*(migrate(c) for c in conns))
            rows = await conns[0].fetch("SELECT version FROM files_schema_migrations ORDER BY version")
            assert [r["version"] for r in rows] == [m.version for m in load_migrations()]
            return list(results)
        finally:
            for c in conns:
                await c.close()

    results = asyncio.run(run())
    expected = [m.version for m in load_migrations()]
    assert sorted(results, key=len) == [[], [], [], expected]


def test_new_migrations_apply_later_and_edited_ones_are_refused(postgres: PostgresServer) -> None:
    database = create_database(postgres)
    first = Migration(1, "one", "CREATE TABLE t_one (id int)")
    second = Migration(2, "two", "CREATE TABLE t_two (id int)")

    async def run() -> None:
        conn = await asyncpg.connect(dsn(postgres, database))
        try:
            assert await migrate(conn, [first]) == [1]
            assert await migrate(conn, [first, second]) == [2]
            assert await migrate(conn, [first, second]) == []
            edited = Migration(1, "one", "CREATE TABLE t_one (id bigint)")
            with pytest.raises(MigrationError, match="0001_one was changed"):
                await migrate(conn, [edited, second])
            # A failing migration leaves nothing half-applied, and the lock is released.
            broken = Migration(3, "three", "CREATE TABLE t_three (id int); SELECT no_such_function()")
            with pytest.raises(asyncpg.UndefinedFunctionError):
                await migrate(conn, [first, second, broken])
            assert await conn.fetchval("SELECT to_regclass('t_three')") is None
            assert await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
        finally:
            await conn.close()

    asyncio.run(run())


def test_start_up_waits_for_a_database_that_is_not_up_yet(
    make_postgres: Callable[[], PostgresServer],
) -> None:
    server = make_postgres()
    database = create_database(server)
    server.stop()
    settings = DatabaseSettings(LOCALHOST, server.port, database, server.user, server.password, "disable")
    starter = threading.Timer(1.0, server.start)
    starter.start()

    async def run() -> None:
        started = time.monotonic()
        db = await Database.connect(settings, startup_deadline=20)
        try:
            assert time.monotonic() - started >= 0.9
            await db.ping()
        finally:
            await db.close()

    try:
        asyncio.run(run())
    finally:
        starter.join()


def test_start_up_gives_up_with_a_clear_error() -> None:
    port = free_port()  # nothing listens there
    settings = DatabaseSettings(LOCALHOST, port, "files", "files", "pw", "disable")
    with pytest.raises(DatabaseUnavailable, match=f"cannot connect to PostgreSQL at {LOCALHOST}:{port}"):
        asyncio.run(Database.connect(settings, startup_deadline=0.5))
