"""The chat service's authorization matrix: every operation a client can perform, for every kind
of caller, with the outcome, from one table (`MATRIX`), each cell performed against the real service.

Callers (`PRINCIPALS`), for the project under test:
  member   a token listing the project; joined it first (so `send` is possible)
  former   was a member: connected with a token listing the project, joined, posted, left, then
           refreshed (`auth`) to a token that no longer lists it
  outsider a valid token that never listed the project
  none     no token at all
  forged   a token for a member, signed by a key that is not the issuer's (same `kid`)
  expired  a member's token that expired a minute ago (beyond the 5 s leeway; expiry on an open
           connection is test_chat_expiry.py)

Operations: `connect` (the upgrade) and every request type the protocol parses. For `auth` the
caller's credential is the token *in the frame*, sent on a member's open, joined connection: a
fresh token (member), the same user without the project (former), another user's token (outsider),
no token, a forged one, an expired one.

The table must cover every request type the server parses (`protocol.parse`), every one in the
`Request` union and every one documented in app_code/chat/README.md: a new operation cannot ship
without its row.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import re
import typing
from dataclasses import dataclass
from typing import Any

import pytest
from chat_service.core import protocol as proto
from websockets.exceptions import ConnectionClosed

from devstack.identity import Issuer
from tests.services.chat.chat_client import ChatClient, quiet, run
from tests.services.chat.chat_harness import REPO, ChatInstance

Pair = tuple[ChatInstance, ChatInstance]

PRINCIPALS = ("member", "former", "outsider", "none", "forged", "expired")


@dataclass(frozen=True)
class Outcome:
    """What the caller sees: a reply of this type, an `error` with this code, or a close with this code."""

    reply: str | None = None
    error: str | None = None
    close: int | None = None


def ok(reply: str) -> Outcome:
    return Outcome(reply=reply)


def error(code: str) -> Outcome:
    return Outcome(error=code)


def closed(code: int) -> Outcome:
    return Outcome(close=code)


UNAUTHORIZED, FORBIDDEN = proto.CLOSE_UNAUTHORIZED, proto.CLOSE_FORBIDDEN
# A caller without a valid token is closed before anything it sent is served, whatever it sent.
NO_VALID_TOKEN = {
    "none": closed(UNAUTHORIZED),
    "forged": closed(UNAUTHORIZED),
    "expired": closed(UNAUTHORIZED),
}

MATRIX: dict[str, dict[str, Outcome]] = {
    "connect": {"member": ok("hello"), "former": ok("hello"), "outsider": ok("hello"), **NO_VALID_TOKEN},
    "join": {
        "member": ok("joined"),
        "former": closed(FORBIDDEN),
        "outsider": closed(FORBIDDEN),
        **NO_VALID_TOKEN,
    },
    "send": {
        "member": ok("ack"),
        # Without a join there is nothing to send to, and the join itself is refused (above).
        "former": error("not_joined"),
        "outsider": error("not_joined"),
        **NO_VALID_TOKEN,
    },
    "history": {
        "member": ok("history"),
        "former": closed(FORBIDDEN),
        "outsider": closed(FORBIDDEN),
        **NO_VALID_TOKEN,
    },
    # Leaving is harmless for anyone authenticated: it only ever removes the caller's own membership.
    "leave": {"member": ok("left"), "former": ok("left"), "outsider": ok("left"), **NO_VALID_TOKEN},
    "ping": {"member": ok("pong"), "former": ok("pong"), "outsider": ok("pong"), **NO_VALID_TOKEN},
    "auth": {
        "member": ok("authenticated"),
        # The refreshed token drops a project the connection has joined.
        "former": closed(FORBIDDEN),
        # Another user's token cannot take over the connection.
        "outsider": closed(UNAUTHORIZED),
        # A bad refresh is refused and the connection keeps its current token.
        "none": error("bad_request"),
        "forged": error("unauthorized"),
        "expired": error("unauthorized"),
    },
}


def _frame(op: str, project: str, ref: str, token: str | None = None) -> dict[str, Any]:
    frames: dict[str, dict[str, Any]] = {
        "join": {"project": project},
        "send": {"project": project, "text": f"matrix {ref}"},
        "history": {"project": project},
        "leave": {"project": project},
        "ping": {},
        "auth": {} if token is None else {"token": token},
    }
    return {"type": op, "ref": ref, **frames[op]}


# --- the table is complete ---------------------------------------------------------------------


def _parsed_types() -> set[str]:
    """The `type` values `protocol.parse` handles, read from its code (`kind == "<type>"`)."""
    tree = ast.parse(inspect.getsource(proto.parse))
    found: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Compare)
            and isinstance(node.ops[0], ast.Eq)
            and isinstance(node.left, ast.Name)
            and node.left.id == "kind"
            and isinstance(node.comparators[0], ast.Constant)
            and isinstance(node.comparators[0].value, str)
        ):
            found.add(node.comparators[0].value)
    return found


def _documented_types() -> set[str]:
    text = (REPO / "app_code/chat/README.md").read_text()
    section = text.split("### Client → server", 1)[1].split("###", 1)[0]
    body = section.split("|---|", 1)[1]  # the rows, below the table's header
    return set(re.findall(r"^\| `(\w+)` \|", body, re.MULTILINE))


def test_every_operation_has_a_row_and_every_row_every_caller() -> None:
    operations = set(MATRIX) - {"connect"}
    assert _parsed_types() == operations, "protocol.parse handles a type without a row (or vice versa)"
    union = {cls.__name__.lower() for cls in typing.get_args(proto.Request)}
    assert union == operations
    assert _documented_types() == operations
    for op, row in MATRIX.items():
        assert tuple(row) == PRINCIPALS, op
    # Each row's frame is the request it names.
    for op in operations:
        parsed = proto.parse(proto.encode(_frame(op, "p", "r", "t")), 4096)
        assert type(parsed).__name__.lower() == op


# --- each cell, performed ----------------------------------------------------------------------


def _credential(principal: str, issuer: Issuer, project: str, *, removed: bool = False) -> str | None:
    """The token the caller connects with (for every operation but `auth`); a former member's before
    its removal (it is refreshed in `_prepare`), or after it (`removed`, to connect with)."""
    return {
        "member": lambda: issuer.mint("member", [project]),
        "former": lambda: issuer.mint("former", [project + "-elsewhere" if removed else project]),
        "outsider": lambda: issuer.mint("outsider", [project + "-elsewhere"]),
        "none": lambda: None,
        "forged": lambda: Issuer(issuer=issuer.issuer, kid=issuer.kid).mint("member", [project]),
        "expired": lambda: issuer.mint("member", [project], ttl_seconds=-60),
    }[principal]()


def _refresh_token(principal: str, issuer: Issuer, project: str) -> str | None:
    """The token a member's connection presents in the `auth` frame."""
    return {
        "member": lambda: issuer.mint("member", [project]),
        "former": lambda: issuer.mint("member", [project + "-elsewhere"]),
        "outsider": lambda: issuer.mint("outsider", [project]),
        "none": lambda: None,
        "forged": lambda: Issuer(issuer=issuer.issuer, kid=issuer.kid).mint("member", [project]),
        "expired": lambda: issuer.mint("member", [project], ttl_seconds=-60),
    }[principal]()


