"""The task runner's decisions (task_runner.core), every outcome without a cloud: the event it accepts,
what it asks RunTask for, and what each DescribeTasks answer means at each point in time."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from task_runner.core import (
    EVENT_KEYS,
    STARTED_BY,
    BadRequest,
    Failed,
    RunRequest,
    Succeeded,
    TaskFailed,
    Waiting,
    judge,
    next_sleep,
    started_task,
    task_id,
)

TASK = "arn:aws:ecs:us-east-1:123456789012:task/motion-dev/0123456789abcdef0123456789abcdef"
EVENT: dict[str, Any] = {
    "cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/motion-dev",
    "taskDefinition": "arn:aws:ecs:us-east-1:123456789012:task-definition/motion-dev-files-migrate:7",
    "container": "migrate",
    "subnets": ["subnet-0a", "subnet-0b"],
    "securityGroups": ["sg-0m"],
    "assignPublicIp": False,
    "logGroup": "/motion/motion-dev-files-migrate",
    "logStreamPrefix": "motion-dev-files-migrate",
}
REQUEST = RunRequest.from_event(EVENT)
STREAM = "motion-dev-files-migrate/migrate/0123456789abcdef0123456789abcdef"


# --- the event ----------------------------------------------------------------------------------


def test_a_complete_event_is_a_request() -> None:
    assert (
        RunRequest(
            cluster=EVENT["cluster"],
            task_definition=EVENT["taskDefinition"],
            container="migrate",
            subnets=("subnet-0a", "subnet-0b"),
            security_groups=("sg-0m",),
            assign_public_ip=False,
            log_group="/motion/motion-dev-files-migrate",
            log_stream_prefix="motion-dev-files-migrate",
        )
        == REQUEST
    )
    assert set(EVENT) == EVENT_KEYS


@pytest.mark.parametrize("key", sorted(EVENT_KEYS))
def test_every_key_is_required(key: str) -> None:
    event = {k: v for k, v in EVENT.items() if k != key}
    with pytest.raises(BadRequest, match=f"missing key '{key}'"):
        RunRequest.from_event(event)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"cluster": ""}, "'cluster' must be a non-empty string"),
        ({"taskDefinition": 7}, "'taskDefinition' must be a non-empty string"),
        ({"container": None}, "'container' must be a non-empty string"),
        ({"logGroup": ["x"]}, "'logGroup' must be a non-empty string"),
        ({"subnets": []}, "'subnets' must name 1 to 16, not 0"),
        ({"subnets": [f"subnet-{i}" for i in range(17)]}, "'subnets' must name 1 to 16, not 17"),
        ({"subnets": "subnet-0a"}, "'subnets' must be a list of non-empty strings"),
        ({"subnets": ["subnet-0a", ""]}, "'subnets' must be a list of non-empty strings"),
        ({"securityGroups": [f"sg-{i}" for i in range(6)]}, "'securityGroups' must name 1 to 5, not 6"),
        ({"securityGroups": []}, "'securityGroups' must name 1 to 5, not 0"),
        ({"assignPublicIp": "DISABLED"}, "'assignPublicIp' must be true or false"),
        ({"assignPublicIp": 0}, "'assignPublicIp' must be true or false"),
        # The provider adds this key when lifecycle_scope is not CREATE_ONLY: refused, not ignored.
        ({"tf": {"action": "create"}}, "unknown key 'tf'"),
    ],
)
def test_a_bad_event_names_its_problem(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(BadRequest) as raised:
        RunRequest.from_event({**EVENT, **change})
    assert problem in str(raised.value)


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(BadRequest) as raised:
        RunRequest.from_event({**EVENT, "cluster": "", "subnets": [], "extra": 1})
    message = str(raised.value)
    assert "'cluster'" in message and "'subnets'" in message and "unknown key 'extra'" in message


@pytest.mark.parametrize("event", [None, [], "run", 3])
def test_an_event_that_is_not_an_object_is_refused(event: Any) -> None:
    with pytest.raises(BadRequest, match="JSON object"):
        RunRequest.from_event(event)


# --- what RunTask is asked ------------------------------------------------------------------------


@pytest.mark.parametrize(("public", "value"), [(False, "DISABLED"), (True, "ENABLED")])
def test_run_task_asks_for_one_fargate_task_in_the_given_network(public: bool, value: str) -> None:
    request = RunRequest.from_event({**EVENT, "assignPublicIp": public})
    assert request.run_task_params() == {
        "cluster": EVENT["cluster"],
        "taskDefinition": EVENT["taskDefinition"],
        "count": 1,
        "launchType": "FARGATE",
        "startedBy": STARTED_BY,
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": ["subnet-0a", "subnet-0b"],
                "securityGroups": ["sg-0m"],
                "assignPublicIp": value,
            }
        },
    }


def test_the_log_stream_is_prefix_container_task_id() -> None:
    assert task_id(TASK) == "0123456789abcdef0123456789abcdef"
    assert task_id("arn:aws:ecs:us-east-1:123456789012:task/abc") == "abc"  # the old, short ARN format
    assert REQUEST.log_stream(TASK) == STREAM


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (
            {"tasks": [], "failures": [{"arn": "arn:x", "reason": "RESOURCE:ENI", "detail": "no ENI"}]},
            "RESOURCE:ENI (no ENI)",
        ),
        ({"tasks": [], "failures": []}, "no failure reported"),
        ({"tasks": [{"taskArn": TASK}, {"taskArn": TASK + "2"}], "failures": []}, "started 2 task(s)"),
        ({"tasks": [{"taskArn": TASK}], "failures": [{"arn": "arn:y", "reason": "AGENT"}]}, "AGENT"),
        ({}, "started 0 task(s)"),
    ],
)
def test_run_task_that_started_no_single_task_fails_with_its_reasons(response: dict, expected: str) -> None:
    with pytest.raises(TaskFailed) as raised:
        started_task(response)
    assert expected in str(raised.value)


def test_run_task_that_started_one_task_gives_its_arn() -> None:
    assert started_task({"tasks": [{"taskArn": TASK, "lastStatus": "PROVISIONING"}], "failures": []}) == TASK


# --- what DescribeTasks says, exhaustively ----------------------------------------------------------

VISIBILITY = ("described", "missing", "other failure", "absent")
STATUSES = (
    "PROVISIONING",
    "PENDING",
    "ACTIVATING",
    "RUNNING",
    "DEACTIVATING",
    "STOPPING",
    "DEPROVISIONING",
    "STOPPED",
)
EXIT_CODES = (0, 1, 3, 137, None)
STOP_CODES = (None, "EssentialContainerExited", "UserInitiated", "TaskFailedToStart", "SpotInterruption")
CONTAINERS = ("ours", "other name", "none")
TIMES = ((10.0, 600.0), (600.0, 600.0), (900.0, 600.0))  # (waited, budget): within, at, past


def described(
    visibility: str, status: str, exit_code: int | None, stop_code: str | None, container: str
) -> dict:
    if visibility == "missing":
        return {"tasks": [], "failures": [{"arn": TASK, "reason": "MISSING"}]}
    if visibility == "other failure":
        return {"tasks": [], "failures": [{"arn": TASK, "reason": "ACCESS_DENIED"}]}
    if visibility == "absent":
        return {"tasks": [{"taskArn": TASK + "-someone-elses", "lastStatus": "STOPPED"}], "failures": []}
    containers = []
    if container != "none":
        entry: dict[str, Any] = {
            "name": "migrate" if container == "ours" else "sidecar",
            "lastStatus": status,
        }
        if exit_code is not None:
            entry["exitCode"] = exit_code
        else:
            entry["reason"] = "CannotPullContainerError: pull access denied"
        containers.append(entry)
    task: dict[str, Any] = {"taskArn": TASK, "lastStatus": status, "containers": containers}
    if status == "STOPPED":
        task["stoppedReason"] = "Essential container in task exited"
        if stop_code is not None:
            task["stopCode"] = stop_code
    return {"tasks": [task], "failures": []}


CASES = list(itertools.product(VISIBILITY, STATUSES, EXIT_CODES, STOP_CODES, CONTAINERS, TIMES))


def expect(
    verdict: object,
    visibility: str,
    status: str,
    exit_code: int | None,
    stop_code: str | None,
    container: str,
    times: tuple[float, float],
) -> None:
    """The rules, stated independently of judge(): what the verdict for one answer must be."""
    waited, budget = times
    seen = visibility == "described"
    stopped = seen and status == "STOPPED"
    clean = (
        stopped and container == "ours" and exit_code == 0 and stop_code in (None, "EssentialContainerExited")
    )
    may_wait = waited < budget and (visibility in ("missing", "absent") or (seen and not stopped))
    if clean:
        # A clean exit counts even when it is seen only after the time is up.
        assert verdict == Succeeded(TASK, "/motion/motion-dev-files-migrate", STREAM)
        return
    if may_wait:
        assert verdict == Waiting(status if seen else "NOT_VISIBLE_YET")
        return
    assert isinstance(verdict, Failed), verdict
    # Every failure names the task and where its output went.
    assert TASK in verdict.message and STREAM in verdict.message
    assert "/motion/motion-dev-files-migrate" in verdict.message
    if stopped:
        assert "Essential container in task exited" in verdict.message
    if stopped and container == "ours" and exit_code not in (0, None):
        assert f"exited {exit_code}" in verdict.message
    if stopped and container == "ours" and exit_code is None:
        assert "CannotPullContainerError" in verdict.message
    if stopped and container != "ours":
        assert "no container named 'migrate'" in verdict.message
    if stopped and container == "ours" and exit_code == 0:
        assert f"stopped from outside ({stop_code})" in verdict.message
    if seen and not stopped:
        assert f"still {status}" in verdict.message
    if visibility == "other failure":
        assert "ACCESS_DENIED" in verdict.message


@pytest.mark.parametrize(("visibility", "status"), list(itertools.product(VISIBILITY, STATUSES)))
def test_every_answer_has_exactly_the_verdict_the_rules_give(visibility: str, status: str) -> None:
    """Every combination of exit code, stop code, container and time for this visibility and status
    (5 x 5 x 3 x 3 answers each, 7,200 in all)."""
    for exit_code, stop_code, container, times in itertools.product(
        EXIT_CODES, STOP_CODES, CONTAINERS, TIMES
    ):
        answer = described(visibility, status, exit_code, stop_code, container)
        verdict = judge(REQUEST, TASK, answer, waited=times[0], budget=times[1])
        try:
            expect(verdict, visibility, status, exit_code, stop_code, container, times)
        except AssertionError as error:
            raise AssertionError(f"{answer=} {times=}: {verdict}") from error


def test_the_exhaustive_table_covers_every_kind_of_verdict() -> None:
    kinds = {
        type(judge(REQUEST, TASK, described(v, s, e, c, k), waited=t[0], budget=t[1]))
        for v, s, e, c, k, t in CASES
    }
    assert kinds == {Succeeded, Waiting, Failed}


def test_a_clean_exit_is_the_result_the_deploy_keeps() -> None:
    verdict = judge(REQUEST, TASK, described("described", "STOPPED", 0, None, "ours"), waited=1.0, budget=2.0)
    assert isinstance(verdict, Succeeded)
    assert verdict.result() == {
        "taskArn": TASK,
        "exitCode": 0,
        "logGroup": "/motion/motion-dev-files-migrate",
        "logStream": STREAM,
    }


@pytest.mark.parametrize(
    ("poll", "waited", "budget", "expected"),
    [(6.0, 0.0, 600.0, 6.0), (6.0, 597.0, 600.0, 3.0), (6.0, 600.0, 600.0, 0.0), (6.0, 700.0, 600.0, 0.0)],
)
def test_the_last_look_is_at_the_deadline_not_after_it(
    poll: float, waited: float, budget: float, expected: float
) -> None:
    assert next_sleep(poll, waited, budget) == expected
