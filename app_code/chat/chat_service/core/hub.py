"""The hub: one instance's projects, the path of a send, fan-out, and catch-up after gaps.

Data flow of a send: the session validates it and hands it to `Hub.accept`, which takes a key from
the `KeyClock`; the `OrderedPersister` writes it to the store (batched); in submission (= key)
order the sender gets its ack, local members get the message, and the message goes to the bus for
the other instances, which deliver it to their members. Every message is encoded and framed once
per instance; the same bytes are written to every recipient's socket.

Ordering (per project, as seen by one connection): messages that went through one instance arrive
in key order; a message sent after its instance delivered another one sorts after it (Lamport keys).
Only messages sent at the same moment through two different instances (within the few ms of a
DynamoDB write) can arrive in an order other than key order; history is always in key order.

Gaps in live delivery (the subscription was lost, another instance fell silent or announced
messages it dropped unsent) are filled from the store by a catch-up, while what arrives live waits
behind it; a gap that cannot be shown filled makes the members `resync`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from chat_service.core import protocol as proto
from chat_service.core.keys import MS_DIGITS, KeyClock, key_floor, now_ms
from chat_service.core.member import OPEN, Member
from chat_service.core.membership import Membership
from chat_service.core.messages import PartialWriteError, StoredMessage
from chat_service.core.persister import OrderedPersister
from chat_service.core.ports import Bus, Offload, Spawn, Store
from chat_service.core.project import CATCHUP_OVERLAP_MS, ProjectState, gap_start

log = logging.getLogger(__name__)

# Delivered keys are kept this long for exact-id dedup: longer than any catch-up reaches back while
# Redis is up (CATCHUP_OVERLAP_MS) and than a publisher keeps unsent messages (60 s), and never
# those at or above the lowest floor a peer announced (a catch-up may reach back that far).
SEEN_RETAIN_MS: Final = CATCHUP_OVERLAP_MS + 60_000
SEEN_PRUNE_AT: Final = 1024
SEEN_PRUNE_EVERY: Final = 256
# Every instance says it is alive on the bus this often (the Redis bus beats at this interval).
BEAT_SECONDS: Final = 2.0
# A peer is taken for gone after this long without a beat (three beats and a little).
PEER_SILENCE_MS: Final = int(BEAT_SECONDS * 3.5 * 1000)
# Past this many messages in one project's gap, members are told to reload (`resync`) instead.
CATCHUP_LIMIT: Final = 5000
CATCHUP_PAGE: Final = 100
# Projects caught up at once: all of them start together from their own gap, but a fleet-wide
# outage must not turn into thousands of concurrent queries.
CATCHUP_CONCURRENCY: Final = 8
# Concurrent store writes. Each BatchWriteItem call costs ~1.5 ms of boto3 CPU whether it carries
# 1 item or 25, so fewer calls in flight make sends queue into fuller batches under load.
PERSIST_IN_FLIGHT: Final = 4


@dataclass(slots=True)
class PendingSend:
    message: StoredMessage
    conn: Member
    ref: object
    # Set by the write when the send's client id was claimed before: `message` is then the one
    # stored at that time, not a new one.
    repeated: bool = False
    # Set by the write when this message was not stored (its neighbours may have been).
    failed: bool = False


@dataclass(frozen=True, slots=True)
class HubStats:
    """One consistent reading of the hub's state and counters (for readiness and benchmarks)."""

    instance: str
    draining: bool
    projects: int
    peers: list[str]
    bus_up: bool
    bus_dropped: int
    accepted: int
    delivered: int
    slow_consumers: int
    rate_limit_closes: int
    persist_batches: int
    persisted: int
    pending: int