async def _prepare(client: ChatClient, principal: str, issuer: Issuer, project: str) -> None:
    if principal == "member":
        await client.join(project)
    elif principal == "former":
        await client.join(project)
        await client.say(project, "former's message from when they were a member")
        assert (await client.call("leave", project=project))["type"] == "left"
        refreshed = await client.call("auth", token=issuer.mint("former", [project + "-elsewhere"]))
        assert refreshed["type"] == "authenticated", refreshed


async def _observe(client: ChatClient, ref: str, expected: Outcome) -> None:
    if expected.close is not None:
        code, reason = await client.wait_closed()
        assert code == expected.close, (code, reason)
        # Nothing was served in reply: no answer to the request, and never a hello for a bad token.
        assert not [e for e in client.events if e.get("ref") == ref]
        return
    reply = await client.reply(ref)
    if expected.reply is not None:
        assert reply["type"] == expected.reply, reply
    else:
        assert reply["type"] == "error" and reply["code"] == expected.error, reply
        # An error leaves the connection open and usable.
        assert (await client.call("ping"))["type"] == "pong"


async def _stored_texts(instance: ChatInstance, issuer: Issuer, project: str) -> set[str]:
    auditor = await ChatClient.open(instance.ws_url, issuer.mint("auditor", [project]))
    page = await auditor.call("history", project=project, limit=100)
    await auditor.close()
    return {m["text"] for m in page["messages"]}


@pytest.mark.parametrize("principal", PRINCIPALS)
@pytest.mark.parametrize("op", list(MATRIX))
def test_authorization(chat_pair: Pair, issuer: Issuer, project: str, op: str, principal: str) -> None:
    expected = MATRIX[op][principal]
    instance = chat_pair[0]
    ref = f"{op}-{principal}"

    async def scenario() -> None:
        if op == "connect":
            token = _credential(principal, issuer, project, removed=True)
            client = await ChatClient.open(instance.ws_url, token, wait_hello=False)
            if expected.reply == "hello":
                hello = await client.expect("hello")
                assert (project in hello["projects"]) is (principal == "member")
                assert (await client.call("ping"))["type"] == "pong"
                await client.close()
            else:
                code, _ = await client.wait_closed()
                assert code == expected.close and not client.events
            return
        if op == "auth":
            client = await ChatClient.open(instance.ws_url, issuer.mint("member", [project]))
            await client.join(project)
            frame = _frame(op, project, ref, _refresh_token(principal, issuer, project))
        else:
            token = _credential(principal, issuer, project)
            valid = principal in ("member", "former", "outsider")
            client = await ChatClient.open(instance.ws_url, token, wait_hello=valid)
            if valid:
                await _prepare(client, principal, issuer, project)
            frame = _frame(op, project, ref)
        # Without a valid token the frame goes out right after the handshake, before the token is
        # checked: the server keeps early frames for after the hello, and must drop them instead.
        # Closed before the frame could go out (no token at all): nothing to serve either.
        with contextlib.suppress(ConnectionClosed):
            await client.send_json(frame)
        await _observe(client, ref, expected)
        if expected.close is None:
            await client.close()
        if op == "send":
            await quiet()
            stored = frame["text"] in await _stored_texts(chat_pair[1], issuer, project)
            assert stored is (expected.reply == "ack")
        if op != "auth" and principal in ("none", "forged", "expired"):
            assert not [e for e in client.events if e["type"] == "hello"]

    run(scenario())
