"""The chat protocol end to end: two real instances sharing a real Redis, DynamoDB on moto."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import orjson
import pytest
from chat_service import READINESS_PATH
from chat_service.adapters.dynamo_store import DynamoMessageStore
from chat_service.core.keys import KeyClock, origin_of
from chat_service.core.messages import StoredMessage
from redis import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from devstack.identity import Issuer
from devstack.servers import LOCALHOST, RedisServer
from tests.services.chat.chat_client import ChatClient, quiet, run
from tests.services.chat.chat_harness import ChatInstance, wait_for

Pair = tuple[ChatInstance, ChatInstance]


def test_message_reaches_members_on_both_instances_exactly_once_and_not_others(
    chat_pair: Pair, issuer: Issuer, project: str
) -> None:
    a, b = chat_pair
    other = project + "-other"

    async def scenario() -> None:
        alice = await ChatClient.open(a.ws_url, issuer.mint("alice", [project]))
        bob = await ChatClient.open(b.ws_url, issuer.mint("bob", [project, other]))
        ann = await ChatClient.open(a.ws_url, issuer.mint("ann", [project]))
        carol_a = await ChatClient.open(a.ws_url, issuer.mint("carol", [other]))
        carol_b = await ChatClient.open(b.ws_url, issuer.mint("carol", [other]))
        for client, joined in (
            (alice, project),
            (bob, project),
            (ann, project),
            (carol_a, other),
            (carol_b, other),
        ):
            reply = await client.join(joined)
            assert reply["live"] is True
        ack = await alice.say(project, "hello team")
        for member in (alice, bob, ann):
            (message,) = await member.wait_messages(project, 1)
            assert message == {
                "type": "message",
                "project": project,
                "id": ack["id"],
                "user": "alice",
                "text": "hello team",
                "ts": ack["ts"],
            }
        await quiet()
        for member in (alice, bob, ann):
            assert len(member.messages(project)) == 1
        assert carol_a.messages(project) == [] and carol_b.messages(project) == []
        # The sender's ack comes before its own copy of the message.
        kinds = [e["type"] for e in alice.events if e["type"] in ("ack", "message")]
        assert kinds == ["ack", "message"]
        # A member who has not joined the project on this connection gets nothing either.
        assert [e for e in bob.events if e.get("project") == other and e["type"] == "message"] == []
        for client in (alice, bob, ann, carol_a, carol_b):
            await client.close()

    run(scenario())


def test_joining_a_project_outside_the_token_is_refused_with_a_close_code(
    chat_pair: Pair, issuer: Issuer, project: str
) -> None:
    async def scenario() -> None:
        mallory = await ChatClient.open(chat_pair[0].ws_url, issuer.mint("mallory", ["somewhere-else"]))
        await mallory.send_json({"type": "join", "project": project})
        code, reason = await mallory.wait_closed()
        assert code == 4403
        assert reason is not None and "not a member" in reason and project in reason

        snoop = await ChatClient.open(chat_pair[1].ws_url, issuer.mint("snoop", []))
        await snoop.send_json({"type": "history", "project": project})
        assert (await snoop.wait_closed())[0] == 4403

    run(scenario())


def test_sending_needs_a_join_first(chat_pair: Pair, issuer: Issuer, project: str) -> None:
    async def scenario() -> None:
        client = await ChatClient.open(chat_pair[0].ws_url, issuer.mint("u1", [project]))
        reply = await client.call("send", project=project, text="too early")
        assert reply["type"] == "error" and reply["code"] == "not_joined"
        await client.join(project)
        await client.say(project, "now")
        left = await client.call("leave", project=project)
        assert left["type"] == "left"
        reply = await client.call("send", project=project, text="after leaving")
        assert reply["code"] == "not_joined"
        await client.close()

    run(scenario())


def test_history_is_newest_first_and_pages(chat_pair: Pair, issuer: Issuer, project: str) -> None:
    a, b = chat_pair

    async def scenario() -> None:
        writer = await ChatClient.open(a.ws_url, issuer.mint("writer", [project]))
        await writer.join(project)
        ids = [(await writer.say(project, f"m{i}"))["id"] for i in range(7)]
        assert ids == sorted(ids)

        reader = await ChatClient.open(b.ws_url, issuer.mint("reader", [project]))
        pages = []
        before = None
        while True:
            fields: dict[str, Any] = {"project": project, "limit": 3}
            if before:
                fields["before"] = before
            page = await reader.call("history", **fields)
            assert page["type"] == "history" and page["order"] == "desc"
            pages.append([m["text"] for m in page["messages"]])
            if not page["more"]:
                break
            before = page["messages"][-1]["id"]
        assert pages == [["m6", "m5", "m4"], ["m3", "m2", "m1"], ["m0"]]

        newer = await reader.call("history", project=project, after=ids[2], limit=10)
        assert newer["order"] == "asc" and newer["more"] is False
        assert [m["text"] for m in newer["messages"]] == ["m3", "m4", "m5", "m6"]
        assert newer["messages"][0] == {
            "id": ids[3],
            "project": project,
            "user": "writer",
            "text": "m3",
            "ts": newer["messages"][0]["ts"],
        }

        paged = await reader.call("history", project=project, after=ids[0], limit=2)
        assert [m["text"] for m in paged["messages"]] == ["m1", "m2"] and paged["more"] is True

        empty = await reader.call("history", project=project, after=ids[-1])
        assert empty["messages"] == [] and empty["more"] is False
        await writer.close()
        await reader.close()

    run(scenario())


def test_messages_in_the_same_millisecond_are_all_stored(
    chat_pair: Pair, issuer: Issuer, project: str
) -> None:
    """A burst on each instance at once: several land in one millisecond, and none overwrites another."""
    a, b = chat_pair

    async def scenario() -> None:
        one = await ChatClient.open(a.ws_url, issuer.mint("one", [project]))
        two = await ChatClient.open(b.ws_url, issuer.mint("two", [project]))
        await one.join(project)
        await two.join(project)
        burst = 40
        frames = [
            (client, {"type": "send", "project": project, "text": f"{name}-{i}", "ref": f"{name}-{i}"})
            for i in range(burst)
            for client, name in ((one, "one"), (two, "two"))
        ]
        await asyncio.gather(*(client.ws.send(orjson.dumps(f).decode()) for client, f in frames))
        acks = [await client.expect("ack", ref=f["ref"]) for client, f in frames]
        ids = [ack["id"] for ack in acks]
        assert len(set(ids)) == 2 * burst
        millis = [i[:13] for i in ids]
        assert len(set(millis)) < len(millis), "the burst never shared a millisecond; nothing was tested"

        history = await one.call("history", project=project, limit=100)
        assert sorted(m["id"] for m in history["messages"]) == sorted(ids)
        # Every member got all of them once; each sender's stream in send order, and what came
        # through each instance in key order (the ordering guarantee in the README).
        for client in (one, two):
            received = await client.wait_messages(project, 2 * burst)
            assert sorted(m["id"] for m in received) == sorted(ids)
            for name in ("one", "two"):
                texts = [m["text"] for m in received if m["text"].startswith(name)]
                assert texts == [f"{name}-{i}" for i in range(burst)]
            for origin in {origin_of(i) for i in ids}:
                keys = [m["id"] for m in received if origin_of(m["id"]) == origin]
                assert keys == sorted(keys)
        await one.close()
        await two.close()

    run(scenario())


def test_store_keeps_two_messages_with_the_same_millisecond(aws_env: dict[str, str], chat_table: str) -> None:
    """The storage layer alone, with a frozen clock: one message from each of two instances."""
    store = DynamoMessageStore(chat_table, aws_env["AWS_REGION"], max_connections=2)
    frozen = 1_700_000_000_123
    keys = [KeyClock(instance, clock=lambda: frozen).next("p")[0] for instance in ("AAAAAAAA", "BBBBBBBB")]
    project = f"same-ms-{keys[0][-4:]}"
    store.write(
        [
            StoredMessage(project, keys[0], "u", "first", frozen),
            StoredMessage(project, keys[1], "u", "second", frozen),
        ]
    )
    page, more = store.page(project, before=None, after=None, limit=10)
    assert [m.text for m in page] == ["second", "first"] and not more
    assert {m.key[:13] for m in page} == {str(frozen)}


def test_backfill_after_reconnect_loses_nothing(chat_pair: Pair, issuer: Issuer, project: str) -> None:
    a, b = chat_pair

    async def scenario() -> None:
        alice = await ChatClient.open(a.ws_url, issuer.mint("alice", [project]))
        await alice.join(project)
        bob_token = issuer.mint("bob", [project])
        bob = await ChatClient.open(b.ws_url, bob_token)
        await bob.join(project)
        await alice.say(project, "before")
        (seen,) = await bob.wait_messages(project, 1)
        await bob.close()

        missed = [(await alice.say(project, f"while away {i}"))["id"] for i in range(3)]

        # Reconnect to the other instance, as after a task restart; join first, then backfill.
        bob = await ChatClient.open(a.ws_url, bob_token)
        await bob.join(project)
        live = (await alice.say(project, "after"))["id"]
        backfill = await bob.call("history", project=project, after=seen["id"])
        assert [m["id"] for m in backfill["messages"]] == [*missed, live]
        (received,) = await bob.wait_messages(project, 1)
        assert received["id"] == live
        await alice.close()
        await bob.close()

    run(scenario())


def test_ping_pong_and_token_refresh(chat_pair: Pair, issuer: Issuer, project: str) -> None:
    async def scenario() -> None:
        client = await ChatClient.open(chat_pair[0].ws_url, issuer.mint("dana", [project], ttl_seconds=30))
        pong = await client.call("ping")
        assert pong["type"] == "pong" and isinstance(pong["ts"], int)
        await client.join(project)
        refreshed = await client.call("auth", token=issuer.mint("dana", [project], ttl_seconds=3600))
        assert refreshed["type"] == "authenticated" and refreshed["expires_at"] > 0
        rejected = await client.call("auth", token="not-a-token")
        assert rejected["type"] == "error" and rejected["code"] == "unauthorized"
        # Dropping the project from a refreshed token ends the membership.
        await client.send_json({"type": "auth", "token": issuer.mint("dana", ["elsewhere"])})
        assert (await client.wait_closed())[0] == 4403

        other = await ChatClient.open(chat_pair[0].ws_url, issuer.mint("dana", [project]))
        await other.send_json({"type": "auth", "token": issuer.mint("eve", [project])})
        code, reason = await other.wait_closed()
        assert code == 4401 and reason is not None and "another user" in reason

    run(scenario())


def test_bad_frames_get_errors_and_the_connection_survives(
    chat_pair: Pair, issuer: Issuer, project: str
) -> None:
    async def scenario() -> None:
        client = await ChatClient.open(chat_pair[1].ws_url, issuer.mint("fuzzy", [project]))
        await client.join(project)
        cases: list[tuple[str | bytes, str]] = [
            ("{not json", "bad_json"),
            (b"\xff\xfe\x00binary garbage", "bad_json"),
            ("[]", "bad_request"),
            ('{"type": "teleport"}', "unknown_type"),
            ('{"type": "send", "project": "' + project + '"}', "bad_request"),
            ('{"type": "history", "project": "' + project + '", "limit": 1000}', "bad_request"),
            ('{"type": "send", "project": "' + project + '", "text": "' + "x" * 5000 + '"}', "too_large"),
        ]
        for frame, code in cases:
            await client.ws.send(frame)
            error = await client.expect("error")
            assert error["code"] == code, (frame[:40], error)
        # A continuation frame with no message to continue (written raw: the client library would
        # refuse to), masked with a zero key as clients must mask.
        client.ws.transport.write(b"\x80\x86\x00\x00\x00\x00orphan")
        assert (await client.expect("error"))["code"] == "bad_frame"
        assert (await client.call("ping"))["type"] == "pong"
        await client.say(project, "still here")
        await client.close()

    run(scenario())


def test_fragmented_messages_are_reassembled(chat_pair: Pair, issuer: Issuer, project: str) -> None:
    async def scenario() -> None:
        client = await ChatClient.open(chat_pair[0].ws_url, issuer.mint("frag", [project]))
        await client.join(project)
        parts = ['{"type":"send","project":"', project, '","text":"in pieces","ref":"f1"}']
        await client.ws.send(iter(parts))
        ack = await client.expect("ack", ref="f1")
        (message,) = await client.wait_messages(project, 1)
        assert message["id"] == ack["id"] and message["text"] == "in pieces"
        await client.close()

    run(scenario())


def test_oversize_frame_closes_with_1009(chat_pair: Pair, issuer: Issuer, project: str) -> None:
    async def scenario() -> None:
        client = await ChatClient.open(chat_pair[0].ws_url, issuer.mint("big", [project]))
        await client.join(project)
        # MAX_MESSAGE_BYTES is 4096 here, so no frame needs more than ~25 KB.
        await client.ws.send('{"type":"send","project":"' + project + '","text":"' + "y" * 200_000 + '"}')
        code, _ = await client.wait_closed()
        assert code == 1009
        assert await _history_count(chat_pair[0], issuer, project) == 0

    run(scenario())


async def _history_count(instance: ChatInstance, issuer: Issuer, project: str) -> int:
    client = await ChatClient.open(instance.ws_url, issuer.mint("auditor", [project]))
    page = await client.call("history", project=project, limit=100)
    await client.close()
    return len(page["messages"])


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "missing bearer token"),
        ("garbage", "malformed"),
        ("expired", "expired"),
        ("wrong-issuer", "invalid token"),
        ("foreign-key", "invalid token"),
    ],
)
def test_bad_tokens_are_closed_with_4401(
    chat_pair: Pair, issuer: Issuer, token: str | None, reason: str
) -> None:
    tokens = {
        "expired": issuer.mint("u", ["p"], ttl_seconds=-60),
        "wrong-issuer": issuer.mint("u", ["p"], iss="https://evil.example"),
        "foreign-key": Issuer(issuer=issuer.issuer, kid=issuer.kid).mint("u", ["p"]),
        "garbage": "garbage",
    }

    async def scenario() -> None:
        client = await ChatClient.open(chat_pair[0].ws_url, tokens.get(token or ""), wait_hello=False)
        code, message = await client.wait_closed()
        assert code == 4401
        assert message is not None and reason in message
        assert not [e for e in client.events if e["type"] == "hello"]

    run(scenario())


def test_non_bearer_authorization_is_refused(chat_pair: Pair) -> None:
    async def scenario() -> None:
        client = await ChatClient.open(
            chat_pair[0].ws_url, headers={"Authorization": "Basic dTpw"}, wait_hello=False
        )
        assert (await client.wait_closed())[0] == 4401

    run(scenario())


@pytest.mark.parametrize("via", ["subprotocol", "query"])
def test_browser_token_transports(chat_pair: Pair, issuer: Issuer, project: str, via: str) -> None:
    async def scenario() -> None:
        client = await ChatClient.open(chat_pair[1].ws_url, issuer.mint("browser", [project]), via=via)
        hello = client.events[0]
        assert hello["type"] == "hello" and hello["user"] == "browser" and hello["projects"] == [project]
        assert client.ws.subprotocol == ("motion-chat.v1" if via == "subprotocol" else None)
        await client.join(project)
        await client.close()

    run(scenario())


def test_frames_sent_before_authentication_completes_are_handled(
    chat_pair: Pair, issuer: Issuer, project: str
) -> None:
    async def scenario() -> None:
        client = await ChatClient.open(chat_pair[0].ws_url, issuer.mint("eager", [project]), wait_hello=False)
        await client.send_json({"type": "join", "project": project, "ref": "j"})
        await client.send_json({"type": "send", "project": project, "text": "first words", "ref": "s"})
        assert (await client.expect("hello"))["user"] == "eager"
        assert (await client.expect("joined", ref="j"))["project"] == project
        assert (await client.expect("ack", ref="s"))["id"]
        await client.close()

    run(scenario())


def test_health_check_and_unknown_paths(chat_pair: Pair) -> None:
    status, body = chat_pair[0].health()
    assert status == 200
    assert body["status"] == "ready" and body["problem"] is None
    assert body["store"] == "up" and body["redis"] == "up" and body["persist"] is True

    async def scenario() -> None:
        with pytest.raises(InvalidStatus) as err:
            async with connect(f"ws://{LOCALHOST}:{chat_pair[0].port}/elsewhere"):
                pass
        assert err.value.response.status_code == 404

    run(scenario())
    # A plain HTTP/1.1 GET (what the ALB and the container health check send) works too.
    with socket.create_connection((LOCALHOST, chat_pair[1].port), timeout=5) as sock:
        sock.sendall(f"GET {READINESS_PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        response = b""
        while chunk := sock.recv(4096):
            response += chunk
    assert response.startswith(b"HTTP/1.1 200") and b'"redis":"up"' in response


def test_instances_subscribe_only_to_projects_with_local_members(
    chat_pair: Pair, redis_server: RedisServer, issuer: Issuer, project: str
) -> None:
    a, b = chat_pair
    channel = f"chat:project:{project}".encode()
    redis = Redis(host=LOCALHOST, port=redis_server.port)

    def subscribers() -> int:
        return int(dict(redis.pubsub_numsub(channel))[channel])

    async def scenario() -> None:
        assert subscribers() == 0
        alice = await ChatClient.open(a.ws_url, issuer.mint("alice", [project]))
        ann = await ChatClient.open(a.ws_url, issuer.mint("ann", [project]))
        await alice.join(project)
        await ann.join(project)
        assert subscribers() == 1  # one subscription per instance, not per member
        bob = await ChatClient.open(b.ws_url, issuer.mint("bob", [project]))
        await bob.join(project)
        assert subscribers() == 2
        await bob.call("leave", project=project)
        await asyncio.to_thread(wait_for, lambda: subscribers() == 1)
        await alice.close()
        await asyncio.sleep(0.2)
        assert subscribers() == 1  # ann is still there
        await ann.close()
        await asyncio.to_thread(wait_for, lambda: subscribers() == 0)
        await bob.close()

    run(scenario())
    redis.close()


@pytest.mark.parametrize(("payload", "echoed"), [(b"", 1000), ((3000).to_bytes(2, "big") + b"bye", 3000)])
def test_a_client_close_is_answered_with_its_code(
    chat_pair: Pair, issuer: Issuer, project: str, payload: bytes, echoed: int
) -> None:
    """RFC 6455 5.5.1: the server answers a close frame with one carrying the same code; a close
    without a code (1005 "no status" may not be sent) is answered with 1000."""

    async def scenario() -> None:
        client = await ChatClient.open(chat_pair[0].ws_url, issuer.mint("closer", [project]))
        await client.join(project)
        # Written raw (masked with a zero key), so the client library does not choose the answer.
        client.ws.transport.write(bytes((0x88, 0x80 | len(payload))) + b"\x00\x00\x00\x00" + payload)
        code, _ = await client.wait_closed()
        assert code == echoed

    run(scenario())
