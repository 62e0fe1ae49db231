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
    from chat_service.server import ChatServer

log = logging.getLogger(__name__)

# After a Redis outage each project is caught up from DynamoDB from a little before the newest
# message delivered here (covering messages that were still being written then), up to a limit;
# past it, clients are told to reload history themselves.
CATCHUP_OVERLAP_MS: Final = 10_000
CATCHUP_LIMIT: Final = 1000
CATCHUP_PAGE: Final = 100


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
    """Deliver what `projects` missed while Redis was down, then what Redis buffered meanwhile."""
    # Query only once the subscriptions are live, so every message is either in DynamoDB by
    # the time of the query or arrives through Redis afterwards.
    with contextlib.suppress(Exception):
        await confirmed
    loop = asyncio.get_running_loop()
    for project in projects:
        state = server.projects.get(project)
        if state is None or state.buffer is None:
            continue
        complete = True
        try:
            if server.settings.persist:
                after = key_floor(int(state.mark[:13]) - CATCHUP_OVERLAP_MS)
                fetched = 0
                while True:
                    page, more = await loop.run_in_executor(
                        server.reads, _page_after, server.store, project, after, CATCHUP_PAGE
                    )
                    if server.projects.get(project) is not state:
                        break
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
            log.warning("catching up project %s after a redis outage failed: %s", project, err)
            complete = False
        finally:
            buffered, state.buffer = state.buffer or [], None
            for key, event in buffered:
                server.deliver_remote(project, state, key, event)
        if not complete:
            server.fan_out(state, proto.text_frame(proto.encode({"type": "resync", "project": project})))


def _page(
    store: MessageStore, project: str, before: str | None, after: str | None, limit: int
) -> tuple[list[StoredMessage], bool]:
    return store.page(project, before=before, after=after, limit=limit)


def _page_after(
    store: MessageStore, project: str, after: str, limit: int
) -> tuple[list[StoredMessage], bool]:
    return store.page(project, before=None, after=after, limit=limit)
