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
    for document in published:
        directive = document["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == metric_names.NAMESPACE
        assert directive["Dimensions"] == [[metric_names.DIMENSION]]
        assert document[metric_names.DIMENSION] == metric_names.SERVICE
        for metric in directive["Metrics"]:
            totals[metric["Name"]] = totals.get(metric["Name"], 0) + document[metric["Name"]]
    assert totals[metric_names.SENDS_ACCEPTED] == 1
    assert totals[metric_names.DELIVERIES] == 2  # to both members, the sender's copy included
    assert totals[metric_names.RATE_LIMIT_CLOSES] == 1
    assert totals[metric_names.SLOW_CONSUMER_CLOSES] == 0
    assert metric_names.CONNECTIONS in totals
