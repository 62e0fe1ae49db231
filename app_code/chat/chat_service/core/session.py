"""One client's session: the state machine (authenticating -> open -> closing) and its requests.

A `Session` is fed complete messages by its socket's adapter (`receive`) and answers through its
`Peer`. It checks the token (through the `Verifier`), keeps the frames that arrive before that is
done, rate-limits, dispatches each request to the `Hub` or answers it itself, and closes itself when
its token expires. What every session of an instance shares is one `Sessions`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from chat_service.core import protocol as proto
from chat_service.core.hub import Hub
from chat_service.core.keys import now_ms
from chat_service.core.member import AUTHENTICATING, CLOSING, OPEN
from chat_service.core.ports import Cancellable, Identity, Peer, Spawn, Timers, TokenRejected, Verifier
from chat_service.core.ratelimit import Bucket

log = logging.getLogger(__name__)

# How long past its `exp` a token keeps its connection open: the verifier's own leeway for clock
# skew (motion_common.auth.TokenVerifier), so a token is valid on the connection exactly as long as
# a new connection would accept it.
TOKEN_LEEWAY_SECONDS: Final = 5.0

# Frames of any kind (joins, history, pings, ...) have their own, looser budget than sends; a
# client over it is flooding and is disconnected.
FRAME_RATE_PER_SECOND: Final = 50.0
FRAME_BURST: Final = 200.0
MAX_EARLY_FRAMES: Final = 32
# History queries one connection may have running at once.
MAX_HISTORY_IN_FLIGHT: Final = 2
# Server closes not logged one by one: a shutdown closes every connection with 1012 at once.
QUIET_CLOSES: Final = frozenset({proto.CLOSE_GOING_AWAY, proto.CLOSE_SERVICE_RESTART})


@dataclass(frozen=True, slots=True)
class SessionLimits:
    max_message_bytes: int
    send_rate_per_second: float
    send_rate_burst: int
    ping_interval_seconds: float


class Sessions:
    """What every session of an instance shares (the hub, the verifier, limits, clocks), and the
    factory of new sessions."""

    __slots__ = (
        "frame_burst",
        "frame_rate",
        "hello_limits",
        "hub",
        "limits",
        "monotonic",
        "spawn",
        "timers",
        "verifier",
        "wall_clock",
    )

    def __init__(
        self,
        hub: Hub,
        verifier: Verifier,
        limits: SessionLimits,
        *,
        spawn: Spawn,
        timers: Timers,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hub = hub
        self.verifier = verifier
        self.limits = limits
        self.spawn = spawn
        self.timers = timers
        # The token's clock (its `exp` is wall-clock seconds); rate limits use `monotonic`.
        self.wall_clock = wall_clock
        self.monotonic = monotonic
        self.frame_rate = max(FRAME_RATE_PER_SECOND, 2 * limits.send_rate_per_second)
        self.frame_burst = max(FRAME_BURST, 2 * limits.send_rate_burst)
        self.hello_limits = {
            "max_message_bytes": limits.max_message_bytes,
            "send_rate_per_second": limits.send_rate_per_second,
            "send_rate_burst": limits.send_rate_burst,
            "history_limit": proto.MAX_HISTORY_LIMIT,
        }

    def open(self, peer: Peer, connection_id: str = "") -> Session:
        """A session for `peer`; `connection_id` names it on every log line about it (the upgrade
        request's ALB trace id, so one connection can be followed from the load balancer's log)."""
        return Session(self, peer, connection_id)


class Session:
    """One client's session; its adapter calls `start`, `receive`, `disconnected` and the rest."""

    __slots__ = (
        "connection_id",
        "ctx",
        "deadline",
        "early",
        "frames",
        "identity",
        "peer",
        "reading",
        "sends",
        "state",
    )

    def __init__(self, ctx: Sessions, peer: Peer, connection_id: str = "") -> None:
        self.ctx = ctx
        self.peer = peer
        self.connection_id = connection_id
        self.identity: Identity | None = None
        self.state = AUTHENTICATING
        limits = ctx.limits
        self.sends = Bucket(limits.send_rate_per_second, limits.send_rate_burst, ctx.monotonic)
        self.frames = Bucket(ctx.frame_rate, ctx.frame_burst, ctx.monotonic)
        self.reading = 0
        self.early: list[bytes] | None = None
        # Closes the session the moment its token stops being valid; re-armed by each `auth`.
        self.deadline: Cancellable | None = None

    # --- from the adapter ----------------------------------------------------------------------

    def start(self, token: str | None) -> None:
        """The socket is open; `token` is the bearer token its upgrade request carried."""
        if not token:
            self.close(proto.CLOSE_UNAUTHORIZED, "unauthorized: missing bearer token")
            return
        self.ctx.spawn(self._authenticate(token))

    def receive(self, payload: bytes | memoryview) -> None:
        """One complete message from the client."""
        if self.state == OPEN:
            self.handle(payload)
        elif self.state == AUTHENTICATING:
            # Clients may send before their token is checked; keep a little and replay it.
            if self.early is None:
                self.early = []
            if len(self.early) >= MAX_EARLY_FRAMES:
                self.ctx.hub.rate_limit_closes += 1
                self.close(proto.CLOSE_RATE_LIMITED, "too many frames before authentication")
                return
            self.early.append(bytes(payload))

    def peer_closing(self) -> bool:
        """The client sent a close frame; True when the session was not closing yet (the adapter
        then echoes it). Its disconnect follows and does the bookkeeping."""
        if self.state == CLOSING:
            return False
        self.state = CLOSING
        return True

    def overflowed(self) -> None:
        """Past the buffer limit of unsent data: the consumer is too slow."""
        if self.state != CLOSING:
            self.ctx.hub.slow_consumer(self)
            self.close(proto.CLOSE_SLOW_CONSUMER, "slow consumer: not reading fast enough")

    def lost(self) -> None:
        # The transport died (e.g. a reset seen by an earlier write) and the adapter has not told
        # us yet; its disconnect follows and does the bookkeeping.
        self.state = CLOSING

    def disconnected(self) -> None:
        self.state = CLOSING
        self.disarm()
        self.ctx.hub.leave_all(self)

    # --- authentication ------------------------------------------------------------------------

    async def _authenticate(self, token: str) -> None:
        try:
            identity = await self.ctx.verifier.verify(token)
        except TokenRejected as err:
            self.close(proto.CLOSE_UNAUTHORIZED, f"unauthorized: {err}")
            return
        except Exception:
            log.exception("token verification failed", extra=self.log_fields())
            self.close(proto.CLOSE_INTERNAL_ERROR, "internal error")
            return
        if self.state == AUTHENTICATING:
            self.opened(identity)

    def opened(self, identity: Identity) -> None:
        self.identity = identity
        self.state = OPEN
        self.arm(identity)
        ctx = self.ctx
        self.send(
            proto.encode(
                {
                    "type": "hello",
                    "user": identity.user_id,
                    "projects": sorted(identity.projects),
                    "instance": ctx.hub.instance_id,
                    "ping_interval": ctx.limits.ping_interval_seconds,
                    "limits": ctx.hello_limits,
                }
            )
        )
        early, self.early = self.early, None
        for payload in early or ():
            if self.state != OPEN:
                break
            self.handle(payload)

    def arm(self, identity: Identity) -> None:
        """Close the session when `identity`'s token expires (plus the verifier's leeway), to the
        second: a timer per session, because a sweep every ping interval let an expired token
        keep its connection for up to that interval."""
        self.disarm()
        # The timers' clock is monotonic and the token's is the wall clock: convert once, here.
        remaining = identity.expires_at + TOKEN_LEEWAY_SECONDS - self.ctx.wall_clock()
        self.deadline = self.ctx.timers.call_later(max(0.0, remaining), self.expired)

    def disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def expired(self) -> None:
        self.deadline = None
        self.close(proto.CLOSE_UNAUTHORIZED, "unauthorized: token expired")

    async def _reauthenticate(self, request: proto.Auth) -> None:
        try:
            identity = await self.ctx.verifier.verify(request.token)
        except TokenRejected as err:
            self.send(proto.error("unauthorized", str(err), request.ref))
            return
        if self.state != OPEN or self.identity is None:
            return
        if identity.user_id != self.identity.user_id:
            self.close(proto.CLOSE_UNAUTHORIZED, "unauthorized: token is for another user")
            return
        self.identity = identity
        self.arm(identity)
        for project in self.ctx.hub.membership.of(self):
            if not identity.member_of(project):
                self.forbidden(project)
                return
        self.send(
            proto.encode(
                {"type": "authenticated", "ref": request.ref, "expires_at": int(identity.expires_at)}
            )
        )

    # --- requests ------------------------------------------------------------------------------

    def handle(self, payload: bytes | memoryview) -> None:
        identity = self.identity
        assert identity is not None
        ctx = self.ctx
        # Frames read in the same loop pass as the deadline may be handled before its timer runs:
        # check the clock too, so nothing is accepted after the token's end.
        if identity.expires_at + TOKEN_LEEWAY_SECONDS <= ctx.wall_clock():
            self.expired()
            return
        if not self.frames.take():
            self.ctx.hub.rate_limit_closes += 1
            self.close(proto.CLOSE_RATE_LIMITED, "rate limit exceeded: too many frames")
            return
        hub = ctx.hub
        try:
            request = proto.parse(payload, ctx.limits.max_message_bytes)
        except proto.ProtocolError as err:
            self.send(proto.error(err.code, err.message, err.ref))
            return
        if isinstance(request, proto.Send):
            if request.project not in hub.membership.by_member.get(self, ()):
                self.send(proto.error("not_joined", "join the project before sending to it", request.ref))
            elif not self.sends.take():
                self.send(
                    proto.encode(
                        {
                            "type": "error",
                            "code": "rate_limited",
                            "message": "sending too fast",
                            "ref": request.ref,
                            "retry_after_ms": self.sends.wait_ms(),
                        }
                    )
                )
            elif hub.draining:
                self.send(
                    proto.error("unavailable", "server is restarting; reconnect and resend", request.ref)
                )
            else:
                hub.accept(self, identity.user_id, request)
        elif isinstance(request, proto.Ping):
            self.send(proto.encode({"type": "pong", "ref": request.ref, "ts": now_ms()}))
        elif isinstance(request, proto.Join | proto.History) and not identity.member_of(request.project):
            self.forbidden(request.project)
        elif isinstance(request, proto.Join):
            hub.join(self, request.project, request.ref)
        elif isinstance(request, proto.History):
            if self.reading >= MAX_HISTORY_IN_FLIGHT:
                self.send(proto.error("rate_limited", "wait for your earlier history requests", request.ref))
            else:
                self.reading += 1
                ctx.spawn(self._answer_history(request))
        elif isinstance(request, proto.Leave):
            hub.leave(self, request.project)
            self.send(proto.encode({"type": "left", "project": request.project, "ref": request.ref}))
        elif isinstance(request, proto.Auth):
            ctx.spawn(self._reauthenticate(request))

    async def _answer_history(self, request: proto.History) -> None:
        """Answer a `history` request; `handle` counted it in `reading` before spawning this."""
        try:
            try:
                page, more = await self.ctx.hub.history(
                    request.project, request.before, request.after, request.limit
                )
            except Exception as err:
                log.warning("history query for %s failed: %s", request.project, err, extra=self.log_fields())
                self.send(proto.error("unavailable", "history is unavailable; try again", request.ref))
                return
            self.send(
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
        finally:
            self.reading -= 1

    def forbidden(self, project: str) -> None:
        self.close(proto.CLOSE_FORBIDDEN, f"forbidden: not a member of project {project}"[:120])

    # --- writes --------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if self.state != CLOSING:
            try:
                self.peer.send(data)
            except RuntimeError:
                self.lost()

    def write(self, frame: bytes) -> None:
        """Write a prepared frame (see protocol.text_frame)."""
        if self.state == OPEN:
            try:
                self.peer.write(frame)
            except RuntimeError:
                self.lost()

    def close(self, code: int, reason: str) -> None:
        """Leave every project and have the peer queue a close frame (the adapter closes the
        socket once the client answers, or after a timeout)."""
        if self.state == CLOSING:
            return
        self.state = CLOSING
        self.disarm()
        self.ctx.hub.leave_all(self)
        if code not in QUIET_CLOSES:
            # The server ended it for a reason the client caused or must act on: say which connection.
            log.info(
                "closing the connection: %d %s", code, reason, extra={**self.log_fields(), "close_code": code}
            )
        self.peer.close(code, reason)

    def log_fields(self) -> dict[str, str]:
        """What names this connection on a log line (its id, and its user once authenticated)."""
        fields = {"connection_id": self.connection_id}
        if self.identity is not None:
            fields["user_id"] = self.identity.user_id
        return fields
