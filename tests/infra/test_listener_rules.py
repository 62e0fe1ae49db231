"""The shared ALB's listener rules under mocks, evaluated as the ALB does: no health check path is
forwarded by a public listener, while every target group's health check still uses it.

ALB semantics, from the Elastic Load Balancing docs: rules are evaluated "in priority order, from the
lowest value to the highest value. The default rule is evaluated last." ("Listener rules for your
Application Load Balancer"); a path pattern is "case sensitive", `*` "matches 0 or more characters"
and `?` "exactly 1 character", and is "compared only to the path of the URL, not to its query
string" (API Reference, PathPatternConditionConfig); a listener "can't have multiple rules with the
same priority" (API Reference, CreateRule). Health checks are requests the load balancer "sends ...
to its registered targets" ("Health checks for Application Load Balancer target groups"), not
requests through a listener. The evaluator is written here from those rules, apart from the
program's own (components/aws/alb_rules.py), so a mistake in one is not repeated in the other.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from chat_service import LIVENESS_PATH as CHAT_LIVENESS
from chat_service import READINESS_PATH as CHAT_HEALTH
from chat_service import WS_PATH
from files_service.routes import LIVENESS_PATH as FILES_LIVENESS
from files_service.routes import READINESS_PATH as FILES_HEALTH

from tests.infra.harness import RecordedResource, StackRun

RULE = "aws:lb/listenerRule:ListenerRule"
LISTENER = "aws:lb/listener:Listener"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"


def _matches(pattern: str, path: str) -> bool:
    return (
        re.fullmatch("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), path)
        is not None
    )


def _rules_of(stack: StackRun, listener: RecordedResource) -> list[RecordedResource]:
    # Under mocks a listener's ARN ends in its resource name.
    return [r for r in stack.of_type(RULE) if r.inputs["listenerArn"].endswith(f":{listener.name}")]


def _action(stack: StackRun, listener: RecordedResource, path: str) -> dict[str, Any]:
    """The action the listener takes for a request to `path`."""
    for rule in sorted(_rules_of(stack, listener), key=lambda r: r.inputs["priority"]):
        conditions = rule.inputs["conditions"]
        assert all(set(c) == {"pathPattern"} for c in conditions), "only path rules are modelled here"
        if all(any(_matches(p, path) for p in c["pathPattern"]["values"]) for c in conditions):
            (action,) = rule.inputs["actions"]
            return dict(action)
    (default,) = listener.inputs["defaultActions"]
    return dict(default)


def _forwards_to(action: dict[str, Any]) -> str | None:
    return action["targetGroupArn"].rsplit(":", 1)[1] if action["type"] == "forward" else None


def test_every_target_group_checks_its_service_health_path(stack: StackRun) -> None:
    paths = {tg.name: tg.inputs["healthCheck"]["path"] for tg in stack.of_type(TARGET_GROUP)}
    assert paths == {
        "files-upload-tg": FILES_HEALTH,
        "files-download-tg": FILES_HEALTH,
        "chat-service-tg": CHAT_HEALTH,
    }


@pytest.mark.parametrize("suffix", ["", "?verbose=1"])
def test_no_public_listener_forwards_a_health_check_path(stack: StackRun, suffix: str) -> None:
    # The load balancer's (readiness) and the containers' own (liveness) health paths.
    health_paths = {tg.inputs["healthCheck"]["path"] for tg in stack.of_type(TARGET_GROUP)}
    assert health_paths == {FILES_HEALTH, CHAT_HEALTH}
    health_paths |= {FILES_LIVENESS, CHAT_LIVENESS}
    listeners = stack.of_type(LISTENER)
    assert listeners
    for listener in listeners:
        for path in health_paths:
            # The query string is not part of what a path pattern sees.
            action = _action(stack, listener, (path + suffix).partition("?")[0])
            assert action["type"] != "forward", (listener.name, path, action)
            if action["type"] == "fixed-response":
                assert action["fixedResponse"]["statusCode"] == "404"


def test_the_services_paths_are_still_forwarded(stack: StackRun) -> None:
    """The refusal is exactly the health path: the rest of the service's space is routed as before
    (so the test above is not passing on a listener that forwards nothing)."""
    (listener,) = [
        candidate
        for candidate in stack.of_type(LISTENER)
        if any(r.inputs["actions"][0]["type"] == "forward" for r in _rules_of(stack, candidate))
    ]
    assert _forwards_to(_action(stack, listener, WS_PATH)) == "chat-service-tg"
    assert _forwards_to(_action(stack, listener, "/chat/readyz2")) == "chat-service-tg"
    assert _forwards_to(_action(stack, listener, "/chat/livez2")) == "chat-service-tg"
    assert _forwards_to(_action(stack, listener, "/files/v1/uploads")) == "files-upload-tg"
    assert _forwards_to(_action(stack, listener, "/files/v1/projects/p/files")) == "files-download-tg"


def test_rule_priorities_are_unique_per_listener(stack: StackRun) -> None:
    for listener in stack.of_type(LISTENER):
        priorities = [r.inputs["priority"] for r in _rules_of(stack, listener)]
        assert len(priorities) == len(set(priorities)), (listener.name, priorities)


def test_containers_check_liveness_and_the_load_balancer_readiness(stack: StackRun) -> None:
    # ECS replaces a task whose essential container fails its health check, so that check asks only
    # "is the process alive" (liveness); the target group asks "can it serve" (readiness).
    expected = {
        "files-upload": (FILES_LIVENESS, FILES_HEALTH),
        "files-download": (FILES_LIVENESS, FILES_HEALTH),
    }
    expected["chat-service"] = (CHAT_LIVENESS, CHAT_HEALTH)
    groups = {
        tg.name.removesuffix("-tg"): tg.inputs["healthCheck"]["path"] for tg in stack.of_type(TARGET_GROUP)
    }
    for name, (liveness, readiness) in expected.items():
        assert groups[name] == readiness
        task = stack.one("aws:ecs/taskDefinition:TaskDefinition", f"{name}-task-definition")
        (container,) = task.json("containerDefinitions")
        probe = " ".join(container["healthCheck"]["command"])
        assert liveness in probe and readiness not in probe, (name, probe)
