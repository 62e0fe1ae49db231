"""Removing uploads that were requested but never completed.

A pending row whose form has long expired can never become available. The upload role sweeps such
rows and their objects periodically (concurrent tasks skip each other's rows); the bucket's
lifecycle rule for objects still tagged `upload-state=pending` is the safety net for objects whose
row is gone or whose sweep never ran.
"""

from __future__ import annotations

import asyncio
import logging
import random

from files_service.db import Database, DatabaseUnavailable
from files_service.routes import stored_key
from files_service.storage import ObjectStore, StorageError, StorageForbidden

log = logging.getLogger(__name__)

# Generous: a client may retry completion long after its form expired if the upload itself made it.
ABANDONED_AFTER_SECONDS = 24 * 3600
SWEEP_INTERVAL_SECONDS = 600.0
BATCH = 500


async def sweep_abandoned(
    db: Database, storage: ObjectStore, older_than_seconds: float = ABANDONED_AFTER_SECONDS
) -> int:
    """One pass; returns how many abandoned uploads were removed."""
    removed = 0
    while True:
        keys = await db.delete_abandoned(older_than_seconds, BATCH)
        for key in keys:
            try:
                # And its stored copy, which exists if a completion failed between copying the
                # object and marking the row available; the copy carries no pending tag.
                await storage.delete(stored_key(key))
                await storage.delete(key)
            except StorageError as err:
                # The row is gone already; an object left behind costs storage, not correctness (the
                # lifecycle rule expires it). A refusal is a permission fault someone must fix.
                level = logging.ERROR if isinstance(err, StorageForbidden) else logging.WARNING
                log.log(level, "could not delete abandoned object %s: %s", key, err)
        removed += len(keys)
        if len(keys) < BATCH:
            return removed


async def sweep_forever(db: Database, storage: ObjectStore) -> None:
    while True:
        # Jitter, so that tasks started together do not sweep in lockstep.
        await asyncio.sleep(SWEEP_INTERVAL_SECONDS * random.uniform(0.5, 1.5))  # noqa: S311 - not security
        try:
            removed = await sweep_abandoned(db, storage)
        except DatabaseUnavailable as err:
            log.warning("abandoned-upload sweep skipped: %s", err)
            continue
        if removed:
            log.info("removed %d abandoned uploads", removed)
