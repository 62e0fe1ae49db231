"""The task runner's I/O shell (task_runner.handler) against a local ECS (moto server): the RunTask and
DescribeTasks requests it sends (botocore checks each against the ECS API model before sending it, and
the server accepts it), the task it starts, and how it waits, succeeds and fails."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from task_runner import handler as runner
from task_runner.core import STARTED_BY, RunRequest, TaskFailed


@dataclass
class LocalTask:
    event: dict[str, Any]
    ecs: Any  # a client that records every request it sends
    sent: list[tuple[str, dict[str, Any]]]


@pytest.fixture
def local_task(aws_env: dict[str, str]) -> Iterator[LocalTask]:
    """A VPC, subnet and security group, a cluster and a Fargate task definition of our own."""
    token = uuid.uuid4().hex[:10]
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    # As the stack's VPC (components/network.py); moto also needs it to name the task's network interface.
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"migrate-{token}", Description="migrate", VpcId=vpc)[
        "GroupId"
    ]
    ecs = boto3.client("ecs")
    cluster = ecs.create_cluster(clusterName=f"t-{token}")["cluster"]["clusterArn"]
    definition = ecs.register_task_definition(
        family=f"t-{token}-files-migrate",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[
            {
                "name": "migrate",
                "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/files@sha256:" + "ab" * 32,
                "essential": True,
                "command": ["python", "-m", "files_service.migrate"],
                # moto sums the containers' memory to place a task and fails without it (5.2.5).
                "memory": 512,
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    sent: list[tuple[str, dict[str, Any]]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        sent.append((model.name, dict(params)))

    ecs.meta.events.register("provide-client-params.ecs.*", record)
    event = {
        "cluster": cluster,
        "taskDefinition": definition,
        "container": "migrate",
        "subnets": [subnet],
        "securityGroups": [group],
        "assignPublicIp": False,
        "logGroup": f"/motion/t-{token}-files-migrate",
        "logStreamPrefix": f"t-{token}-files-migrate",
    }
    yield LocalTask(event=event, ecs=ecs, sent=sent)
    ecs.meta.events.unregister("provide-client-params.ecs.*", record)


def test_it_runs_the_task_and_waits_until_it_stopped(local_task: LocalTask) -> None:
    request = RunRequest.from_event(local_task.event)
    sleeps: list[float] = []
    result = runner.run(request, local_task.ecs, budget=60.0, poll_seconds=0.5, sleep=sleeps.append)
    task_arn = result["taskArn"]
    assert result == {
        "taskArn": task_arn,
        "exitCode": 0,
        "logGroup": local_task.event["logGroup"],
        "logStream": request.log_stream(task_arn),
    }
    # The requests, in order: one RunTask exactly as core builds it, then DescribeTasks of that task
    # only, until it stopped (the local ECS moves a task one state further on every look).
    (first, params), *looks = local_task.sent
    assert (first, params) == ("RunTask", request.run_task_params())
    assert len(looks) >= 2 and all(
        call == ("DescribeTasks", {"cluster": request.cluster, "tasks": [task_arn]}) for call in looks
    )
    assert sleeps == [0.5] * (len(looks) - 1)
    # What the server started: our definition, on Fargate, in our subnet and security group.
    (task,) = boto3.client("ecs").describe_tasks(cluster=request.cluster, tasks=[task_arn])["tasks"]
    assert task["taskDefinitionArn"] == request.task_definition and task["launchType"] == "FARGATE"
    assert task["startedBy"] == STARTED_BY and task["lastStatus"] == "STOPPED"
    (eni,) = task["attachments"]
    details = {d["name"]: d["value"] for d in eni["details"]}
    assert details["subnetId"] == local_task.event["subnets"][0]


def test_the_lambda_entry_point_runs_the_event_with_the_time_it_has(
    local_task: LocalTask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "POLL_SECONDS", 0.0)

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 120_000

    result = runner.handler(local_task.event, Context())
    assert result["exitCode"] == 0 and result["taskArn"].startswith(
        local_task.event["cluster"].replace(":cluster/", ":task/")
    )


def test_no_time_left_to_wait_is_refused_before_any_task_starts(local_task: LocalTask) -> None:
    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return int(runner.MARGIN_SECONDS * 1000)

    with pytest.raises(runner.BadRequest, match="no time to wait"):
        runner.handler(local_task.event, Context())
    assert not boto3.client("ecs").list_tasks(cluster=local_task.event["cluster"])["taskArns"]


def test_a_task_still_running_when_the_time_is_up_fails_naming_it_and_its_logs(local_task: LocalTask) -> None:
    request = RunRequest.from_event(local_task.event)
    with pytest.raises(TaskFailed) as raised:
        runner.run(request, local_task.ecs, budget=0.0, poll_seconds=0.5, sleep=lambda _: None)
    message = str(raised.value)
    assert "is still" in message and local_task.event["logGroup"] in message
    task_arn = next(a for a in message.split() if ":task/" in a)
    assert request.log_stream(task_arn) in message


def test_a_stopped_task_without_our_container_fails_with_its_stop_reason_and_logs(
    local_task: LocalTask,
) -> None:
    request = RunRequest.from_event({**local_task.event, "container": "not-there"})
    with pytest.raises(TaskFailed) as raised:
        runner.run(request, local_task.ecs, budget=60.0, poll_seconds=0.0, sleep=lambda _: None)
    message = str(raised.value)
    assert "no container named 'not-there'" in message and "stopped:" in message
    assert "not-there/" in message and local_task.event["logStreamPrefix"] in message


def test_run_task_refusing_the_definition_fails_the_invocation(local_task: LocalTask) -> None:
    unknown = local_task.event["taskDefinition"].rsplit(":", 1)[0] + ":999"
    request = RunRequest.from_event({**local_task.event, "taskDefinition": unknown})
    with pytest.raises(ClientError):
        runner.run(request, local_task.ecs, budget=60.0, poll_seconds=0.0, sleep=lambda _: None)
    assert [name for name, _ in local_task.sent] == ["RunTask"]
