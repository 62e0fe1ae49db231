"""The container definitions of the Fargate tasks (a service's, a one-off job's): pure functions of
their arguments, no resources."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pulumi

if TYPE_CHECKING:
    from components.aws.fargate_service import FargateServiceArgs, SecretRef


def container_definition(
    args: FargateServiceArgs, log_group: pulumi.Output[str], full_name: str
) -> pulumi.Output[str]:
    """The task's one container, as the JSON ECS expects: locked down, health-checked, logging to
    `log_group` with `full_name` as the stream prefix."""
    health_probe = (
        "import urllib.request,sys;"
        f"sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{args.port}{args.liveness_path}',"
        "timeout=3).status==200 else 1)"
    )
    definition: dict[str, Any] = {
        "name": args.service,
        "image": args.image,
        "essential": True,
        "user": args.container_user,
        "readonlyRootFilesystem": True,
        "privileged": False,
        "portMappings": [{"containerPort": args.port, "protocol": "tcp"}],
        "environment": [{"name": k, "value": v} for k, v in sorted(args.environment.items())],
        "secrets": [{"name": k, "valueFrom": ref.value_from()} for k, ref in sorted(args.secrets.items())],
        # The root filesystem is read-only; /tmp is the task's own scratch volume.
        "mountPoints": [{"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False}],  # noqa: S108
        "linuxParameters": {"initProcessEnabled": True, "capabilities": {"drop": ["ALL"]}},
        "stopTimeout": args.stop_timeout_seconds,
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
                "awslogs-region": args.attachment.region,
                "awslogs-stream-prefix": full_name,
                "mode": "non-blocking",
                "max-buffer-size": "4m",
            },
        },
    }
    if args.command:
        definition["command"] = list(args.command)
    return pulumi.Output.json_dumps([definition])


def job_container_definition(
    *,
    name: str,
    image: pulumi.Input[str],
    user: str,
    command: Sequence[str],
    environment: Mapping[str, pulumi.Input[str]],
    secrets: Mapping[str, SecretRef],
    log_group: pulumi.Output[str],
    region: str,
    stream_prefix: str,
) -> pulumi.Output[str]:
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
    return pulumi.Output.json_dumps([definition])
