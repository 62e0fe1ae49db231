"""The chat core in process: the hub and sessions (chat_service.core) over fakes of their ports
(tests/services/chat/chat_fakes.py), with no sockets, Redis or DynamoDB."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
import pytest
from chat_service.core import hub as hub_module
from chat_service.core import protocol as proto
from chat_service.core.hub import PEER_SILENCE_MS, PendingSend
from chat_service.core.keys import KeyClock, key_floor, new_instance_id
from chat_service.core.messages import StoredMessage
from chat_service.core.project import CATCHUP_OVERLAP_MS, gap_start
from chat_service.core.session import FRAME_BURST, MAX_EARLY_FRAMES, TOKEN_LEEWAY_SECONDS

from tests.services.chat.chat_fakes import FakePeer, GatedOffload, World, frame


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def other_keys(count: int, project: str = "p") -> list[str]:
    """Keys another instance assigned, oldest first."""
    clock = KeyClock(new_instance_id())
    return [clock.next(project)[0] for _ in range(count)]


def event(key: str, project: str = "p", text: str = "t") -> bytes:
    return proto.encode(StoredMessage(project, key, "x", text, 0).event())


def ids(peer: FakePeer) -> list[str]:
    return [m["id"] for m in peer.of_type("message")]


# --- joining ---------------------------------------------------------------------------------------


def test_joined_is_answered_once_the_subscription_is_confirmed_and_says_whether_it_is_live() -> None:
    async def scenario() -> None:
        world = World()
        world.bus.confirm_at_once = False
        session, peer = await world.client(projects=("p", "q"))
        session.receive(frame(type="join", project="p", ref=1))
        await world.settle()
        # A member already (it gets what is sent), but `joined` waits for the subscription.
        assert world.hub.membership.has(session, "p") and peer.received == []
        world.bus.confirm("p")
        await asyncio.sleep(0)
        assert peer.received == [{"type": "joined", "project": "p", "ref": 1, "live": True}]
        # With the bus down, nothing can be confirmed: `joined` at once, not live.
        world.bus.up = False
        session.receive(frame(type="join", project="q", ref=2))
        await world.settle()
        assert peer.received[-1] == {"type": "joined", "project": "q", "ref": 2, "live": False}

    run(scenario)


def test_leave_leave_all_and_disconnect_keep_membership_consistent_both_ways() -> None:
    async def scenario() -> None:
        world = World()
        hub, membership = world.hub, world.hub.membership
        a, peer_a = await world.client("a", ("p", "q"))
        for project in ("p", "q"):
            a.receive(frame(type="join", project=project))
        b, _ = await world.member("b", "p")
        await world.settle()
        assert membership.of(a) == ("p", "q") and membership.of(b) == ("p",)
        assert hub.projects["p"].members == (a, b) and hub.projects["q"].members == (a,)
        a.receive(frame(type="leave", project="p", ref=3))
        assert peer_a.received[-1] == {"type": "left", "project": "p", "ref": 3}
        assert membership.of(a) == ("q",) and hub.projects["p"].members == (b,)
        assert world.bus.wanted == {"p", "q"}
        b.receive(frame(type="leave", project="p"))
        assert "p" not in hub.projects and world.bus.wanted == {"q"} and membership.of(b) == ()
        a.disconnected()
        assert membership.of(a) == () and hub.projects == {} and world.bus.wanted == set()
        # A session that closes itself leaves too.
        c, peer_c = await world.member("c", "p")
        c.close(proto.CLOSE_GOING_AWAY, "bye")
        assert peer_c.closed == (proto.CLOSE_GOING_AWAY, "bye")
        assert membership.of(c) == () and "p" not in hub.projects
        assert hub.stats().projects == 0

    run(scenario)


# --- sending and duplicates ------------------------------------------------------------------------


def test_a_send_is_acked_in_the_same_write_as_the_senders_copy_and_published() -> None:
    async def scenario() -> None:
        world = World()
        sender, peer_s = await world.member("a")
        _, peer_o = await world.member("b")
        sender.receive(frame(type="send", project="p", text="hi", ref="r1"))
        await world.settle()
        assert peer_s.types() == ["ack", "message"]
        ack, message = peer_s.received
        assert ack["ref"] == "r1" and ack["id"] == message["id"] and message["text"] == "hi"
        assert peer_o.received == [message]
        assert [key for _, key, _ in world.bus.published] == [message["id"]]
        assert world.store.messages["p"][0].key == message["id"]
        stats = world.hub.stats()
        assert (stats.accepted, stats.delivered, stats.persisted) == (1, 2, 1)

    run(scenario)


def test_messages_from_the_bus_are_delivered_once_by_exact_id() -> None:
    async def scenario() -> None:
        world = World()
        _, peer_a = await world.member("a")
        _, peer_b = await world.member("b")
        k1, k2 = other_keys(2)
        for key in (k1, k1, k2, k1):
            world.hub.message("p", key, event(key))
        assert ids(peer_a) == ids(peer_b) == [k1, k2]
        # Messages for projects without members here are ignored.
        world.hub.message("elsewhere", k2, event(k2, "elsewhere"))
        assert world.hub.stats().delivered == 4

    run(scenario)


def test_an_own_send_a_catch_up_delivered_first_is_delivered_once_and_still_acked() -> None:
    # This instance's send is stored; a catch-up running meanwhile (consistent reads) finds it in the
    # store and delivers it before the write's completion reaches `persisted`. The members must get
    # it once, and the sender its ack anyway. (Seen in CI as one duplicate per member after an outage.)
    async def scenario() -> None:
        world = World()
        hub = world.hub
        sender, peer_s = await world.member("a")
        _, peer_o = await world.member("b")
        key, ts = hub.keys.next("p")
        message = StoredMessage("p", key, "a", "hi", ts)
        hub.deliver_remote("p", hub.projects["p"], key, proto.encode(message.event()))
        hub.persisted([PendingSend(message, sender, "r1")], None)
        for peer in (peer_s, peer_o):
            assert ids(peer) == [key], peer.received
        assert [a["ref"] for a in peer_s.of_type("ack")] == ["r1"]
        assert peer_o.of_type("ack") == []
        assert [k for _, k, _ in world.bus.published] == [key]  # the other instances still get it

    run(scenario)


def test_a_resend_of_a_claimed_client_id_gets_the_stored_ack_and_reaches_who_lacks_it() -> None:
    async def scenario() -> None:
        world = World()
        sender, peer_s = await world.member("a")
        _, peer_o = await world.member("b")
        sender.receive(frame(type="send", project="p", text="hi", ref=1, client_id="c-1"))
        await world.settle()
        first = peer_s.of_type("ack")[0]
        sender.receive(frame(type="send", project="p", text="hi again", ref=2, client_id="c-1"))
        await world.settle()
        again = peer_s.of_type("ack")[1]
        assert again == {"type": "ack", "ref": 2, "id": first["id"], "ts": first["ts"], "repeated": True}
        # Members here had it: not delivered twice; published again for the other instances.
        assert ids(peer_o) == ids(peer_s) == [first["id"]]
        assert [k for _, k, _ in world.bus.published] == [first["id"], first["id"]]
        assert len(world.store.messages["p"]) == 1

        # On an instance whose members never got it (its first instance died before publishing),
        # the resend delivers the stored message to them.
        elsewhere = World()
        elsewhere.store = world.store
        elsewhere.hub.store = world.store
        resender, peer_r = await elsewhere.member("a")
        _, peer_m = await elsewhere.member("c")
        resender.receive(frame(type="send", project="p", text="hi", ref=3, client_id="c-1"))
        await elsewhere.settle()
        assert peer_r.of_type("ack")[0]["repeated"] is True
        assert ids(peer_m) == ids(peer_r) == [first["id"]]
        assert peer_m.of_type("message")[0]["text"] == "hi"

    run(scenario)


def test_a_failed_write_tells_the_sender_to_send_again_and_delivers_nothing() -> None:
    async def scenario() -> None:
        world = World()
        sender, peer_s = await world.member("a")
        _, peer_o = await world.member("b")

        def fail(messages: list[StoredMessage]) -> Any:
            raise OSError("throttled")

        world.store.write = fail  # type: ignore[method-assign]
        sender.receive(frame(type="send", project="p", text="hi", ref=1))
        await world.settle()
        assert peer_s.received == [
            {
                "type": "error",
                "code": "persist_failed",
                "message": "message was not stored; send it again",
                "ref": 1,
            }
        ]
        assert peer_o.received == [] and world.bus.published == []

    run(scenario)


# --- gaps and catch-ups ----------------------------------------------------------------------------


def test_a_catch_up_starts_from_when_the_subscription_was_last_heard_and_live_messages_wait_for_it() -> None:
    async def scenario() -> None:
        world = World()
        hub = world.hub
        _, peer = await world.member()
        k1, k2, k3 = other_keys(3)
        for key in (k1, k2):
            world.store.add(StoredMessage("p", key, "x", "t", 0))
        confirmed: asyncio.Future[list[None]] = asyncio.get_running_loop().create_future()
        heard = world.wall.ms() + 10_000
        hub.resubscribed(["p"], confirmed, heard)
        # Live during the catch-up (which waits for the subscription): buffered, not delivered.
        hub.message("p", k3, event(k3))
        hub.message("p", k2, event(k2))
        await asyncio.sleep(0)
        assert peer.received == [] and world.store.pages == []
        confirmed.set_result([None])
        await world.settle()
        assert ids(peer) == [k1, k2, k3]
        assert world.store.pages == [("p", None, key_floor(heard - CATCHUP_OVERLAP_MS), True)]
        assert gap_start(heard, hub.projects["p"]) == key_floor(heard - CATCHUP_OVERLAP_MS)
        # Over: live delivery again.
        (k4,) = other_keys(1)
        hub.message("p", k4, event(k4))
        assert ids(peer)[-1] == k4

    run(scenario)


def test_a_catch_up_delivering_a_newer_key_first_does_not_drop_an_older_one_on_its_way() -> None:
    # Another instance B stored k2 while k1 (its older key) was still being written; a catch-up
    # delivers k2 from the store, then B publishes k1 and k2 in order. k1 must still be delivered,
    # and k2 only once: dedup is by exact id, not by the newest key per origin.
    async def scenario() -> None:
        world = World()
        _, peer = await world.member()
        k1, k2 = other_keys(2)
        world.store.add(StoredMessage("p", k2, "u", "two", 0))
        world.hub.gap_announced("p", k2)
        await world.settle()
        world.hub.message("p", k1, event(k1))
        world.hub.message("p", k2, event(k2))
        assert ids(peer) == [k2, k1]

    run(scenario)


def test_a_gap_notice_catches_the_project_up_from_the_first_dropped_key() -> None:
    async def scenario() -> None:
        world = World()
        _, peer = await world.member()
        keys = other_keys(3)
        for key in keys:
            world.store.add(StoredMessage("p", key, "x", "t", 0))
        world.hub.gap_announced("p", keys[1])
        await world.settle()
        after = key_floor(int(keys[1][:13]) - 1)
        assert world.store.pages == [("p", None, after, True)]
        assert ids(peer) == [k for k in keys if k > after]
        # Nothing to catch up for a project without members here.
        world.hub.gap_announced("elsewhere", keys[0])
        await world.settle()
        assert len(world.store.pages) == 1

    run(scenario)


def test_a_silent_peer_makes_every_project_catch_up_from_its_last_beat() -> None:
    async def scenario() -> None:
        world = World()
        hub = world.hub
        _, peer = await world.member(project="p")
        beat = world.wall.ms()
        hub.peer_alive("PEER0001", None)
        (key,) = other_keys(1)
        world.store.add(StoredMessage("p", key, "x", "t", 0))
        hub.check_peers(beat + PEER_SILENCE_MS)
        await world.settle()
        assert world.store.pages == [] and hub.stats().peers == ["PEER0001"]
        # Not judged while this instance hears nobody: its clock restarts instead.
        world.bus.listening = False
        hub.check_peers(beat + PEER_SILENCE_MS + 1)
        assert hub.peers["PEER0001"] == beat + PEER_SILENCE_MS + 1
        world.bus.listening = True
        hub.peers["PEER0001"] = beat
        hub.check_peers(beat + PEER_SILENCE_MS + 1)
        await world.settle()
        assert world.store.pages == [("p", None, key_floor(beat - CATCHUP_OVERLAP_MS), True)]
        assert hub.stats().peers == []
        assert ids(peer) == [key]

    run(scenario)


def keys_at(ms: int, count: int, project: str = "p", instance: str | None = None) -> list[str]:
    """Keys another instance assigned at wall-clock `ms`."""
    clock = KeyClock(instance or new_instance_id(), clock=lambda: ms)
    return [clock.next(project)[0] for _ in range(count)]


def test_a_publish_delayed_past_the_overlap_reaches_a_member_whose_subscription_broke() -> None:
    # Instance A gave a message its id at t0, but its store write took 40 s; meanwhile A's beats
    # said "nothing I publish from now on is older than t0". This instance's subscription broke at
    # t0 + 40 s, just as A finally stored and published the message: it was missed live, and it is
    # older than the last moment heard less the overlap. The catch-up reaches back to A's floor.
    async def scenario() -> None:
        world = World()
        hub = world.hub
        _, peer = await world.member()
        t0 = world.wall.ms()
        hub.peer_alive("PEERAAAA", t0)
        world.wall.now += 40.0
        hub.peer_alive("PEERAAAA", t0)  # still being written: the floor stays at t0
        heard = world.wall.ms()
        (late,) = keys_at(t0, 1, instance="PEERAAAA")
        (fresh,) = other_keys(1)
        world.store.add(StoredMessage("p", late, "a", "slow write", t0))
        world.store.add(StoredMessage("p", fresh, "a", "after", heard))
        # Without the floor, the catch-up would start after the late message.
        assert (gap_start(heard, hub.projects["p"]) or "") > late
        hub.resubscribed(["p"], _confirmed(), heard)
        await world.settle()
        assert ids(peer) == [late, fresh]
        assert world.store.pages == [("p", None, key_floor(t0), True)]

    run(scenario)


def _confirmed() -> asyncio.Future[list[None]]:
    done: asyncio.Future[list[None]] = asyncio.get_running_loop().create_future()
    done.set_result([])
    return done


def test_a_silent_peer_is_caught_up_from_its_floor_when_that_is_older_than_its_last_beat() -> None:
    async def scenario() -> None:
        world = World()
        hub = world.hub
        _, peer = await world.member()
        t0 = world.wall.ms()
        world.wall.now += 50.0
        hub.peer_alive("PEERAAAA", t0)  # its last beat: a message from t0 still being written
        (late,) = keys_at(t0, 1, instance="PEERAAAA")
        world.store.add(StoredMessage("p", late, "a", "stored, then the instance died", t0))
        hub.check_peers(world.wall.ms() + PEER_SILENCE_MS + 1)
        await world.settle()
        assert ids(peer) == [late] and hub.peer_floors == {}

    run(scenario)


def test_a_peer_that_dies_before_its_first_beat_is_known_from_its_messages() -> None:
    # The bus tells the hub a message's publisher is alive (RedisBus._read); so one that published
    # and died before ever beating is still judged silent, and its stored messages fetched.
    async def scenario() -> None:
        world = World()
        hub = world.hub
        _, peer = await world.member()
        k1, k2 = keys_at(world.wall.ms(), 2, instance="PEERBBBB")
        hub.peer_alive("PEERBBBB", None)
        hub.message("p", k1, event(k1))
        world.store.add(StoredMessage("p", k1, "b", "t", 0))
        world.store.add(StoredMessage("p", k2, "b", "stored, never published", 0))
        assert hub.stats().peers == ["PEERBBBB"]
        hub.check_peers(world.wall.ms() + PEER_SILENCE_MS + 1)
        await world.settle()
        assert ids(peer) == [k1, k2]

    run(scenario)


def test_the_floor_is_the_oldest_id_still_being_stored_else_now() -> None:
    async def scenario() -> None:
        writes = GatedOffload()
        world = World(writes=writes)
        hub = world.hub
        sender, _ = await world.member("s")
        assert hub.floor_ms() == world.wall.ms()
        sender.receive(frame(type="send", project="p", text="slow", ref=1))
        await asyncio.sleep(0)
        sent_at = world.wall.ms()
        world.wall.now += 45.0
        sender.receive(frame(type="send", project="p", text="behind it", ref=2))
        await asyncio.sleep(0)
        assert writes.running >= 1 and hub.persister.pending == 2
        assert hub.floor_ms() == sent_at  # held back by the first, however long it takes
        writes.release.set()
        await world.settle()
        assert hub.persister.pending == 0 and hub.floor_ms() == world.wall.ms()

    run(scenario)


def test_no_key_assigned_after_a_beat_is_below_its_floor_even_if_the_clock_steps_back() -> None:
    async def scenario() -> None:
        world = World()
        hub = world.hub
        sender, _ = await world.member("s")
        floor = hub.floor_ms()
        world.wall.now -= 5.0  # NTP steps the clock back after the beat went out
        sender.receive(frame(type="send", project="p", text="after the beat", ref=1))
        await world.settle()
        (stored,) = world.store.messages["p"]
        assert stored.key >= key_floor(floor)

    run(scenario)


def test_dedup_keeps_every_key_a_catch_up_from_a_peer_floor_could_deliver_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub_module, "SEEN_PRUNE_AT", 4)
    monkeypatch.setattr(hub_module, "SEEN_PRUNE_EVERY", 1)

    async def scenario() -> None:
        world = World()
        hub = world.hub
        _, peer = await world.member()
        t0 = world.wall.ms()
        old = keys_at(t0, 6)
        for key in old:
            hub.message("p", key, event(key))
        hub.peer_alive("PEERAAAA", t0)
        world.wall.now += hub_module.SEEN_RETAIN_MS / 1000 + 60
        (new,) = other_keys(1)
        hub.message("p", new, event(new))  # prunes: but not below the peer's floor
        assert set(old) <= hub.projects["p"].seen
        for key in old:  # a catch-up from the floor delivers them again: dropped
            hub.message("p", key, event(key))
        assert ids(peer) == [*old, new]
        hub.peer_floors.clear()
        (newer,) = other_keys(1)
        hub.message("p", newer, event(newer))
        assert not set(old) & hub.projects["p"].seen

    run(scenario)


def test_catch_ups_after_an_outage_run_at_once_but_at_most_catchup_concurrency_querying() -> None:
    projects = tuple(f"p{i}" for i in range(20))

    async def scenario() -> None:
        reads = GatedOffload()
        world = World(reads=reads)
        hub = world.hub
        session, peer = await world.client(projects=projects)
        for project in projects:
            session.receive(frame(type="join", project=project))
        await asyncio.sleep(0)
        for project in projects:
            (key,) = other_keys(1, project)
            world.store.add(StoredMessage(project, key, "x", "t", 0))
        heard = world.wall.ms()
        hub.resubscribed(list(projects), _confirmed(), heard)
        for _ in range(20):
            await asyncio.sleep(0)
        assert reads.running == hub_module.CATCHUP_CONCURRENCY
        reads.release.set()
        await world.settle()
        assert reads.peak == hub_module.CATCHUP_CONCURRENCY and reads.calls == len(projects)
        # Each from its own start, none waiting for another's turn to compute it.
        assert sorted(p[0] for p in world.store.pages) == sorted(projects)
        assert {p[2] for p in world.store.pages} == {key_floor(heard - CATCHUP_OVERLAP_MS)}
        assert len(peer.of_type("message")) == len(projects)

    run(scenario)


def test_a_45_s_gap_with_own_sends_and_another_instances_messages_loses_nothing_in_three_projects() -> None:
    # The outage of the issue: every project catches up from when the subscription was last heard,
    # whatever this instance sent meanwhile, and each member ends with every message exactly once.
    projects = ("p0", "p1", "p2")

    async def scenario() -> None:
        world = World()
        hub = world.hub
        members = {p: await world.member(f"m-{p}", p) for p in projects}
        senders = {p: (await world.member(f"s-{p}", p))[0] for p in projects}
        for _, peer in members.values():
            peer.received.clear()
        hub.peer_alive("PEERAAAA", world.wall.ms())
        heard = world.wall.ms()
        world.bus.listening = False
        others: dict[str, list[str]] = {p: [] for p in projects}
        for second in range(45):
            world.wall.now += 1.0
            world.mono.now += 1.0
            for project in projects:
                senders[project].receive(frame(type="send", project=project, text=f"own {second}"))
                (key,) = keys_at(world.wall.ms(), 1, project, instance="PEERAAAA")
                world.store.add(StoredMessage(project, key, "a", f"theirs {second}", world.wall.ms()))
                others[project].append(key)
            await world.settle()
        world.bus.listening = True
        hub.resubscribed(list(projects), _confirmed(), heard)
        await world.settle()
        for project, (_, peer) in members.items():
            got = ids(peer)
            own = [m.key for m in world.store.messages[project] if m.key not in others[project]]
            assert len(own) == 45
            assert sorted(got) == sorted(own + others[project]), project
            assert len(got) == len(set(got)) == 90
            assert "resync" not in peer.types()

    run(scenario)


def test_fan_out_latency_is_observed_once_per_message_sent_here_or_live_from_the_bus() -> None:
    async def scenario() -> None:
        world = World()
        hub = world.hub
        seen: list[int] = []
        hub.fanout_latency = seen.append
        sender, _ = await world.member("s")
        await world.member("m")
        sender.receive(frame(type="send", project="p", text="hi", ref=1))
        await world.settle()
        assert seen == [0]  # the fake clock stood still: stored and fanned out in the same ms
        (key,) = keys_at(world.wall.ms() - 250, 1)
        hub.message("p", key, event(key))
        hub.message("p", key, event(key))  # a duplicate is not delivered, so not observed
        assert seen == [0, 250]
        # A catch-up's deliveries are not live: their delay is the gap's, not the fan-out's.
        (old,) = keys_at(world.wall.ms() - 40_000, 1)
        world.store.add(StoredMessage("p", old, "x", "t", 0))
        hub.gap_announced("p", old)
        await world.settle()
        assert seen == [0, 250]

    run(scenario)


def test_a_gap_that_cannot_be_shown_filled_makes_members_resync(monkeypatch: pytest.MonkeyPatch) -> None:
    resync = {"type": "resync", "project": "p"}

    async def store_fails() -> None:
        world = World()
        _, peer = await world.member()
        world.store.fail_pages = True
        (k1, k2) = other_keys(2)
        world.hub.gap_announced("p", k1)
        world.hub.message("p", k2, event(k2))  # waits behind the catch-up, then follows it
        await world.settle()
        assert peer.received[-1] == resync and ids(peer) == [k2]

    async def too_many() -> None:
        monkeypatch.setattr(hub_module, "CATCHUP_LIMIT", 4)
        monkeypatch.setattr(hub_module, "CATCHUP_PAGE", 2)
        world = World()
        _, peer = await world.member()
        keys = other_keys(10)
        for key in keys:
            world.store.add(StoredMessage("p", key, "x", "t", 0))
        world.hub.gap_announced("p", keys[0])
        await world.settle()
        assert ids(peer) == keys[:4] and peer.received[-1] == resync

    async def no_store() -> None:
        world = World(persist=False)
        _, peer = await world.member()
        world.hub.gap_announced("p", other_keys(1)[0])
        await world.settle()
        assert peer.received == [resync] and world.store.pages == []

    for scenario in (store_fails, too_many, no_store):
        run(scenario)


# --- sessions --------------------------------------------------------------------------------------


def test_frames_before_authentication_are_replayed_after_it_and_capped() -> None:
    async def scenario() -> None:
        world = World()
        world.verifier.add("t", "u", ["p"], world.wall.now + 3600)
        world.verifier.gate = asyncio.Event()
        peer = FakePeer()
        session = world.sessions.open(peer)
        session.start("t")
        session.receive(frame(type="join", project="p", ref=1))
        session.receive(frame(type="ping", ref=2))
        await asyncio.sleep(0)
        assert peer.received == []
        world.verifier.gate.set()
        await world.settle()
        assert peer.types() == ["hello", "joined", "pong"]
        assert peer.received[0]["user"] == "u" and peer.received[0]["limits"]["history_limit"] == 100

        world.verifier.gate = asyncio.Event()
        flooder = FakePeer()
        session = world.sessions.open(flooder)
        session.start("t")
        for _ in range(MAX_EARLY_FRAMES):
            session.receive(frame(type="ping"))
        assert flooder.closed is None
        session.receive(frame(type="ping"))
        assert flooder.closed == (proto.CLOSE_RATE_LIMITED, "too many frames before authentication")
        world.verifier.gate.set()
        await world.settle()
        assert flooder.received == []  # closed before its token was checked: never opened

    run(scenario)


def test_a_missing_or_bad_token_closes_with_4401() -> None:
    async def scenario() -> None:
        world = World()
        for token, reason in (
            (None, "unauthorized: missing bearer token"),
            ("nope", "unauthorized: invalid token"),
        ):
            peer = FakePeer()
            world.sessions.open(peer).start(token)
            await world.settle()
            assert peer.closed == (proto.CLOSE_UNAUTHORIZED, reason) and peer.received == []

    run(scenario)


def test_too_many_frames_close_the_session() -> None:
    async def scenario() -> None:
        world = World()
        session, peer = await world.client()
        for _ in range(int(FRAME_BURST)):  # the clock stands still: no refill
            session.receive(frame(type="ping"))
        assert len(peer.of_type("pong")) == FRAME_BURST and peer.closed is None
        session.receive(frame(type="ping"))
        assert peer.closed == (proto.CLOSE_RATE_LIMITED, "rate limit exceeded: too many frames")

    run(scenario)


def test_sends_over_the_rate_get_rate_limited_with_retry_after() -> None:
    async def scenario() -> None:
        world = World()
        session, peer = await world.member()
        for i in range(20):  # the burst
            session.receive(frame(type="send", project="p", text="x", ref=i))
        session.receive(frame(type="send", project="p", text="x", ref="over"))
        await world.settle()
        (error,) = peer.of_type("error")
        assert error == {
            "type": "error",
            "code": "rate_limited",
            "message": "sending too fast",
            "ref": "over",
            "retry_after_ms": 101,  # one token at 10/s, rounded up
        }
        assert len(peer.of_type("ack")) == 20
        world.mono.now += 0.2
        session.receive(frame(type="send", project="p", text="x", ref="later"))
        await world.settle()
        assert peer.of_type("ack")[-1]["ref"] == "later"

    run(scenario)


def test_sends_need_a_join_and_joins_need_membership() -> None:
    async def scenario() -> None:
        world = World()
        session, peer = await world.client(projects=("p",))
        session.receive(frame(type="send", project="p", text="x", ref=1))
        assert peer.received == [
            {
                "type": "error",
                "code": "not_joined",
                "message": "join the project before sending to it",
                "ref": 1,
            }
        ]
        session.receive(frame(type="nonsense", ref=2))
        assert peer.received[-1]["code"] == "unknown_type" and peer.received[-1]["ref"] == 2
        session.receive(frame(type="join", project="secret"))
        assert peer.closed == (proto.CLOSE_FORBIDDEN, "forbidden: not a member of project secret")
        assert world.hub.membership.of(session) == () and "secret" not in world.hub.projects

        other, peer_o = await world.client(projects=("p",))
        other.receive(frame(type="history", project="secret"))
        assert peer_o.closed == (proto.CLOSE_FORBIDDEN, "forbidden: not a member of project secret")

    run(scenario)


def test_a_draining_instance_refuses_sends() -> None:
    async def scenario() -> None:
        world = World()
        session, peer = await world.member()
        world.hub.drain()
        session.receive(frame(type="send", project="p", text="x", ref=1))
        await world.settle()
        assert peer.received == [
            {
                "type": "error",
                "code": "unavailable",
                "message": "server is restarting; reconnect and resend",
                "ref": 1,
            }
        ]
        assert world.hub.stats().draining and world.hub.stats().accepted == 0

    run(scenario)


def test_history_is_answered_from_the_store_two_requests_at_a_time() -> None:
    async def scenario() -> None:
        world = World()
        session, peer = await world.client()
        keys = other_keys(3)
        for key in keys:
            world.store.add(StoredMessage("p", key, "x", key[-4:], 0))
        session.receive(frame(type="history", project="p", limit=2, ref=1))
        session.receive(frame(type="history", project="p", after=keys[0], ref=2))
        session.receive(frame(type="history", project="p", ref=3))
        await world.settle()
        first, second = peer.of_type("history")
        assert (
            [m["id"] for m in first["messages"]] == keys[:0:-1] and first["more"] and first["order"] == "desc"
        )
        assert [m["id"] for m in second["messages"]] == keys[1:] and second["order"] == "asc"
        (limited,) = peer.of_type("error")
        assert limited["code"] == "rate_limited" and limited["ref"] == 3
        world.store.fail_pages = True
        session.receive(frame(type="history", project="p", ref=4))
        await world.settle()
        assert peer.received[-1] == {
            "type": "error",
            "code": "unavailable",
            "message": "history is unavailable; try again",
            "ref": 4,
        }

    run(scenario)


def test_a_token_ends_its_session_at_its_expiry_plus_the_leeway() -> None:
    async def scenario() -> None:
        world = World()
        session, peer = await world.member(expires_in=60)
        (timer,) = world.timers.armed()
        assert timer.delay == pytest.approx(60 + TOKEN_LEEWAY_SECONDS)
        # Just before the end a frame is served; from the end on (even before the timer runs) not.
        world.wall.now += 60 + TOKEN_LEEWAY_SECONDS - 0.01
        session.receive(frame(type="ping"))
        assert peer.types() == ["pong"] and peer.closed is None
        world.wall.now += 0.01
        session.receive(frame(type="send", project="p", text="late"))
        assert peer.closed == (proto.CLOSE_UNAUTHORIZED, "unauthorized: token expired")
        assert world.hub.membership.of(session) == () and world.hub.stats().accepted == 0

        # The timer alone closes an idle session.
        idle, peer_i = await world.member("v", expires_in=30)
        world.timers.armed()[-1].callback()
        assert peer_i.closed == (proto.CLOSE_UNAUTHORIZED, "unauthorized: token expired")
        assert world.hub.membership.of(idle) == ()

    run(scenario)


def test_reauthentication_extends_the_deadline_and_checks_user_and_projects() -> None:
    async def scenario() -> None:
        world = World()
        session, peer = await world.member("u", "p", expires_in=60)
        world.verifier.add("fresh", "u", ["p"], world.wall.now + 600)
        session.receive(frame(type="auth", token="fresh", ref=1))
        await world.settle()
        assert peer.received == [{"type": "authenticated", "ref": 1, "expires_at": int(world.wall.now + 600)}]
        (timer,) = world.timers.armed()
        assert timer.delay == pytest.approx(600 + TOKEN_LEEWAY_SECONDS)
        session.receive(frame(type="auth", token="bad", ref=2))
        await world.settle()
        assert peer.received[-1] == {
            "type": "error",
            "code": "unauthorized",
            "message": "invalid token",
            "ref": 2,
        }
        world.verifier.add("dropped", "u", ["q"], world.wall.now + 600)
        session.receive(frame(type="auth", token="dropped", ref=3))
        await world.settle()
        assert peer.closed == (proto.CLOSE_FORBIDDEN, "forbidden: not a member of project p")

        other, peer_o = await world.member("v", "p")
        world.verifier.add("someone-else", "w", ["p"], world.wall.now + 600)
        other.receive(frame(type="auth", token="someone-else"))
        await world.settle()
        assert peer_o.closed == (proto.CLOSE_UNAUTHORIZED, "unauthorized: token is for another user")

    run(scenario)


def test_a_broken_transport_or_a_slow_consumer_ends_the_session() -> None:
    async def scenario() -> None:
        world = World()
        broken, peer_b = await world.member("a")
        _, peer_ok = await world.member("b")
        peer_b.broken = True
        (key,) = other_keys(1)
        world.hub.message("p", key, event(key))
        assert ids(peer_ok) == [key] and world.hub.stats().delivered == 1
        broken.disconnected()  # what the adapter reports next
        assert world.hub.projects["p"].members != () and world.hub.membership.of(broken) == ()

        slow, peer_s = await world.member("c")
        slow.overflowed()
        assert peer_s.closed == (proto.CLOSE_SLOW_CONSUMER, "slow consumer: not reading fast enough")
        assert world.hub.stats().slow_consumers == 1 and world.hub.membership.of(slow) == ()

    run(scenario)


def test_a_close_frame_from_the_client_is_echoed_once() -> None:
    async def scenario() -> None:
        world = World()
        session, _ = await world.member()
        assert session.peer_closing() and not session.peer_closing()
        session.receive(frame(type="ping"))  # nothing is served while closing
        assert orjson.dumps(session.peer.of_type("pong")) == b"[]"  # type: ignore[attr-defined]

    run(scenario)
