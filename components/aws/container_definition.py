"""The container definitions of the Fargate tasks (a service's, a one-off job's): pure functions of
their plain arguments, no resources, so they are tested as data (tests/infra/test_container_definition.py).
Each returns one entry of a task definition's `containerDefinitions`; the task definition sends
`pulumi.Output.json_dumps([...])` of them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pulumi

if TYPE_CHECKING:
    from components.aws.fargate_types import SecretRef


def container_definition(
    *,
    name: str,
    image: pulumi.Input[str],
    user: str,
    port: int,
    liveness_path: str,
    log_group: pulumi.Input[str],
    region: str,
    stream_prefix: str,
    environment: Mapping[str, pulumi.Input[str]] | None = None,
    secrets: Mapping[str, SecretRef] | None = None,
    stop_timeout_seconds: int = 30,
    command: Sequence[str] = (),
) -> dict[str, Any]:
    """A service task's one container: locked down (read-only root, no
    privileges, every capability dropped), health-checked on `liveness_path` at `port`, logging to
    `log_group` in `region` with `stream_prefix`.

    - `name`: the container's name (the load balancer's target names it).
    - `image`: the image reference; `user`: the user it runs as (its Dockerfile's USER).
    - `environment`, `secrets`: variables, and secrets ECS injects as variables (none by default).
    - `stop_timeout_seconds`: how long ECS waits after SIGTERM before SIGKILL.
    - `command`: overrides the image's command when given.
    """
    environment = environment or {}
    secrets = secrets or {}
    health_probe = (
        "import urllib.request,sys;"
        f"sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{port}{liveness_path}',"
        "timeout=3).status==200 else 1)"
    )
    definition: dict[str, Any] = {
        "name": name,
        "image": image,
        "essential": True,
        "user": user,
        "readonlyRootFilesystem": True,
        "privileged": False,
        "portMappings": [{"containerPort": port, "protocol": "tcp"}],
        "environment": [{"name": k, "value": v} for k, v in sorted(environment.items())],
        "secrets": [{"name": k, "valueFrom": ref.value_from()} for k, ref in sorted(secrets.items())],
        # The root filesystem is read-only; /tmp is the task's own scratch volume.
        "mountPoints": [{"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False}],  # noqa: S108
        "linuxParameters": {"initProcessEnabled": True, "capabilities": {"drop": ["ALL"]}},
        "stopTimeout": stop_timeout_seconds,
        "healthCheck": {
            "command": ["CMD", "python", "-c", health_probe],
            "interval": 15,
            "timeout": 5,
            "retries": 3,
            "startPeriod": 20,
        },
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": log_group,
                "awslogs-region": region,
                "awslogs-stream-prefix": stream_prefix,
                "mode": "non-blocking",
                "max-buffer-size": "4m",
            },
        },
    }
    if command:
        definition["command"] = list(command)
    return definition


def job_container_definition(
    *,
    name: str,
    image: pulumi.Input[str],
    user: str,
    command: Sequence[str],
    environment: Mapping[str, pulumi.Input[str]],
    secrets: Mapping[str, SecretRef],
    log_group: pulumi.Input[str],
    region: str,
    stream_prefix: str,
) -> dict[str, Any]:
    """A one-off task's one container (a job that runs to an exit, like the schema migration): locked
    down as the services' are, but no port, no health check, and logs that are never dropped."""
    definition: dict[str, Any] = {
        "name": name,
        "image": image,
        "essential": True,
        "user": user,
        "readonlyRootFilesystem": True,
        "privileged": False,
        "command": list(command),
        "environment": [{"name": k, "value": v} for k, v in sorted(environment.items())],
        "secrets": [{"name": k, "valueFrom": ref.value_from()} for k, ref in sorted(secrets.items())],
        "mountPoints": [{"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False}],  # noqa: S108
        "linuxParameters": {"initProcessEnabled": True, "capabilities": {"drop": ["ALL"]}},
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": log_group,
                "awslogs-region": region,
                "awslogs-stream-prefix": stream_prefix,
                # The job's last lines say why it failed; blocking, so none is dropped on the way out.
                "mode": "blocking",
            },
        },
    }
    return definition
