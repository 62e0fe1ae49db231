"""The migration step: `python -m files_service.migrate`, run with the master credential once per
release, before the services roll out (in the cloud as a one-off ECS task of the same image; in the
local backend before the services start).

Reads DATABASE_HOST, DATABASE_PORT, DATABASE_NAME, DATABASE_USER, DATABASE_PASSWORD,
DATABASE_SSLMODE and DATABASE_SSLROOTCERT (docs/service-settings.md); exits 0 once every migration
is applied, 1 with the reason otherwise (2 for bad settings). Safe to run again and concurrently:
applied migrations are skipped, and an advisory lock makes concurrent runs take turns.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Mapping

import asyncpg

from files_service.db import connect_arguments
from files_service.migrator import MigrationError, migrate
from files_service.settings import DatabaseSettings, SettingsError, database_settings_from_env

log = logging.getLogger("files_service.migrate")

# RDS may still be starting or failing over when a release begins; wait this long for it.
CONNECT_DEADLINE_SECONDS = 120.0


async def run(settings: DatabaseSettings, deadline: float = CONNECT_DEADLINE_SECONDS) -> list[int]:
    """Apply the pending migrations; returns the versions applied."""
    arguments = connect_arguments(settings, application_name="files-migrate", timeout=30.0)
    # Migrations may rewrite a table; no statement timeout beyond the step's own.
    arguments["command_timeout"] = None
    give_up = time.monotonic() + deadline
    delay = 0.5
    while True:
        try:
            conn = await asyncpg.connect(**arguments)
            break
        except (OSError, TimeoutError, asyncpg.CannotConnectNowError, asyncpg.PostgresConnectionError) as err:
            if time.monotonic() + delay > give_up:
                raise
            log.warning("database not reachable yet (%s); retrying", err)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


def main(env: Mapping[str, str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        settings = database_settings_from_env(env)
    except SettingsError as err:
        print(f"files migration: {err}", file=sys.stderr)
        return 2
    try:
        applied = asyncio.run(run(settings))
    except (MigrationError, asyncpg.PostgresError, OSError, TimeoutError) as err:
        print(f"files migration failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    # One line a deploy log (and the runner that waits for this task) can read.
    print(json.dumps({"migrations_applied": applied}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