class Hub:
    """One chat instance's shared state; the bus calls in through the `BusReceiver` methods
    (`message`, `resubscribed`, `gap_announced`, `peer_alive`), sessions through the rest."""

    def __init__(
        self,
        instance_id: str,
        bus: Bus,
        store: Store,
        *,
        persist: bool,
        reads: Offload,
        writes: Offload,
        spawn: Spawn,
        clock: Callable[[], int] = now_ms,
        max_writes_in_flight: int = PERSIST_IN_FLIGHT,
        fanout_latency: Callable[[int], None] | None = None,
    ) -> None:
        self.instance_id = instance_id
        # Told, for every message written to the members here from a send or live from the bus, how
        # long (ms) after its id it went out: the send-to-socket latency members see (once per
        # message, not per member: it is the same write for all of them).
        self.fanout_latency = fanout_latency
        self.keys = KeyClock(instance_id, clock)
        self.bus = bus
        self.store = store
        self.persist = persist
        self.reads = reads
        self.spawn = spawn
        self.now_ms = clock
        self.persister: OrderedPersister[PendingSend] = OrderedPersister(
            self._write if persist else None, self.persisted, writes, max_writes_in_flight
        )
        self.membership = Membership()
        # Kept by the membership: the projects with members here, by name.
        self.projects = self.membership.projects
        # Other instances by id -> when their last beat or message arrived (wall-clock ms).
        self.peers: dict[str, int] = {}
        # Other instances by id -> the floor of their last beat (`floor_ms`): what they publish
        # after it has ids of that millisecond or later.
        self.peer_floors: dict[str, int] = {}
        self.draining = False
        self.delivered = 0
        self.accepted = 0
        self.slow_consumers = 0
        self.rate_limit_closes = 0

    def stats(self) -> HubStats:
        return HubStats(
            instance=self.instance_id,
            draining=self.draining,
            projects=len(self.projects),
            peers=sorted(self.peers),
            bus_up=self.bus.up,
            bus_dropped=self.bus.dropped,
            accepted=self.accepted,
            delivered=self.delivered,
            slow_consumers=self.slow_consumers,
            rate_limit_closes=self.rate_limit_closes,
            persist_batches=self.persister.batches,
            persisted=self.persister.items,
            pending=self.persister.pending,
        )

    def drain(self) -> None:
        """Refuse new sends from now on (shutdown); `persister.drain()` waits for those in flight."""
        self.draining = True

    # --- membership ----------------------------------------------------------------------------

    def join(self, conn: Member, project: str, ref: object) -> None:
        state, created = self.membership.add(conn, project, self.now_ms())
        if created:
            state.ready = self.bus.subscribe(project)
        reply = {"type": "joined", "project": project, "ref": ref}
        ready = state.ready
        # Answer once Redis confirms the subscription: from then on nothing sent to the project is
        # missed, so history fetched after `joined` plus live messages leave no gap.
        if ready is None or ready.done():
            conn.send(proto.encode({**reply, "live": self.bus.up}))
        else:
            ready.add_done_callback(lambda _: conn.send(proto.encode({**reply, "live": self.bus.up})))

    def leave(self, conn: Member, project: str) -> None:
        if self.membership.remove(conn, project):
            self._forget(project)

    def leave_all(self, conn: Member) -> None:
        for project in self.membership.remove_all(conn):
            self._forget(project)

    def _forget(self, project: str) -> None:
        # The project's last member here left.
        self.bus.unsubscribe(project)
        self.keys.forget(project)

    def slow_consumer(self, conn: Member) -> None:
        self.slow_consumers += 1

    # --- sending and fan-out -------------------------------------------------------------------

    def accept(self, conn: Member, user: str, request: proto.Send) -> None:
        key, ts = self.keys.next(request.project)
        message = StoredMessage(request.project, key, user, request.text, ts, request.client_id)
        self.accepted += 1
        self.persister.submit(PendingSend(message, conn, request.ref))

    def _write(self, pending: list[PendingSend]) -> None:
        result = self.store.write([p.message for p in pending])
        for item in pending:
            if item.message.key in result.unwritten:
                item.failed = True
            elif (stored := result.earlier.get(item.message.key)) is not None:
                item.message, item.repeated = stored, True

    def persisted(self, pending: list[PendingSend], error: BaseException | None) -> None:
        for item in pending:
            message, conn = item.message, item.conn
            if item.failed or (
                error is not None
                and (not isinstance(error, PartialWriteError) or message.key in error.unwritten)
            ):
                conn.send(proto.error("persist_failed", "message was not stored; send it again", item.ref))
                continue
            if item.repeated:
                self._resent(item)
                continue
            ack = proto.text_frame(
                proto.encode({"type": "ack", "ref": item.ref, "id": message.key, "ts": message.ts})
            )
            event = proto.encode(message.event())
            frame = proto.text_frame(event)
            state = self.projects.get(message.project)
            # The sender gets its ack in the same write as its copy of the message, if it is still
            # a member; otherwise on its own. A catch-up reading the store while this write was
            # finishing may have delivered the message here already: then only the ack goes out.
            member = message.project in self.membership.by_member.get(conn, ())
            fresh = state is not None and self.note(state, message.key)
            if fresh:
                assert state is not None
                self.fan_out(state, frame, conn if member else None, ack)
                if self.fanout_latency is not None:
                    self.fanout_latency(self.now_ms() - message.ts)
            if not (fresh and member):
                conn.write(ack)
            if (late := self.now_ms() - message.ts) > CATCHUP_OVERLAP_MS:
                # Not lost to anyone: the beats' floor held back meanwhile (`floor_ms`), so a peer
                # whose subscription broke reaches back to it. But a store that slow is worth a look.
                log.warning("message %s published %d ms after its id (a slow store write)", message.key, late)
            self.bus.publish(message.project, message.key, event)

    def _resent(self, item: PendingSend) -> None:
        """A resend of a claimed client id: the stored message's ack, and the message itself to
        anyone who may not have it. Its first instance may have died between storing and publishing
        it (or, on this instance, reported its batch failed after storing it), so it is delivered
        here and published again; every instance drops it by id if its members had it."""
        message = item.message
        ack = proto.encode(
            {"type": "ack", "ref": item.ref, "id": message.key, "ts": message.ts, "repeated": True}
        )
        item.conn.send(ack)
        event = proto.encode(message.event())
        state = self.projects.get(message.project)
        if state is not None:
            self.deliver_remote(message.project, state, message.key, event)
        self.bus.publish(message.project, message.key, event)

    def fan_out(
        self, state: ProjectState, frame: bytes, sender: Member | None = None, ack: bytes = b""
    ) -> None:
        """Write one prepared frame to every member (the sender's with its ack in front)."""
        delivered = 0
        for conn in state.members:
            if conn.state == OPEN:
                try:
                    conn.peer.write(ack + frame if conn is sender else frame)
                except RuntimeError:
                    conn.lost()
                    continue
                delivered += 1
        self.delivered += delivered

    def message(self, project: str, key: str, event: bytes) -> None:
        """A message from the bus."""
        state = self.projects.get(project)
        if state is None:
            return
        if state.buffer is not None:
            state.buffer.append((key, event))
            return
        if self.deliver_remote(project, state, key, event) and self.fanout_latency is not None:
            # The id's millisecond is when it was assigned on the sending instance.
            self.fanout_latency(self.now_ms() - int(key[:MS_DIGITS]))

    def deliver_remote(self, project: str, state: ProjectState, key: str, event: bytes) -> bool:
        """Deliver a message that did not start here (the bus, a catch-up, a resend) unless the
        members here have it already (then False). (The bus never hands back this instance's own
        publishes.)"""
        if not self.note(state, key):
            return False
        self.keys.observe(project, key)
        self.fan_out(state, proto.text_frame(event))
        return True

    def note(self, state: ProjectState, key: str) -> bool:
        """Record `key` as delivered here; False when it was already."""
        seen = state.seen
        if key in seen:
            return False
        seen.add(key)
        order = state.seen_order
        order.append(key)
        if len(order) > SEEN_PRUNE_AT and not len(order) % SEEN_PRUNE_EVERY:
            self._prune(state)
        return True

    def _prune(self, state: ProjectState) -> None:
        # Keys a catch-up could still deliver again must stay: none are dropped while one is due or
        # running, or while Redis is away (the next catch-up reaches back before the gap).
        if state.catching or state.catchup_from is not None or not self.bus.listening:
            return
        cutoff_ms = self.now_ms() - SEEN_RETAIN_MS
        floor = self.lowest_peer_floor()
        cutoff = key_floor(cutoff_ms if floor is None else min(cutoff_ms, floor))
        order, seen = state.seen_order, state.seen
        while order and order[0] < cutoff:
            seen.discard(order.popleft())

    # --- history -------------------------------------------------------------------------------

    async def history(
        self, project: str, before: str | None, after: str | None, limit: int
    ) -> tuple[list[StoredMessage], bool]:
        """A page of `project`'s history, read off the event loop."""
        page = functools.partial(self.store.page, project, before=before, after=after, limit=limit)
        return await self.reads(page)

    # --- gaps ----------------------------------------------------------------------------------

    def resubscribed(
        self, projects: list[str], confirmed: asyncio.Future[list[None]], heard_ms: int | None
    ) -> None:
        """The subscription is back after a gap; `heard_ms` is the last moment the previous one was
        known to be receiving (None: there was none)."""
        # The peers' floors as their last beats before the gap gave them: nothing was heard since.
        floor = self.lowest_peer_floor()
        due = [
            p for p in projects if self.gap(p, gap_start(heard_ms, self.projects.get(p), floor), confirmed)
        ]
        if due:
            self.spawn(self.catch_up(due, confirmed))

    def peer_alive(self, peer: str, floor_ms: int | None) -> None:
        self.peers[peer] = self.now_ms()
        if floor_ms is not None:
            self.peer_floors[peer] = floor_ms

    def floor_ms(self) -> int:
        now = self.now_ms()
        # Keys assigned from now on are at least `now` even if the wall clock steps back.
        self.keys.not_before(now)
        first = self.persister.first()
        return now if first is None else min(now, int(first.message.key[:MS_DIGITS]))

    def lowest_peer_floor(self) -> int | None:
        return min(self.peer_floors.values(), default=None)

    def check_peers(self, now: int) -> None:
        """An instance silent for PEER_SILENCE_MS while this one hears Redis has stopped: it may have
        died between storing messages and publishing them, so every project here is caught up from
        the store from its last beat (less the overlap), or from the floor that beat announced if
        that is earlier; duplicates are dropped by id."""
        if not self.bus.listening:
            # We hear nobody now; judge nobody, and restart everyone's clock when we hear again.
            for peer in self.peers:
                self.peers[peer] = now
            return
        gone = [(peer, seen) for peer, seen in self.peers.items() if now - seen > PEER_SILENCE_MS]
        for peer, seen in gone:
            del self.peers[peer]
            floor = self.peer_floors.pop(peer, None)
            log.warning(
                "instance %s fell silent; catching up %d projects from the store", peer, len(self.projects)
            )
            since = seen - CATCHUP_OVERLAP_MS
            start_ms = since if floor is None else min(since, floor)
            due = [
                p
                for p in list(self.projects)
                if self.gap(p, key_floor(max(start_ms, self.projects[p].created_ms - CATCHUP_OVERLAP_MS)))
            ]
            if due:
                self.spawn(self.catch_up(due, _done()))

    def gap_announced(self, project: str, first_key: str) -> None:
        """Another instance dropped unsent publishes for `project` from `first_key` on (they are
        stored): fetch them from the store."""
        if self.gap(project, key_floor(int(first_key[:13]) - 1)):
            self.spawn(self.catch_up([project], _done()))

    def gap(
        self, project: str, start: str | None, confirmed: asyncio.Future[list[None]] | None = None
    ) -> bool:
        """Note that `project` may have missed what was sent from `start` on (`confirmed`: the new
        subscription's confirmation, when it was lost); True when a catch-up must be started for it
        (none is running; a running one takes the new start, and waits for `confirmed`, itself)."""
        state = self.projects.get(project)
        if state is None or start is None:
            return False
        if confirmed is not None:
            state.confirmed = confirmed
        if state.catchup_from is None or start < state.catchup_from:
            state.catchup_from = start
        if state.buffer is None:
            state.buffer = []
        if state.catching:
            return False
        state.catching = True
        return True

    async def catch_up(self, projects: list[str], confirmed: asyncio.Future[list[None]]) -> None:
        """Deliver what `projects` missed during a gap, then what the bus buffered meanwhile; each
        project whose gap cannot be shown filled gets `resync`. Every project of the call starts at
        once (at most CATCHUP_CONCURRENCY querying), from the start `gap` recorded when the gap was
        seen."""
        # Query only once the subscriptions are live, so every message is either in the store by
        # the time of the query or arrives through Redis afterwards.
        with contextlib.suppress(Exception):
            await confirmed
        limit = asyncio.Semaphore(CATCHUP_CONCURRENCY)

        async def one(project: str) -> None:
            async with limit:
                await self._catch_up_project(project)

        await asyncio.gather(*(one(p) for p in projects))

    async def _catch_up_project(self, project: str) -> None:
        state = self.projects.get(project)
        if state is None:
            return
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
                if not self.persist:
                    complete = False  # nothing to catch up from: the clients must know
                    continue
                fetched = 0
                while True:
                    page, more = await self.reads(
                        functools.partial(
                            self.store.page,
                            project,
                            before=None,
                            after=after,
                            limit=CATCHUP_PAGE,
                            consistent=True,
                        )
                    )
                    if self.projects.get(project) is not state:
                        return  # every member left; nobody to deliver to
                    for message in page:
                        self.deliver_remote(project, state, message.key, proto.encode(message.event()))
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
                self.deliver_remote(project, state, key, event)
        if not complete:
            log.warning("project %s: gap not filled from the store; members told to resync", project)
            self.fan_out(state, proto.text_frame(proto.encode({"type": "resync", "project": project})))


def _done() -> asyncio.Future[list[None]]:
    # A confirmation that is already there: the subscription was not lost.
    done: asyncio.Future[list[None]] = asyncio.get_running_loop().create_future()
    done.set_result([])
    return done
