"""Fault test: a real Redis killed and restarted under load across two chat instances.

Every member (joined before the outage, or during it) must end with every message acked in its
project after it joined: live, or through the documented backfill (a client told `resync` reloads
history). Nothing arrives twice. Redis is SIGKILLed (a crash: no shutdown, connections cut), and
every instance keeps sending to its own members throughout the 12 s outage: the case that lost the
first seconds of every outage when catch-up started from a mark the instance's own sends moved.
(The outage's length is not what the catch-up's 30 s overlap bounds: a catch-up starts before the
gap whatever its length; the overlap and the peers' floors cover what was published around its
start, which tests/services/chat/test_chat_core.py drives with the clock in hand.)
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

from devstack.identity import Issuer
from devstack.servers import RedisServer
from tests.services.chat.chat_client import ChatClient, quiet, run
from tests.services.chat.chat_harness import ChatInstance, wait_for

MakeInstance = Callable[..., ChatInstance]
OUTAGE_SECONDS = 12.0
SEND_INTERVAL = 0.05  # per sender: 2 instances x 3 projects x 20/s = 120 messages/s


def redis_state(instance: ChatInstance) -> str:
    return str(instance.health()[1].get("redis"))


async def backfill(client: ChatClient, project: str, since: str) -> set[str]:
    """What a client does on `resync`: reload the project's history after what it had."""
    ids: set[str] = set()
    after = since
    while True:
        page = await client.call("history", project=project, after=after, limit=100)
        assert page["type"] == "history", page
        ids |= {m["id"] for m in page["messages"]}
        if not page["more"] or not page["messages"]:
            return ids
        after = page["messages"][-1]["id"]


def test_no_acked_message_is_lost_or_doubled_across_a_redis_outage(
    make_redis: Callable[..., RedisServer], make_instance: MakeInstance, issuer: Issuer
) -> None:
    redis = make_redis(password="chat-redis-auth")
    a, b = make_instance(redis), make_instance(redis)
    projects = [f"outage-{time.monotonic_ns()}-{i}" for i in range(3)]
    users = itertools.count()

    async def member(instance: ChatInstance, project: str) -> tuple[ChatClient, str]:
        client = await ChatClient.open(instance.ws_url, issuer.mint(f"u{next(users)}", [project]))
        joined = await client.join(project)
        # Messages acked from here on are this member's to receive (keys sort by time).
        return client, str(joined.get("since") or "")

    async def scenario() -> None:
        members: list[tuple[ChatClient, str, str, float]] = []
        for project in projects:
            for instance in (a, a, b, b):
                client, _ = await member(instance, project)
                members.append((client, project, "before", time.time()))
        senders = [(c, p) for c, p, _, _ in members[::2]]  # one per instance per project
        acked: list[tuple[str, str, float]] = []
        stop = asyncio.Event()

        async def send_loop(client: ChatClient, project: str) -> None:
            n = 0
            while not stop.is_set():
                reply = await client.call("send", project=project, text=f"m{n}")
                if reply["type"] == "ack":
                    acked.append((project, reply["id"], time.time()))
                n += 1
                await asyncio.sleep(SEND_INTERVAL)

        loops = [asyncio.create_task(send_loop(c, p)) for c, p in senders]
        await asyncio.sleep(1.5)
        await asyncio.to_thread(redis.kill)
        await asyncio.to_thread(wait_for, lambda: redis_state(a) == redis_state(b) == "down", 10)
        await asyncio.sleep(2.0)
        # Members who join while Redis is down.
        for project, instance in zip(projects, (a, b, a), strict=True):
            client, _ = await member(instance, project)
            members.append((client, project, "during", time.time()))
        await asyncio.sleep(OUTAGE_SECONDS - 2.0)
        await asyncio.to_thread(redis.start)
        await asyncio.to_thread(wait_for, lambda: redis_state(a) == redis_state(b) == "up", 20)
        await asyncio.sleep(2.0)
        stop.set()
        await asyncio.gather(*loops)
        await quiet(3.0)

        problems = []
        for client, project, when, joined_at in members:
            got = [m["id"] for m in client.messages(project)]
            duplicates = len(got) - len(set(got))
            received = set(got)
            resynced = any(e.get("type") == "resync" and e.get("project") == project for e in client.events)
            if resynced:
                received |= await backfill(client, project, min(got) if got else "0")
            expected = {key for p, key, at in acked if p == project and at > joined_at + 0.05}
            missing = expected - received
            if missing or duplicates:
                problems.append((project, when, len(expected), len(missing), duplicates, resynced))
        assert acked and not problems, problems
        for client, *_ in members:
            await client.close()

    run(scenario(), timeout=120)
