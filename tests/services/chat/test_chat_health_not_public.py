"""The health check path is for the load balancer's health checks, which reach a task directly, not
for the public: the local ALB stand-in (devstack/alb.py), routing by the program's own listener
rules, answers it with the listener's 404 instead of forwarding it, while the chat instance behind it
still answers it directly."""

from __future__ import annotations

import httpx
import pytest
from chat_service import READINESS_PATH

from components.aws.alb_rules import NOT_FOUND_BODY
from devstack.alb import make_app
from devstack.apigw import LocalHttpApi
from devstack.servers import LOCALHOST
from tests.services.chat.chat_harness import ChatInstance

Pair = tuple[ChatInstance, ChatInstance]


@pytest.mark.parametrize("query", ["", "?verbose=1"])
def test_the_alb_stand_in_refuses_the_health_path_that_the_task_still_answers(
    chat_pair: Pair, query: str
) -> None:
    instance = chat_pair[0]
    before = instance.health()[1]
    with (
        LocalHttpApi(make_app({"chat": f"http://{LOCALHOST}:{instance.port}"})) as stand_in,
        httpx.Client(base_url=stand_in.url) as alb,
    ):
        refused = alb.get(READINESS_PATH + query)
        assert refused.status_code == 404 and refused.text == NOT_FOUND_BODY
        assert "connections" not in refused.text
        # Everything else under the service's patterns is still forwarded to it: a plain GET of the
        # WebSocket path reaches the instance, which refuses the missing upgrade itself.
        forwarded = alb.get("/chat/ws")
        assert forwarded.status_code != 404 or forwarded.text != NOT_FOUND_BODY
    # The task itself (where the target group's health checks go) still answers.
    direct = httpx.get(f"{instance.health_url}{query}")
    assert direct.status_code == 200 and direct.json()["status"] == "ready"
    assert before["instance"] == direct.json()["instance"]
