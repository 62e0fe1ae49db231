"""One client's WebSocket connection: picows callbacks, request dispatch and its writes.

Each `Connection` is the picows listener for one socket. It parses and rate-limits the client's
frames and hands the requests to the `ChatServer`, which owns everything shared between
connections (projects, fan-out, persistence, authentication).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Final

from motion_common.auth import Identity
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from chat_service import protocol as proto
from chat_service.history import answer_history
from chat_service.keys import now_ms
from chat_service.ratelimit import Bucket

# How long past its `exp` a token keeps its connection open: the verifier's own leeway for clock
# skew (motion_common.auth.TokenVerifier), so a token is valid on the connection exactly as long as
# a new connection would accept it.
TOKEN_LEEWAY_SECONDS: Final = 5.0

if TYPE_CHECKING:
    from chat_service.server import ChatServer

# A connection only moves forward: its token is checked, then it serves requests, then it closes.
AUTHENTICATING: Final = 0
OPEN: Final = 1
CLOSING: Final = 2

# Frames of any kind (joins, history, pings, ...) have their own, looser budget than sends; a
# client over it is flooding and is disconnected.
FRAME_RATE_PER_SECOND: Final = 50.0
FRAME_BURST: Final = 200.0
MAX_EARLY_FRAMES: Final = 32
# History queries one connection may have running at once.
MAX_HISTORY_IN_FLIGHT: Final = 2
# Once a close frame is queued, a peer gets this long to read what is left before the socket drops.
CLOSE_TIMEOUT_SECONDS: Final = 5.0

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONTINUATION = WSMsgType.CONTINUATION
_CLOSE = WSMsgType.CLOSE


class Connection(WSListener):
    """The picows listener of one client socket."""

    __slots__ = (
        "deadline",
        "early",
        "fragments",
        "frames",
        "identity",
        "joined",
        "pinged",
        "raw",
        "reading",
        "seen",
        "sends",
        "server",
        "state",
        "token",
        "transport",
    )

    def __init__(self, server: ChatServer, token: str | None) -> None:
        self.server = server
        self.token = token
        self.identity: Identity | None = None
        self.state = AUTHENTICATING
        # A tuple: most connections join a handful of projects, and an empty set alone is 216 bytes.
        self.joined: tuple[str, ...] = ()
        self.sends = Bucket(server.settings.send_rate_per_second, server.settings.send_rate_burst)
        self.frames = Bucket(
            max(FRAME_RATE_PER_SECOND, 2 * server.settings.send_rate_per_second),
            max(FRAME_BURST, 2 * server.settings.send_rate_burst),
        )
        self.seen = True
        self.pinged = False
        self.reading = 0
        self.early: list[bytes] | None = None
        self.fragments: bytearray | None = None
        # Closes the connection the moment its token stops being valid; re-armed by each `auth`.
        self.deadline: asyncio.TimerHandle | None = None

    # --- picows callbacks ----------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.raw = transport.underlying_transport
        # picows keeps the handshake for the life of the connection; its headers (the token among
        # them) are a third of an idle connection's memory, and nothing reads them after this.
        transport.request.headers.clear()
        transport.response.headers.clear()
        # Past this much unsent data the consumer is too slow: pause_writing below disconnects it.
        self.raw.set_write_buffer_limits(high=self.server.settings.max_buffered_bytes)
        self.server.connections.add(self)
        token, self.token = self.token, None
        if not token:
            self.close(proto.CLOSE_UNAUTHORIZED, "unauthorized: missing bearer token")
            return
        self.server.spawn(self.server.auth.authenticate(self, token))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.state = CLOSING
        self.disarm()
        self.server.disconnected(self)

    def pause_writing(self) -> None:
        if self.state != CLOSING:
            self.server.slow_consumers += 1
            self.close(proto.CLOSE_SLOW_CONSUMER, "slow consumer: not reading fast enough")

    def resume_writing(self) -> None:
        return None

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.seen = True
        kind = frame.msg_type
        if kind is _TEXT or kind is _BINARY:
            if not frame.fin:
                self.fragments = bytearray(frame.get_payload_as_memoryview())
                return
            payload: bytes | memoryview = frame.get_payload_as_memoryview()
        elif kind is _CONTINUATION:
            if self.fragments is None:
                self.send(proto.error("bad_frame", "continuation frame without a message to continue"))
                return
            self.fragments += frame.get_payload_as_memoryview()
            if len(self.fragments) > self.server.settings.max_frame_bytes:
                self.fragments = None
                self.close(proto.CLOSE_MESSAGE_TOO_BIG, "message too big")
                return
            if not frame.fin:
                return
            payload, self.fragments = bytes(self.fragments), None
        elif kind is _CLOSE:
            self.on_close_frame(frame)
            return
        else:
            return  # ping (picows answers it) or pong (counted as a sign of life above)
        if self.state == OPEN:
            self.handle(payload)
        elif self.state == AUTHENTICATING:
            # Clients may send before their token is checked; keep a little and replay it.
            if self.early is None:
                self.early = []
            if len(self.early) >= MAX_EARLY_FRAMES:
                self.close(proto.CLOSE_RATE_LIMITED, "too many frames before authentication")
                return
            self.early.append(bytes(payload))

    def on_close_frame(self, frame: WSFrame) -> None:
        if self.state != CLOSING:
            self.state = CLOSING
            code = frame.get_close_code()
            # Echo the peer's code (RFC 6455 5.5.1); "no status" cannot be sent back as such.
            self.transport.send_close(WSCloseCode.OK if code in (WSCloseCode.NO_INFO, 1005) else code)
        self.transport.disconnect()

    # --- requests ------------------------------------------------------------------------------

    def opened(self, identity: Identity) -> None:
        self.identity = identity
        self.state = OPEN
        self.arm(identity)
        self.send(self.server.hello(self))
        early, self.early = self.early, None
        for payload in early or ():
            if self.state != OPEN:
                break
            self.handle(payload)

    def arm(self, identity: Identity) -> None:
        """Close the connection when `identity`'s token expires (plus the verifier's leeway), to the
        second: a timer per connection, because a sweep every ping interval let an expired token
        keep its connection for up to that interval."""
        self.disarm()
        loop = asyncio.get_running_loop()
        # The loop's clock is monotonic and the token's is the wall clock: convert once, here.
        remaining = identity.expires_at + TOKEN_LEEWAY_SECONDS - time.time()
        self.deadline = loop.call_at(loop.time() + max(0.0, remaining), self.expired)

    def disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def expired(self) -> None:
        self.deadline = None
        self.close(proto.CLOSE_UNAUTHORIZED, "unauthorized: token expired")

    def handle(self, payload: bytes | memoryview) -> None:
        identity = self.identity
        assert identity is not None
        # Frames read in the same loop pass as the deadline may be handled before its timer runs:
        # check the clock too, so nothing is accepted after the token's end.
        if identity.expires_at + TOKEN_LEEWAY_SECONDS <= time.time():
            self.expired()
            return
        if not self.frames.take():
            self.close(proto.CLOSE_RATE_LIMITED, "rate limit exceeded: too many frames")
            return
        server = self.server
        try:
            request = proto.parse(payload, server.settings.max_message_bytes)
        except proto.ProtocolError as err:
            self.send(proto.error(err.code, err.message, err.ref))
            return
        if isinstance(request, proto.Send):
            if request.project not in self.joined:
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
            elif server.draining:
                self.send(
                    proto.error("unavailable", "server is restarting; reconnect and resend", request.ref)
                )
            else:
                server.accept(self, request)
        elif isinstance(request, proto.Ping):
            self.send(proto.encode({"type": "pong", "ref": request.ref, "ts": now_ms()}))
        elif isinstance(request, proto.Join | proto.History) and not identity.member_of(request.project):
            self.forbidden(request.project)
        elif isinstance(request, proto.Join):
            server.join(self, request.project, request.ref)
        elif isinstance(request, proto.History):
            if self.reading >= MAX_HISTORY_IN_FLIGHT:
                self.send(proto.error("rate_limited", "wait for your earlier history requests", request.ref))
            else:
                self.reading += 1
                server.spawn(answer_history(server, self, request))
        elif isinstance(request, proto.Leave):
            server.leave(self, request.project)
            self.send(proto.encode({"type": "left", "project": request.project, "ref": request.ref}))
        elif isinstance(request, proto.Auth):
            server.spawn(server.auth.reauthenticate(self, request))

    def forbidden(self, project: str) -> None:
        self.close(proto.CLOSE_FORBIDDEN, f"forbidden: not a member of project {project}"[:120])

    def send(self, data: bytes) -> None:
        if self.state != CLOSING:
            try:
                self.transport.send(_TEXT, data)
            except RuntimeError:
                self.lost()

    def write(self, frame: bytes) -> None:
        """Write a prepared frame (see protocol.text_frame)."""
        if self.state == OPEN:
            try:
                self.raw.write(frame)
            except RuntimeError:
                self.lost()

    def lost(self) -> None:
        # The transport died (e.g. a reset seen by an earlier write) and picows has not told us yet;
        # its disconnect callback follows and does the bookkeeping.
        self.state = CLOSING

    def close(self, code: int, reason: str) -> None:
        """Queue a close frame after whatever is already queued; the socket closes when the peer
        answers with its own (RFC 6455 7.1.1), or after CLOSE_TIMEOUT_SECONDS for a peer that does not
        read. Closing the socket at once would reset the connection if the peer is still sending,
        and the reset can destroy the close frame before the peer reads it."""
        if self.state == CLOSING:
            return
        self.state = CLOSING
        self.disarm()
        self.server.leave_all(self)
        transport = self.transport
        if transport.is_disconnected:
            return
        # The reason must fit a control frame (125 bytes with the code), cut on a character boundary.
        transport.send_close(WSCloseCode(code), reason.encode()[:120].decode("utf-8", "ignore").encode())
        asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_SECONDS, self.raw.abort)
