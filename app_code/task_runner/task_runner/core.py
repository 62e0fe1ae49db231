"""The task runner's decisions, free of I/O: what to ask ECS for, and what a task description means.

Everything here is a pure function of its arguments (the event, ECS's responses, how long we have
waited), so every outcome is tested without a cloud; `handler` only moves data between ECS and these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Marks the tasks this runner started (RunTask `startedBy`), so `aws ecs list-tasks --started-by` finds them.
STARTED_BY = "motion-task-runner"
# ECS API Reference, AwsVpcConfiguration: at most 16 subnets and 5 security groups per task.
MAX_SUBNETS = 16
MAX_SECURITY_GROUPS = 5
# ECS API Reference, Task.stopCode: the task stopped because its essential container exited (by itself).
ESSENTIAL_CONTAINER_EXITED = "EssentialContainerExited"
# DescribeTasks reports a task it cannot see (yet) as a failure with this reason; right after RunTask
# that is eventual consistency, not an error.
MISSING = "MISSING"

EVENT_KEYS = frozenset(
    {
        "cluster",
        "taskDefinition",
        "container",
        "subnets",
        "securityGroups",
        "assignPublicIp",
        "logGroup",
        "logStreamPrefix",
    }
)


class BadRequest(ValueError):
    """The event does not describe a task to run; every problem is named."""


class TaskFailed(RuntimeError):
    """The task did not run to a clean exit. The message says why and where its logs are."""


@dataclass(frozen=True)
class RunRequest:
    cluster: str
    task_definition: str
    container: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    assign_public_ip: bool
    log_group: str
    log_stream_prefix: str

    @classmethod
    def from_event(cls, event: Any) -> RunRequest:
        """The event as the deploy sends it (camelCase keys, every one required, no others)."""
        if not isinstance(event, Mapping):
            raise BadRequest(f"the event must be a JSON object, not {type(event).__name__}")
        problems = [f"unknown key {k!r}" for k in sorted(set(event) - EVENT_KEYS)]
        problems += [f"missing key {k!r}" for k in sorted(EVENT_KEYS - set(event))]

        def text(key: str) -> str:
            value = event.get(key)
            if key in event and (not isinstance(value, str) or not value):
                problems.append(f"{key!r} must be a non-empty string")
            return value if isinstance(value, str) else ""

        def names(key: str, most: int) -> tuple[str, ...]:
            value = event.get(key)
            if key not in event:
                return ()
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                problems.append(f"{key!r} must be a list of non-empty strings")
                return ()
            if not 1 <= len(value) <= most:
                problems.append(f"{key!r} must name 1 to {most}, not {len(value)}")
            return tuple(value)

        public_ip = event.get("assignPublicIp")
        if "assignPublicIp" in event and not isinstance(public_ip, bool):
            problems.append("'assignPublicIp' must be true or false")
        request = cls(
            cluster=text("cluster"),
            task_definition=text("taskDefinition"),
            container=text("container"),
            subnets=names("subnets", MAX_SUBNETS),
            security_groups=names("securityGroups", MAX_SECURITY_GROUPS),
            assign_public_ip=public_ip is True,
            log_group=text("logGroup"),
            log_stream_prefix=text("logStreamPrefix"),
        )
        if problems:
            raise BadRequest("bad task runner event: " + "; ".join(problems))
        return request

    def run_task_params(self) -> dict[str, Any]:
        """RunTask's parameters: one Fargate task in the given subnets and security groups. No tags and
        no managed tags: tagging on create needs ecs:TagResource, which the runner does not get."""
        return {
            "cluster": self.cluster,
            "taskDefinition": self.task_definition,
            "count": 1,
            "launchType": "FARGATE",
            "startedBy": STARTED_BY,
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": list(self.subnets),
                    "securityGroups": list(self.security_groups),
                    "assignPublicIp": "ENABLED" if self.assign_public_ip else "DISABLED",
                }
            },
        }

    def log_stream(self, task_arn: str) -> str:
        """Where awslogs writes the container's output: prefix/container-name/task-id (ECS Developer
        Guide, awslogs driver, `awslogs-stream-prefix`)."""
        return f"{self.log_stream_prefix}/{self.container}/{task_id(task_arn)}"

    def logs_hint(self, task_arn: str) -> str:
        return f"logs: group {self.log_group}, stream {self.log_stream(task_arn)}"


def task_id(task_arn: str) -> str:
    """The id at the end of a task ARN (arn:aws:ecs:region:account:task/cluster-name/task-id)."""
    return task_arn.rsplit("/", 1)[-1]


def started_task(response: Mapping[str, Any]) -> str:
    """The ARN of the one task RunTask started, or why it started none (capacity, network, roles)."""
    tasks = response.get("tasks") or []
    failures = response.get("failures") or []
    if len(tasks) == 1 and not failures and isinstance(tasks[0].get("taskArn"), str):
        return str(tasks[0]["taskArn"])
    reasons = "; ".join(
        f"{f.get('arn', '?')}: {f.get('reason', 'no reason')}"
        + (f" ({f['detail']})" if f.get("detail") else "")
        for f in failures
    )
    raise TaskFailed(f"RunTask started {len(tasks)} task(s) instead of 1: {reasons or 'no failure reported'}")


@dataclass(frozen=True)
class Waiting:
    status: str


@dataclass(frozen=True)
class Succeeded:
    task_arn: str
    log_group: str
    log_stream: str

    def result(self) -> dict[str, Any]:
        """What the function returns (the deploy keeps it as the invocation's result)."""
        return {
            "taskArn": self.task_arn,
            "exitCode": 0,
            "logGroup": self.log_group,
            "logStream": self.log_stream,
        }


@dataclass(frozen=True)
class Failed:
    message: str


Verdict = Waiting | Succeeded | Failed


def judge(
    request: RunRequest, task_arn: str, described: Mapping[str, Any], *, waited: float, budget: float
) -> Verdict:
    """What one DescribeTasks response says about our task, `waited` seconds after RunTask, with
    `budget` seconds allowed in all.

    Success is only the essential container exiting 0 by itself; anything else is a failure that names
    the exit code or the reason the container never ran, the task's stop reason and the log stream.
    """
    logs = request.logs_hint(task_arn)
    task = next((t for t in described.get("tasks") or [] if t.get("taskArn") == task_arn), None)
    if task is None:
        failure = next((f for f in described.get("failures") or [] if f.get("arn") == task_arn), None)
        if failure is not None and failure.get("reason") != MISSING:
            return Failed(f"DescribeTasks cannot describe task {task_arn}: {failure.get('reason')}; {logs}")
        if waited >= budget:
            return Failed(f"task {task_arn} was still not visible after {waited:.0f} s; {logs}")
        return Waiting("NOT_VISIBLE_YET")
    status = str(task.get("lastStatus") or "UNKNOWN")
    if status != "STOPPED":
        if waited >= budget:
            return Failed(
                f"task {task_arn} is still {status} after {waited:.0f} s (the runner's time is up; the task "
                f"keeps running, stop it with `aws ecs stop-task` if it hangs); {logs}"
            )
        return Waiting(status)
    stopped = _stopped_reason(task)
    container = _container(task.get("containers") or [], request.container)
    if container is None:
        return Failed(f"task {task_arn} has no container named {request.container!r}; {stopped}; {logs}")
    exit_code = container.get("exitCode")
    stop_code = task.get("stopCode")
    if exit_code == 0 and stop_code in (None, ESSENTIAL_CONTAINER_EXITED):
        return Succeeded(task_arn, request.log_group, request.log_stream(task_arn))
    if exit_code is None:
        why = container.get("reason") or "no reason given"
        return Failed(
            f"container {request.container!r} of task {task_arn} never ran to an exit: {why}; {stopped}; {logs}"
        )
    if exit_code == 0:
        return Failed(
            f"container {request.container!r} of task {task_arn} exited 0 but the task was stopped from "
            f"outside ({stop_code}), so it may not have finished; {stopped}; {logs}"
        )
    return Failed(f"container {request.container!r} of task {task_arn} exited {exit_code}; {stopped}; {logs}")


def _container(containers: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any] | None:
    return next((c for c in containers if c.get("name") == name), None)


def _stopped_reason(task: Mapping[str, Any]) -> str:
    reason = task.get("stoppedReason") or "no reason given"
    code = task.get("stopCode")
    return f"stopped: {reason}" + (f" ({code})" if code else "")


def next_sleep(poll_seconds: float, waited: float, budget: float) -> float:
    """How long to sleep before asking again: the poll interval, never past the budget, so the last
    look happens when the time is up instead of after it."""
    return max(0.0, min(poll_seconds, budget - waited))
