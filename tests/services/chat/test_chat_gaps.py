"""Gaps in live delivery: where a catch-up starts, and, in process against a real Redis, the gap
notice a publisher sends for messages it had to drop unsent (so receivers whose own subscription
never broke still fetch them from the store). What the hub does with gaps is in test_chat_core.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from chat_service.adapters import redis_bus as bus_module
from chat_service.adapters.redis_bus import RedisBus
from chat_service.core.keys import KeyClock, key_floor, new_instance_id
from chat_service.core.project import CATCHUP_OVERLAP_MS, ProjectState, gap_start
from chat_service.settings import RedisSettings

from devstack.servers import LOCALHOST, RedisServer, free_port


def test_a_catch_up_starts_from_when_the_subscription_was_last_heard_not_from_later_sends() -> None:
    state = ProjectState(created_ms=1_000_000)
    heard = 5_000_000
    # Whatever the instance sent meanwhile, the start is the last moment it knew it was receiving.
    assert gap_start(heard, state) == key_floor(heard - CATCHUP_OVERLAP_MS)
    # Never before the project's first member joined here (less the overlap)...
    late = ProjectState(created_ms=heard + 60_000)
    assert gap_start(heard, late) == key_floor(late.created_ms - CATCHUP_OVERLAP_MS)
    # ... which is also the start when there was no earlier subscription at all.
    assert gap_start(None, state) == key_floor(state.created_ms - CATCHUP_OVERLAP_MS)
    assert gap_start(heard, None) is None


def test_dropped_publishes_are_announced_to_receivers_once_publishing_works(
    monkeypatch: pytest.MonkeyPatch, make_redis: Callable[..., RedisServer]
) -> None:
    monkeypatch.setattr(bus_module, "OUTBOX_LIMIT", 10)
    port = free_port()
    settings = RedisSettings(host=LOCALHOST, port=port, tls=False, auth_token=None)
    sender_id = new_instance_id()
    clock = KeyClock(sender_id)
    gaps: list[tuple[str, str]] = []
    messages: list[str] = []

    async def scenario() -> None:
        arrived = asyncio.Event()

        class Receiver:
            def message(self, project: str, key: str, event: bytes) -> None:
                messages.append(key)
                arrived.set()

            def gap_announced(self, project: str, key: str) -> None:
                gaps.append((project, key))
                arrived.set()

            def resubscribed(self, *_: object) -> None:
                return None

            def peer_alive(self, peer: str, floor_ms: int | None) -> None:
                return None

            def floor_ms(self) -> int:
                return 0

        sender = RedisBus(settings, sender_id)
        receiver = RedisBus(settings, new_instance_id())
        # The sender cannot publish (its publisher is not running, as while Redis is away): 30
        # sends overflow its outbox of 10, dropping the oldest 20.
        keys = [clock.next("p1")[0] for _ in range(30)]
        for key in keys:
            sender.publish("p1", key, b'{"type":"message"}')
        assert sender.dropped == 20
        make_redis(port=port)
        receiver.start(Receiver())
        async with asyncio.timeout(20):
            for _ in range(400):
                if receiver.up:
                    break
                await asyncio.sleep(0.05)
            subscribed = receiver.subscribe("p1")
            assert subscribed is not None
            await subscribed
            sender.start(Receiver())
            while len(messages) < 10 or not gaps:
                arrived.clear()
                await arrived.wait()
        # One notice, naming the first key dropped; then the ten kept messages, in order.
        assert gaps == [("p1", keys[0])]
        assert messages == keys[20:]
        await sender.close()
        await receiver.close()

    asyncio.run(scenario())


def test_project_names_cannot_reach_the_claims_partitions() -> None:
    from chat_service.core import protocol as proto
    from chat_service.schema import CLAIM_PARTITION_PREFIX

    assert proto.RESERVED_PROJECT_PREFIX == CLAIM_PARTITION_PREFIX
    with pytest.raises(proto.ProtocolError) as err:
        proto.parse(b'{"type":"join","project":"send#p1"}', 4096)
    assert err.value.code == "bad_request"


def test_beats_carry_the_floor_and_old_or_garbled_beats_do_not_break_the_reader() -> None:
    origin = new_instance_id()
    assert bus_module.parse_beat(bus_module.beat(origin.encode(), 1_700_000_000_123)) == (
        origin,
        1_700_000_000_123,
    )
    # An instance of the previous release (rolling deployment): alive, floor unknown.
    assert bus_module.parse_beat(b"beat|" + origin.encode()) == (origin, None)
    for floor in (b"", b"-1", b"12x", b"9" * 14, b"\xff"):
        assert bus_module.parse_beat(b"beat|" + origin.encode() + b"|" + floor) == (origin, None)
    for junk in (b"", b"beat|", b"beat||5", b"hello", b"beat|\xff\xfe|1", b"beat|a b|1"):
        assert bus_module.parse_beat(junk) is None


def test_over_a_real_redis_a_peer_hears_the_floor_of_each_beat_and_the_publisher_of_each_message(
    monkeypatch: pytest.MonkeyPatch, make_redis: Callable[..., RedisServer]
) -> None:
    monkeypatch.setattr(bus_module, "BEAT_SECONDS", 0.05)
    port = free_port()
    make_redis(port=port)
    settings = RedisSettings(host=LOCALHOST, port=port, tls=False, auth_token=None)
    sender_id, receiver_id = new_instance_id(), new_instance_id()
    heard: list[tuple[str, int | None]] = []
    floors = iter(range(1_000, 10**6, 1_000))

    class Receiver:
        def __init__(self, floor: Callable[[], int], heard: list[tuple[str, int | None]]) -> None:
            self.floor = floor
            self.heard = heard

        def message(self, project: str, key: str, event: bytes) -> None:
            return None

        def gap_announced(self, project: str, key: str) -> None:
            return None

        def resubscribed(self, *_: object) -> None:
            return None

        def peer_alive(self, peer: str, floor_ms: int | None) -> None:
            self.heard.append((peer, floor_ms))
            arrived.set()

        def floor_ms(self) -> int:
            return self.floor()

    arrived = asyncio.Event()

    async def scenario() -> None:
        sender = RedisBus(settings, sender_id)
        receiver = RedisBus(settings, receiver_id)
        receiver.start(Receiver(lambda: 0, heard))
        async with asyncio.timeout(20):
            for _ in range(400):
                if receiver.up:
                    break
                await asyncio.sleep(0.05)
            subscribed = receiver.subscribe("p1")
            assert subscribed is not None
            await subscribed
            sender.start(Receiver(lambda: next(floors), []))
            while len([h for h in heard if h[1] is not None]) < 3:
                arrived.clear()
                await arrived.wait()
            (key,) = [KeyClock(sender_id).next("p1")[0]]
            sender.publish("p1", key, b'{"type":"message"}')
            while (sender_id, None) not in heard:
                arrived.clear()
                await arrived.wait()
        beats = [floor for peer, floor in heard if peer == sender_id and floor is not None]
        # Each beat carries the floor the sender's receiver gave when the beat was queued, in order.
        assert beats[:3] == [1_000, 2_000, 3_000]
        # Its own beats are not heard by itself; only the sender is heard here.
        assert {peer for peer, _ in heard} == {sender_id}
        await sender.close()
        await receiver.close()

    asyncio.run(scenario())
