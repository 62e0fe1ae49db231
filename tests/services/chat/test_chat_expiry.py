"""Token expiry on an open connection, to the second: the connection works until `exp` + the
leeway, is closed with 4401 at that moment (not at the next ping sweep, 25 s apart), and nothing it
sends afterwards is accepted. A refreshed token (`auth`) moves the deadline."""

from __future__ import annotations

import asyncio
import math
import time

import websockets
from chat_service.core.session import TOKEN_LEEWAY_SECONDS

from devstack.identity import Issuer
from tests.services.chat.chat_client import ChatClient, run
from tests.services.chat.chat_harness import ChatInstance

Pair = tuple[ChatInstance, ChatInstance]

# How late the close may come after the deadline: scheduling and one loopback round trip.
CLOSE_TOLERANCE_SECONDS = 0.5
# How early before the deadline a send must still be acked.
BEFORE_SECONDS = 0.6


async def _sleep_until(wall_clock: float) -> None:
    await asyncio.sleep(max(0.0, wall_clock - time.time()))


def test_connection_is_closed_when_its_token_expires_and_accepts_nothing_after(
    chat_pair: Pair, issuer: Issuer, project: str
) -> None:
    async def scenario() -> None:
        # `exp` is whole seconds: pick it ~2 s ahead, so the deadline is known exactly.
        exp = math.ceil(time.time()) + 2
        deadline = exp + TOKEN_LEEWAY_SECONDS
        client = await ChatClient.open(chat_pair[0].ws_url, issuer.mint("erin", [project], exp=exp))
        await client.join(project)
        # Past `exp` itself but inside the leeway, and just before the deadline: still serving.
        await _sleep_until(deadline - BEFORE_SECONDS)
        ack = await client.say(project, "just in time")
        assert ack["ts"] < deadline * 1000
        # Keep sending across the deadline, as a client that did not refresh would.
        sent = 0
        while client.close_code is None and time.time() < deadline + 3:
            try:
                await client.send_json({"type": "send", "project": project, "text": f"late {sent}"})
            except (ConnectionError, websockets.exceptions.ConnectionClosed):
                # The server's close may land between the check above and this send.
                break
            sent += 1
            await asyncio.sleep(0.02)
        code, reason = await client.wait_closed(within=5)
        closed_at = time.time()
        assert code == 4401 and reason is not None and "expired" in reason
        assert deadline - 0.05 <= closed_at <= deadline + CLOSE_TOLERANCE_SECONDS, closed_at - deadline
        # Every send that was acked was accepted before the deadline, by the server's own clock.
        acks = [e for e in client.events if e["type"] == "ack"]
        assert acks and all(e["ts"] < deadline * 1000 for e in acks), acks
        # And no message from this connection was stored at or after it.
        auditor = await ChatClient.open(chat_pair[1].ws_url, issuer.mint("auditor", [project]))
        page = await auditor.call("history", project=project, limit=100)
        assert page["messages"] and all(m["ts"] < deadline * 1000 for m in page["messages"])
        await auditor.close()

    run(scenario())


def test_a_refreshed_token_moves_the_deadline(chat_pair: Pair, issuer: Issuer, project: str) -> None:
    async def scenario() -> None:
        exp = math.ceil(time.time()) + 1
        client = await ChatClient.open(chat_pair[0].ws_url, issuer.mint("finn", [project], exp=exp))
        await client.join(project)
        new_exp = exp + 4
        refreshed = await client.call("auth", token=issuer.mint("finn", [project], exp=new_exp))
        assert refreshed == {"type": "authenticated", "ref": refreshed["ref"], "expires_at": new_exp}
        # Past the first token's deadline the connection still serves, on the second token.
        await _sleep_until(exp + TOKEN_LEEWAY_SECONDS + 0.5)
        assert (await client.say(project, "still here"))["type"] == "ack"
        code, _ = await client.wait_closed(within=new_exp + TOKEN_LEEWAY_SECONDS - time.time() + 1)
        closed_at = time.time()
        assert code == 4401
        assert abs(closed_at - (new_exp + TOKEN_LEEWAY_SECONDS)) <= CLOSE_TOLERANCE_SECONDS

    run(scenario())
