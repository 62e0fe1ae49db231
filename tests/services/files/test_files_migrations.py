"""Versioned migrations under an advisory lock, against a real PostgreSQL server."""

from __future__ import annotations

import ast
import asyncio
import datetime as dt
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
from files_service.database_roles import APP_ROLE
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


def test_concurrent_migration_steps_apply_each_migration_once(postgres: PostgresServer) -> None:
    """Two deploys' migration steps (or a retried one) may run at the same time."""
    database = create_database(postgres, migrated=False)

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
    database = create_database(postgres, migrated=False)
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


# --- The rollback rule (files_service/migrator.py): a release's migrations only expand the schema,
# so the previous release's queries keep working and a circuit-breaker rollback is safe.

REPO = Path(__file__).resolve().parents[3]
DB_MODULE = "app_code/files/files_service/db.py"
MIGRATIONS_DIR = "app_code/files/files_service/migrations"

# An allow-list of statement forms that only add: new tables, non-unique indexes, roles and grants,
# plain nullable (or defaulted) columns, comments, and DO blocks made only of those. Everything else
# (drops, renames, column changes, new constraints, unique indexes, triggers, row-level security,
# revokes, data rewrites, ...) may break what the previous release's queries do, so it is refused.
_ALLOWED = [
    re.compile(r"CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?\w+\s*\(.*\)", re.I | re.S),
    re.compile(
        r"CREATE\s+INDEX\s+(CONCURRENTLY\s+)?(IF\s+NOT\s+EXISTS\s+)?\w+\s+ON\s+\w+\s*\(.*", re.I | re.S
    ),
    re.compile(r"GRANT\s+[\w\s,]+\s+ON\s+(TABLE\s+|SCHEMA\s+|DATABASE\s+)?[\w\s,]+\s+TO\s+\w+", re.I),
    re.compile(r"GRANT\s+\w+\s+TO\s+\w+", re.I),
    re.compile(r"CREATE\s+ROLE\s+\w+(\s+LOGIN)?", re.I),
    re.compile(r"COMMENT\s+ON\s+", re.I),
    re.compile(r"ALTER\s+TABLE\s+\w+\s+ADD\s+COLUMN\s+(IF\s+NOT\s+EXISTS\s+)?\w+\s+[\w\s(),]+", re.I),
]
# Inside any statement (and a DO block's body), words that change or constrain what exists.
_FORBIDDEN_WORDS = re.compile(
    r"\b(DROP|RENAME|TRUNCATE|REVOKE|DELETE|UPDATE|ALTER\s+(COLUMN|TYPE|ROLE|DEFAULT|POLICY)|SET\s+NOT\s+NULL"
    r"|UNIQUE|PRIMARY\s+KEY|REFERENCES|CHECK|CONSTRAINT|TRIGGER|RULE|POLICY|ROW\s+LEVEL\s+SECURITY)\b",
    re.I,
)


def _statements(sql: str) -> list[str]:
    """Top-level statements, split on semicolons outside quotes and dollar-quoted bodies."""
    code = re.sub(r"--[^\n]*", "", sql)
    out, current, i = [], "", 0
    while i < len(code):
        if code.startswith("$$", i):
            j = code.index("$$", i + 2) + 2
            current, i = current + code[i:j], j
        elif code[i] == "'":
            j = code.index("'", i + 1) + 1
            current, i = current + code[i:j], j
        elif code[i] == ";":
            out.append(current.strip())
            current, i = "", i + 1
        else:
            current, i = current + code[i], i + 1
    out.append(current.strip())
    return [statement for statement in out if statement]


