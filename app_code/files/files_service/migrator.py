"""Versioned SQL migrations (`files_service/migrations/NNNN_name.sql`): applied by the migration
step, checked by the services.

The migration step (`python -m files_service.migrate`, run with the master credential once per
release before the services roll out) calls `migrate`; a PostgreSQL advisory lock makes concurrent
runs take turns, and a checksum per applied migration catches an edited migration instead of
letting the schemas of two environments drift apart silently. The services log in as the
application role, which may not change the schema, and only `check_schema` at start-up.

The rule that makes rollbacks safe: a release's migrations only expand the schema (new tables,
nullable or defaulted columns, indexes, roles, grants), so the previous release's queries keep
working on it, and an ECS circuit-breaker rollback to the previous task definition finds a schema it
can use. Removing or changing what a released query uses takes two releases: stop using it, then
remove it. `tests/services/files/test_files_migrations.py` enforces both halves: every migration's
statements are expanding ones, and the queries of the code before each migration still run after it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

# pg_advisory_lock key: the 8 bytes of "files-db", so that no other service's migrator collides.
MIGRATION_LOCK_ID = int.from_bytes(b"files-db", "big") & 0x7FFF_FFFF_FFFF_FFFF
_MIGRATION_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """The migrations on disk and in the database disagree."""


class SchemaNotReady(MigrationError):
    """The database lacks a migration this code needs: the migration step has not run."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    found: list[Migration] = []
    for entry in resources.files("files_service.migrations").iterdir():
        match = _MIGRATION_NAME_RE.match(entry.name)
        if match is None:
            if entry.name.endswith(".sql"):
                raise MigrationError(f"migration file {entry.name!r} is not named NNNN_name.sql")
            continue
        found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration versions must be 1..N without gaps or duplicates, got {versions}")
    return found


async def migrate(conn: asyncpg.Connection, migrations: list[Migration] | None = None) -> list[int]:
    """Apply pending migrations, each in its own transaction; returns the versions applied.

    Both services and all their tasks run this at start-up; the advisory lock makes them take
    turns, so exactly one applies each migration and the others see it as done.
    """
    migrations = load_migrations() if migrations is None else migrations
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS files_schema_migrations (
                version    integer     PRIMARY KEY,
                name       text        NOT NULL,
                checksum   text        NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )"""
        )
        applied = {
            row["version"]: row
            for row in await conn.fetch("SELECT version, name, checksum FROM files_schema_migrations")
        }
        done: list[int] = []
        for migration in migrations:
            row = applied.get(migration.version)
            if row is not None:
                if row["checksum"] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} was changed after it was applied; "
                        "add a new migration instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO files_schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            log.info("applied migration %04d_%s", migration.version, migration.name)
            done.append(migration.version)
        newer = sorted(set(applied) - {m.version for m in migrations})
        if newer:
            # A rolling deploy can run older code against a newer schema; migrations only add.
            log.warning("database has migrations this code does not know: %s", newer)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)


async def check_schema(conn: asyncpg.Connection, migrations: list[Migration] | None = None) -> None:
    """Refuse to serve on a schema older than this code (a migration it needs is missing or was
    applied from a different file); a newer schema is fine (a rollback runs older code on it)."""
    migrations = load_migrations() if migrations is None else migrations
    try:
        rows = await conn.fetch("SELECT version, checksum FROM files_schema_migrations")
    except asyncpg.UndefinedTableError:
        rows = []
    applied = {row["version"]: row["checksum"] for row in rows}
    missing = [f"{m.version:04d}_{m.name}" for m in migrations if m.version not in applied]
    if missing:
        raise SchemaNotReady(
            f"the database lacks migrations {', '.join(missing)}: run the migration step "
            "(python -m files_service.migrate) before starting this release"
        )
    changed = [f"{m.version:04d}_{m.name}" for m in migrations if applied[m.version] != m.checksum]
    if changed:
        raise MigrationError(f"migrations {', '.join(changed)} differ from the ones applied to the database")
