"""A small test client for the chat protocol, on the `websockets` library (an implementation
independent of the server's picows)."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Coroutine
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

Event = dict[str, Any]
_refs = itertools.count(1)


def run(coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
    """Run a test scenario on a fresh event loop, bounded in time."""

    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


async def quiet(seconds: float = 0.3) -> None:
    """Give a message that should not arrive the time to arrive anyway."""
    await asyncio.sleep(seconds)


class ChatClient:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[Event] = []
        self._taken: set[int] = set()
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(
        cls,
        url: str,
        token: str | None = None,
        *,
        via: str = "header",
        headers: dict[str, str] | None = None,
        subprotocols: list[str] | None = None,
        wait_hello: bool = True,
        **kwargs: Any,
    ) -> ChatClient:
        extra = dict(headers or {})
        protocols = list(subprotocols or [])
        if token is not None:
            if via == "header":
                extra["Authorization"] = f"Bearer {token}"
            elif via == "subprotocol":
                protocols += ["motion-chat.v1", f"bearer.{token}"]
            elif via == "query":
                url += f"?token={token}"
            else:
                raise ValueError(via)
        ws = await connect(
            url,
            additional_headers=extra,
            subprotocols=protocols or None,  # type: ignore[arg-type]
            open_timeout=5,
            max_size=None,
            **kwargs,
        )
        client = cls(ws)
        if wait_hello:
            await client.expect("hello")
        return client

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                event = json.loads(raw)
                async with self._changed:
                    self.events.append(event)
                    self._changed.notify_all()
        except ConnectionClosed:
            pass
        finally:
            async with self._changed:
                self._changed.notify_all()

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    @property
    def close_reason(self) -> str | None:
        return self.ws.close_reason

    async def wait_closed(self, within: float = 10.0) -> tuple[int | None, str | None]:
        async with asyncio.timeout(within):
            await self._reader
        return self.ws.close_code, self.ws.close_reason

    async def take(self, match: Callable[[Event], bool], within: float = 10.0) -> Event:
        """The first event not taken yet that matches; waits for it."""
        async with asyncio.timeout(within), self._changed:
            while True:
                for i, event in enumerate(self.events):
                    if i not in self._taken and match(event):
                        self._taken.add(i)
                        return event
                if self._reader.done():
                    raise ConnectionError(
                        f"closed ({self.ws.close_code} {self.ws.close_reason}) while waiting"
                    )
                await self._changed.wait()

    async def expect(self, kind: str, within: float = 10.0, **fields: Any) -> Event:
        return await self.take(
            lambda e: e.get("type") == kind and all(e.get(k) == v for k, v in fields.items()), within
        )

    async def send_json(self, doc: Any) -> None:
        await self.ws.send(json.dumps(doc))

    def send_together(self, docs: list[Any]) -> None:
        """Several frames in one TCP write, so the server reads and handles them in one go (the
        tests of per-connection limits must not depend on how fast this process sends). Masked
        with a zero key, as clients must mask."""
        frames = []
        for doc in docs:
            payload = json.dumps(doc).encode()
            size = len(payload)
            assert size < 65536
            header = bytes((0x81, 0x80 | size)) if size < 126 else b"\x81\xfe" + size.to_bytes(2, "big")
            frames.append(header + b"\x00\x00\x00\x00" + payload)
        self.ws.transport.write(b"".join(frames))

    async def call(self, kind: str, within: float = 10.0, **fields: Any) -> Event:
        """Send a request and wait for the reply carrying its ref (whatever its type)."""
        ref = f"r{next(_refs)}"
        await self.send_json({"type": kind, "ref": ref, **fields})
        return await self.reply(ref, within)

    async def reply(self, ref: object, within: float = 10.0) -> Event:
        """The reply to the request that carried `ref`."""
        return await self.take(lambda e: e.get("ref") == ref and e.get("type") != "message", within)

    async def join(self, project: str) -> Event:
        reply = await self.call("join", project=project)
        assert reply["type"] == "joined", reply
        return reply

    async def say(self, project: str, text: str) -> Event:
        reply = await self.call("send", project=project, text=text)
        assert reply["type"] == "ack", reply
        return reply

    def messages(self, project: str) -> list[Event]:
        return [e for e in self.events if e.get("type") == "message" and e.get("project") == project]

    async def wait_messages(self, project: str, count: int, within: float = 10.0) -> list[Event]:
        async with asyncio.timeout(within), self._changed:
            while len(self.messages(project)) < count:
                if self._reader.done():
                    raise ConnectionError(
                        f"closed ({self.ws.close_code}) with {len(self.messages(project))} messages"
                    )
                await self._changed.wait()
        return self.messages(project)

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.wait([self._reader], timeout=5)
