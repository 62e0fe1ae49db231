"""Reads from the message store: history requests, and the catch-up after a Redis outage.

Reads run on the server's read threads (`ChatServer.reads`), apart from the writes that acks wait
for. Both take the server they work for, which owns the store, the threads and the projects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Final

from chat_service import protocol as proto
from chat_service.keys import key_floor
from chat_service.store import MessageStore, StoredMessage

if TYPE_CHECKING:
    from chat_service.connection import Connection
    from chat_service.projects import ProjectState
    from chat_service.server import ChatServer

log = logging.getLogger(__name__)

# A catch-up starts, for every project, from the last moment the instance knew its subscription
# was receiving (the last read on the connection that was lost), less the longest a message can be
# between getting its id and being published: ids are assigned before the store write, publishes
# follow it. A write normally takes milliseconds; the store client's timeouts (2 s connect, 5 s
# read) and retries (botocore's `max_attempts` 4 are retries, so 5 attempts, with backoff) let a
# single slow call reach ~40 s, and unprocessed items are retried on top. The overlap covers the
# ordinary slow write; a message published later than that after its id is logged as a warning
# (server.persisted), because a member whose subscription broke meanwhile may then miss it live
# (it stays in history). Not from the newest id delivered here:
# the instance's own sends move that during the gap and would skip what others sent meanwhile.
CATCHUP_OVERLAP_MS: Final = 30_000
# Past this many messages in one project's gap, members are told to reload (`resync`) instead.
CATCHUP_LIMIT: Final = 5000
CATCHUP_PAGE: Final = 100
# Projects caught up at once: all of them start together from their own gap, but a fleet-wide
# outage must not turn into thousands of concurrent queries.
CATCHUP_CONCURRENCY: Final = 8


def gap_start(heard_ms: int | None, state: ProjectState | None) -> str | None:
    """Where `state`'s catch-up starts after a gap whose subscription was last heard at `heard_ms`:
    that moment less the overlap, but not before the project's first member joined here (less the
    overlap), which is also the start when there was no earlier subscription."""
    if state is None:
        return None
    joined = state.created_ms - CATCHUP_OVERLAP_MS
    since = joined if heard_ms is None else max(heard_ms - CATCHUP_OVERLAP_MS, joined)
    return key_floor(since)


async def answer_history(server: ChatServer, conn: Connection, request: proto.History) -> None:
    """Answer a `history` request; the connection counted it in `reading` before spawning this."""
    try:
        await _answer(server, conn, request)
    finally:
        conn.reading -= 1


async def _answer(server: ChatServer, conn: Connection, request: proto.History) -> None:
    try:
        page, more = await asyncio.get_running_loop().run_in_executor(
            server.reads, _page, server.store, request.project, request.before, request.after, request.limit
        )
    except Exception as err:
        log.warning("history query for %s failed: %s", request.project, err)
        conn.send(proto.error("unavailable", "history is unavailable; try again", request.ref))
        return
    conn.send(
        proto.encode(
            {
                "type": "history",
                "ref": request.ref,
                "project": request.project,
                "order": "asc" if request.after is not None else "desc",
                "messages": [
                    {"id": m.key, "project": m.project, "user": m.user, "text": m.text, "ts": m.ts}
                    for m in page
                ],
                "more": more,
            }
        )
    )


async def catch_up(server: ChatServer, projects: list[str], confirmed: asyncio.Future[list[None]]) -> None:
    """Deliver what `projects` missed during a gap, then what Redis buffered meanwhile; each project
    whose gap cannot be shown filled gets `resync`. Every project of the call starts at once (at most
    CATCHUP_CONCURRENCY querying), from the start `ChatServer.gap` recorded when the gap was seen."""
    # Query only once the subscriptions are live, so every message is either in the store by
    # the time of the query or arrives through Redis afterwards.
    with contextlib.suppress(Exception):
        await confirmed
    limit = asyncio.Semaphore(CATCHUP_CONCURRENCY)

    async def one(project: str) -> None:
        async with limit:
            await _catch_up_project(server, project)

    await asyncio.gather(*(one(p) for p in projects))


async def _catch_up_project(server: ChatServer, project: str) -> None:
    state = server.projects.get(project)
    if state is None:
        return
    loop = asyncio.get_running_loop()
    complete = True
    try:
        # A gap seen while this runs (another outage, a publisher's dropped messages) moves
        # `catchup_from`; the loop takes it up before it hands over to live delivery.
        while state.catchup_from is not None:
            confirmed = state.confirmed
            if confirmed is not None and not confirmed.done():
                with contextlib.suppress(Exception):
                    await confirmed
            after, state.catchup_from = state.catchup_from, None
            if not server.settings.persist:
                complete = False  # nothing to catch up from: the clients must know
                continue
            fetched = 0
            while True:
                page, more = await loop.run_in_executor(
                    server.reads, _page_after, server.store, project, after, CATCHUP_PAGE
                )
                if server.projects.get(project) is not state:
                    return  # every member left; nobody to deliver to
                for message in page:
                    server.deliver_remote(project, state, message.key, proto.encode(message.event()))
                fetched += len(page)
                if not more:
                    break
                if fetched >= CATCHUP_LIMIT:
                    complete = False
                    break
                after = page[-1].key
    except Exception as err:
        log.warning("catching up project %s after a gap failed: %s", project, err)
        complete = False
    finally:
        state.catching = False
        state.catchup_from = None
        buffered, state.buffer = state.buffer or [], None
        for key, event in buffered:
            server.deliver_remote(project, state, key, event)
    if not complete:
        log.warning("project %s: gap not filled from the store; members told to resync", project)
        server.fan_out(state, proto.text_frame(proto.encode({"type": "resync", "project": project})))


def _page(
    store: MessageStore, project: str, before: str | None, after: str | None, limit: int
) -> tuple[list[StoredMessage], bool]:
    return store.page(project, before=before, after=after, limit=limit)


def _page_after(
    store: MessageStore, project: str, after: str, limit: int
) -> tuple[list[StoredMessage], bool]:
    return store.page(project, before=None, after=after, limit=limit, consistent=True)
