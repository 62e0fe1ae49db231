"""One client's WebSocket socket: the picows callbacks, and the core's `Peer` for its session.

Each `Listener` is the picows listener for one socket. It reassembles fragmented messages, answers
close frames, tracks signs of life for the ping sweep, and hands complete messages to its `Session`
(chat_service.core.session), which does everything else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from chat_service.core import protocol as proto
from chat_service.core.member import OPEN
from chat_service.core.session import Session, Sessions

# Once a close frame is queued, a peer gets this long to read what is left before the socket drops.
CLOSE_TIMEOUT_SECONDS: Final = 5.0

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONTINUATION = WSMsgType.CONTINUATION
_CLOSE = WSMsgType.CLOSE


class Listeners(set["Listener"]):
    """The instance's open sockets (for the ping sweep, readiness and shutdown)."""

    def __init__(self) -> None:
        super().__init__()
        self.all_closed = asyncio.Event()

    def closed(self, listener: Listener) -> None:
        self.discard(listener)
        if not self:
            self.all_closed.set()


class Listener(WSListener):
    """The picows listener of one client socket."""

    __slots__ = (
        "fragments",
        "max_buffered_bytes",
        "max_frame_bytes",
        "pinged",
        "raw",
        "registry",
        "seen",
        "session",
        "token",
        "transport",
        "write",
    )

    write: Callable[[bytes], None]

    def __init__(
        self,
        sessions: Sessions,
        registry: Listeners,
        token: str | None,
        max_frame_bytes: int,
        max_buffered_bytes: int,
        connection_id: str = "",
    ) -> None:
        self.session: Session = sessions.open(self, connection_id)
        self.registry = registry
        self.token = token
        self.max_frame_bytes = max_frame_bytes
        self.max_buffered_bytes = max_buffered_bytes
        self.seen = True
        self.pinged = False
        self.fragments: bytearray | None = None

    # --- picows callbacks ----------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.raw = transport.underlying_transport
        # The frames a fan-out writes go straight to the transport: one call per recipient.
        self.write = self.raw.write
        # picows keeps the handshake for the life of the connection; its headers (the token among
        # them) are a third of an idle connection's memory, and nothing reads them after this.
        transport.request.headers.clear()
        transport.response.headers.clear()
        # Past this much unsent data the consumer is too slow: pause_writing below disconnects it.
        self.raw.set_write_buffer_limits(high=self.max_buffered_bytes)
        self.registry.add(self)
        token, self.token = self.token, None
        self.session.start(token)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.session.disconnected()
        self.registry.closed(self)

    def pause_writing(self) -> None:
        self.session.overflowed()

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
                self.session.send(
                    proto.error("bad_frame", "continuation frame without a message to continue")
                )
                return
            self.fragments += frame.get_payload_as_memoryview()
            if len(self.fragments) > self.max_frame_bytes:
                self.fragments = None
                self.session.close(proto.CLOSE_MESSAGE_TOO_BIG, "message too big")
                return
            if not frame.fin:
                return
            payload, self.fragments = bytes(self.fragments), None
        elif kind is _CLOSE:
            self.on_close_frame(frame)
            return
        else:
            return  # ping (picows answers it) or pong (counted as a sign of life above)
        self.session.receive(payload)

    def on_close_frame(self, frame: WSFrame) -> None:
        if self.session.peer_closing():
            code = frame.get_close_code()
            # Echo the peer's code (RFC 6455 5.5.1); "no status" cannot be sent back as such.
            self.transport.send_close(WSCloseCode.OK if code in (WSCloseCode.NO_INFO, 1005) else code)
        self.transport.disconnect()

    # --- the ping sweep (adapters.keepalive) ---------------------------------------------------

    def keepalive(self) -> None:
        """Ping an open socket; drop it if it stayed silent since the previous ping."""
        if self.session.state != OPEN:
            return
        if self.pinged and not self.seen:
            self.session.close(proto.CLOSE_GOING_AWAY, "ping timeout")
            self.raw.abort()
            return
        self.seen = False
        self.pinged = True
        try:
            self.transport.send_ping()
        except RuntimeError:
            self.session.lost()

    def abort(self) -> None:
        self.raw.abort()

    # --- Peer ----------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.transport.send(_TEXT, data)

    def close(self, code: int, reason: str) -> None:
        """Queue a close frame after whatever is already queued; the socket closes when the peer
        answers with its own (RFC 6455 7.1.1), or after CLOSE_TIMEOUT_SECONDS for a peer that does not
        read. Closing the socket at once would reset the connection if the peer is still sending,
        and the reset can destroy the close frame before the peer reads it."""
        transport = self.transport
        if transport.is_disconnected:
            return
        # The reason must fit a control frame (125 bytes with the code), cut on a character boundary.
        transport.send_close(WSCloseCode(code), reason.encode()[:120].decode("utf-8", "ignore").encode())
        asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_SECONDS, self.raw.abort)
