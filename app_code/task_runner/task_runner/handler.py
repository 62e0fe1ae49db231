"""The Lambda entry point: RunTask, then DescribeTasks until the task stopped or the time is up, and
raise unless `core.judge` says it succeeded (a raised error fails the invocation, and so the deploy)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import boto3

from task_runner.core import (
    BadRequest,
    Failed,
    RunRequest,
    Succeeded,
    TaskFailed,
    judge,
    next_sleep,
    started_task,
)

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)

POLL_SECONDS = 6.0
# Kept back from the function's own timeout, so the runner reports a clear failure (with the task and
# its logs) before Lambda kills it with a bare "Task timed out".
MARGIN_SECONDS = 30.0


def run(
    request: RunRequest,
    ecs: Any,
    *,
    budget: float,
    poll_seconds: float = POLL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Run the task and wait for it; the result of a clean exit, or TaskFailed."""
    start = clock()
    task_arn = started_task(ecs.run_task(**request.run_task_params()))
    log.info("started %s; %s", task_arn, request.logs_hint(task_arn))
    while True:
        described = ecs.describe_tasks(cluster=request.cluster, tasks=[task_arn])
        waited = clock() - start
        verdict = judge(request, task_arn, described, waited=waited, budget=budget)
        if isinstance(verdict, Succeeded):
            log.info("%s exited 0", task_arn)
            return verdict.result()
        if isinstance(verdict, Failed):
            raise TaskFailed(verdict.message)
        log.info("%s is %s after %.0f s", task_arn, verdict.status, waited)
        sleep(next_sleep(poll_seconds, waited, budget))


def handler(event: Any, context: Any) -> dict[str, Any]:
    request = RunRequest.from_event(event)
    budget = context.get_remaining_time_in_millis() / 1000 - MARGIN_SECONDS
    if budget <= 0:
        raise BadRequest(
            f"the function's timeout leaves no time to wait (keep more than {MARGIN_SECONDS:.0f} s)"
        )
    # POLL_SECONDS read here, not as a default argument, so a test can shorten it.
    return run(request, boto3.client("ecs"), budget=budget, poll_seconds=POLL_SECONDS)
