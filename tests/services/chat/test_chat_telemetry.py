"""What an operator sees of a chat instance: JSON lines, and its own metrics (chat_service.metric_names)
as EMF documents in the same log, the last one at shutdown. A real `python -m chat_service`."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable

from chat_service import metric_names

from devstack.identity import Issuer
from devstack.servers import RedisServer
from tests.services.chat.chat_client import ChatClient, run
from tests.services.chat.chat_harness import ChatInstance


def test_an_instance_logs_json_and_publishes_what_its_hub_counted(
    make_instance: Callable[..., ChatInstance], redis_server: RedisServer, issuer: Issuer, project: str
) -> None:
    instance = make_instance(redis_server)

    async def scenario() -> None:
        alice = await ChatClient.open(instance.ws_url, issuer.mint("metrics-a", [project]))
        bob = await ChatClient.open(instance.ws_url, issuer.mint("metrics-b", [project]))
        for client in (alice, bob):
            await client.join(project)
        reply = await alice.call("send", project=project, text="counted")
        assert reply["type"] == "ack"
        await bob.wait_messages(project, 1)
        # A flood closes with 4429 and is counted (a burst past the frame budget in one write).
        flooder = await ChatClient.open(instance.ws_url, issuer.mint("metrics-f", [project]))
        flooder.send_together([{"type": "ping", "ref": i} for i in range(1500)])
        code, _ = await flooder.wait_closed()
        assert code == 4429
        for client in (alice, bob):
            await client.close()

    run(scenario())
    instance.signal(signal.SIGTERM)
    assert instance.wait(20) == 0
    assert instance.log_path is not None
    lines = [line for line in instance.log_path.read_text().splitlines() if line.strip()]
    documents = [json.loads(line) for line in lines]  # every line is one JSON object
    published = [d for d in documents if "_aws" in d]
    assert published, lines[-5:]
    totals: dict[str, float] = {}
    samples: dict[str, list[float]] = {}
    units: dict[str, str] = {}
    for document in published:
        directive = document["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == metric_names.NAMESPACE
        assert directive["Dimensions"] == [[metric_names.DIMENSION]]
        assert document[metric_names.DIMENSION] == metric_names.SERVICE
        for metric in directive["Metrics"]:
            value, units[metric["Name"]] = document[metric["Name"]], metric["Unit"]
            if isinstance(value, list):
                samples.setdefault(metric["Name"], []).extend(value)
            else:
                totals[metric["Name"]] = totals.get(metric["Name"], 0) + value
    # One message, fanned out once on this task (to both members in one write): one latency, in ms.
    (latency,) = samples[metric_names.FANOUT_LATENCY]
    assert 0 <= latency < 10_000 and units[metric_names.FANOUT_LATENCY] == "Milliseconds"
    assert totals[metric_names.SENDS_ACCEPTED] == 1
    assert totals[metric_names.DELIVERIES] == 2  # to both members, the sender's copy included
    assert totals[metric_names.RATE_LIMIT_CLOSES] == 1
    assert totals[metric_names.SLOW_CONSUMER_CLOSES] == 0
    assert metric_names.CONNECTIONS in totals


def test_log_lines_about_a_connection_name_it_by_the_albs_trace_id(
    make_instance: Callable[..., ChatInstance], redis_server: RedisServer, issuer: Issuer, project: str
) -> None:
    instance = make_instance(redis_server)
    trace = "1-67891233-abcdef012345678912345678"

    async def scenario() -> None:
        # Through the ALB: its trace id names the connection. Joining a project the token does not
        # hold closes it (4403), which is logged.
        traced = await ChatClient.open(
            instance.ws_url,
            issuer.mint("traced-user", [project]),
            headers={"X-Amzn-Trace-Id": f"Self=1-x-y;Root={trace};Sampled=0"},
        )
        await traced.send_json({"type": "join", "project": "not-mine"})
        assert (await traced.wait_closed())[0] == 4403
        # Without one (a client straight to the task): an id of its own.
        direct = await ChatClient.open(instance.ws_url, issuer.mint("direct-user", [project]))
        await direct.send_json({"type": "join", "project": "not-mine"})
        assert (await direct.wait_closed())[0] == 4403

    run(scenario())
    instance.signal(signal.SIGTERM)
    assert instance.wait(20) == 0
    assert instance.log_path is not None
    documents = [json.loads(line) for line in instance.log_path.read_text().splitlines() if line.strip()]
    closes = {d["user_id"]: d for d in documents if d.get("close_code") == 4403}
    assert closes["traced-user"]["connection_id"] == trace
    own = closes["direct-user"]["connection_id"]
    assert len(own) == 24 and all(c in "0123456789abcdef" for c in own)
    assert closes["traced-user"]["level"] == "INFO" and "4403" in closes["traced-user"]["message"]
    # Shutdown's 1012 closes are not logged one by one.
    assert not [d for d in documents if d.get("close_code") == 1012]