def contracting_statements(sql: str) -> list[str]:
    """Why `sql` is not an expanding migration (empty when it is); comments are ignored."""
    found = []
    for statement in _statements(sql):
        flat = " ".join(statement.split())
        if flat.upper().startswith("DO "):
            body = flat[flat.index("$$") + 2 : flat.rindex("$$")] if flat.count("$$") >= 2 else flat
            # Grants name privileges (UPDATE, DELETE, ...) without changing what exists; strings are
            # scanned too, since EXECUTE runs them.
            inner = re.sub(r"\bGRANT\b[^;]*;", "", body, flags=re.I)
            if _FORBIDDEN_WORDS.search(inner):
                found.append(f"a DO block changes what exists: {flat[:80]}")
            continue
        if not any(pattern.fullmatch(flat) for pattern in _ALLOWED):
            found.append(f"not an expanding statement: {flat[:80]}")
        elif flat.upper().startswith("ALTER TABLE") and (word := _FORBIDDEN_WORDS.search(flat)):
            found.append(f"{word.group(0).upper()} in: {flat[:80]}")
        elif flat.upper().startswith("ALTER TABLE"):
            definition = flat.upper()
            if "NOT NULL" in definition and not re.search(r"DEFAULT\s+(?!NULL\b)\S", definition):
                found.append(
                    f"a NOT NULL column without a non-null default (old inserts would fail): {flat[:80]}"
                )
    return found


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("ALTER TABLE files DROP COLUMN file_name", "not an expanding statement"),
        ("DROP TABLE file_shares", "not an expanding statement"),
        ("ALTER TABLE files RENAME COLUMN owner_id TO owner", "not an expanding statement"),
        ("ALTER TABLE files ALTER COLUMN size_bytes TYPE int", "not an expanding statement"),
        ("ALTER TABLE files ALTER size_bytes TYPE int", "not an expanding statement"),
        ("ALTER TABLE files ALTER completed_at SET NOT NULL", "not an expanding statement"),
        ("ALTER TABLE files ADD COLUMN checksum text NOT NULL", "NOT NULL column without a non-null default"),
        (
            "ALTER TABLE files ADD COLUMN x text NOT NULL DEFAULT NULL",
            "NOT NULL column without a non-null default",
        ),
        ("ALTER TABLE files ADD COLUMN owner2 text REFERENCES files (object_key)", "REFERENCES"),
        ("ALTER TABLE files ADD COLUMN n int CHECK (n > 0)", "CHECK"),
        ("ALTER TABLE files ADD CONSTRAINT small CHECK (size_bytes < 10)", "not an expanding statement"),
        ("CREATE UNIQUE INDEX one_name ON files (project_id, file_name)", "not an expanding statement"),
        ("ALTER TABLE files ENABLE ROW LEVEL SECURITY", "not an expanding statement"),
        ("CREATE TRIGGER t BEFORE INSERT ON files FOR EACH ROW EXECUTE FUNCTION f()", "not an expanding"),
        ("REVOKE SELECT ON files FROM files_app", "not an expanding statement"),
        ("UPDATE files SET status = 'x'", "not an expanding statement"),
        ("DO $$ BEGIN EXECUTE 'DROP TABLE files'; END $$", "a DO block changes what exists"),
    ],
)
def test_the_rule_recognises_contracting_migrations(sql: str, reason: str) -> None:
    assert any(reason in why for why in contracting_statements(sql))


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE notes (id uuid PRIMARY KEY, body text NOT NULL)",
        "ALTER TABLE files ADD COLUMN checksum text",
        "ALTER TABLE files ADD COLUMN version int NOT NULL DEFAULT 1",
        "CREATE INDEX files_owner ON files (owner_id)",
        "GRANT SELECT ON notes TO files_app",
        "-- DROP TABLE files would be contracting, but this is a comment\nCREATE TABLE t (id int)",
    ],
)
def test_the_rule_allows_expanding_migrations(sql: str) -> None:
    assert contracting_statements(sql) == []


@pytest.mark.parametrize("migration", load_migrations(), ids=lambda m: f"{m.version:04d}_{m.name}")
def test_every_migration_only_expands_the_schema(migration: Migration) -> None:
    assert contracting_statements(migration.sql) == [], (
        f"{migration.version:04d}_{migration.name} contracts the schema: the previous release (what a "
        "rollback runs) may still use what it changes. Stop using it in one release, remove it in the next."
    )


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True).stdout


def sample_value(type_name: str) -> object:
    """A valid argument of a PostgreSQL parameter type, for running a query once."""
    samples: dict[str, object] = {
        "uuid": uuid.uuid4(),
        "text": "sample",
        "varchar": "sample",
        "int2": 1,
        "int4": 1,
        "int8": 1,
        "float8": 1.0,
        "numeric": 1,
        "bool": True,
        "timestamptz": dt.datetime.now(dt.UTC),
        "timestamp": dt.datetime.now(),
        "interval": dt.timedelta(seconds=1),
    }
    assert type_name in samples, f"add a sample value for parameters of type {type_name}"
    return samples[type_name]


def released_queries(before_migration: Migration) -> dict[str, str]:
    """The queries of the code released before `before_migration` was added: db.py's module-level
    `_*_SQL` constants at the parent of the commit that added the migration (or at HEAD, for a
    migration not committed yet), read from git."""
    path = f"{MIGRATIONS_DIR}/{before_migration.version:04d}_{before_migration.name}.sql"
    added = _git("log", "--diff-filter=A", "--format=%H", "--", path).split()
    revision = f"{added[-1]}^" if added else "HEAD"
    source = _git("show", f"{revision}:{DB_MODULE}")
    queries = {}
    for node in ast.parse(source).body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id.endswith("_SQL"):
                    queries[target.id] = node.value.value
    return queries


@pytest.mark.parametrize("migration", load_migrations()[1:], ids=lambda m: f"{m.version:04d}_{m.name}")
def test_the_previous_releases_queries_still_run_after_each_migration(
    postgres: PostgresServer, migration: Migration
) -> None:
    # Shallow checkouts lack the history this reads; the workflows fetch it (fetch-depth: 0).
    assert _git("rev-parse", "--is-shallow-repository").strip() == "false", "needs the git history"
    queries = released_queries(migration)
    assert len(queries) >= 5, "db.py's queries were not found in the released code"
    database = create_database(postgres, migrated=False)
    upto = [m for m in load_migrations() if m.version <= migration.version]

    async def run() -> dict[str, str]:
        conn = await asyncpg.connect(dsn(postgres, database))
        try:
            await migrate(conn, upto)
            failures = {}
            for name, sql in queries.items():
                # Run for real, as the services' role (its grants, any row-level security), with
                # sample arguments of each parameter's type, then rolled back.
                transaction = conn.transaction()
                await transaction.start()
                try:
                    await conn.execute(f"SET LOCAL ROLE {APP_ROLE}")
                    statement = await conn.prepare(sql)
                    await statement.fetch(*(sample_value(t.name) for t in statement.get_parameters()))
                except (asyncpg.ForeignKeyViolationError, asyncpg.UniqueViolationError):
                    pass  # about the sample rows (a share of a file that does not exist), not the schema
                except asyncpg.PostgresError as err:
                    failures[name] = f"{type(err).__name__}: {err}"
                finally:
                    await transaction.rollback()
            return failures
        finally:
            await conn.close()

    assert asyncio.run(run()) == {}
