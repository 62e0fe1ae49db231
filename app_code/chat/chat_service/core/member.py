"""What the hub needs of a project member: the core's one reference upwards, from the hub to the
sessions it delivers to, kept to this protocol so the hub never imports the session."""

from __future__ import annotations

from typing import Final, Protocol

from chat_service.core.ports import Peer

# A member only moves forward: its token is checked, then it serves requests, then it closes.
AUTHENTICATING: Final = 0
OPEN: Final = 1
CLOSING: Final = 2


class Member(Protocol):
    """What the hub needs of a project member (a session is one): the hub's one reference up."""

    @property
    def state(self) -> int: ...

    @property
    def peer(self) -> Peer: ...

    def send(self, data: bytes) -> None: ...

    def write(self, frame: bytes) -> None: ...

    def lost(self) -> None: ...
