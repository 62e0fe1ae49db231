"""The argument types of the Fargate blocks, below every class that takes them: `fargate_service`
(service -> task definition) and `container_definition` import from here, never the other way round.

Plain, typed inputs, with the defaults a service gets unless it asks otherwise."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

from components.aws.kms import DataKey


@dataclass(frozen=True)
class SecretRef:
    """A Secrets Manager secret (or one JSON key of it) that ECS injects as an environment variable."""

    secret_arn: pulumi.Input[str]
    json_key: str | None = None
    # The component key the secret is encrypted with, if not the AWS managed one.
    key: DataKey | None = None

    def value_from(self) -> pulumi.Output[str]:
        suffix = f":{self.json_key}::" if self.json_key else ""
        return pulumi.Output.concat(self.secret_arn, suffix)


@dataclass(frozen=True, slots=True)
class TaskCount:
    """How many tasks a service runs: `desired` at creation, autoscaled between `min` and `max` when
    they differ (then autoscaling owns the running count)."""

    desired: int
    min: int
    max: int


@dataclass(frozen=True)
class Attachment:
    """Where the service plugs into the shared platform and network."""

    cluster_arn: pulumi.Input[str]
    cluster_name: pulumi.Input[str]
    listener_arn: pulumi.Input[str]
    alb_arn_suffix: pulumi.Input[str]
    alb_security_group_id: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    assign_public_ip: bool
    alarm_topic_arn: pulumi.Input[str]
    log_retention_days: int
    region: str
    # Where the service's log group goes: `<log_group_prefix>/<name_prefix>-<service>`.
    log_group_prefix: str
    # The stack's key for log groups (None: CloudWatch Logs' own encryption).
    log_kms_key_arn: pulumi.Input[str] | None
    # What must exist before a task in `subnet_ids` can reach AWS's APIs (routes to the internet or
    # NAT gateway); a service retries failed starts, a one-off task does not.
    egress: Sequence[pulumi.Resource] = ()
    # Whether the cluster publishes Container Insights (task counts and deployments per service).
    container_insights: bool = False


@dataclass(frozen=True)
class FargateServiceArgs:
    name_prefix: str
    service: str
    image: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    # The user the image runs as (ContainerImage.user, from its Dockerfile's USER).
    container_user: str
    port: int
    # "Restart me": what the container health check asks (ECS replaces a task whose essential
    # container is unhealthy). It must not depend on anything a restart cannot fix.
    liveness_path: str
    # "Send me traffic": what the target group's health check asks, so the load balancer routes only
    # to tasks whose dependencies answer (ECS also replaces a task the load balancer finds unhealthy;
    # when every target is unhealthy the load balancer routes to all of them: "If all targets in a
    # target group are unhealthy, the load balancer routes requests to all of them", ELB, "Health
    # checks for Application Load Balancer target groups").
    readiness_path: str
    path_patterns: Sequence[str]
    listener_priority: int
    scaling: TaskCount
    attachment: Attachment
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    secrets: Mapping[str, SecretRef] = field(default_factory=dict)
    task_role_statements: Sequence[dict[str, Any]] = ()
    cpu: int = 256
    memory: int = 512
    deregistration_delay_seconds: int = 30
    stop_timeout_seconds: int = 30
    requests_per_target: int = 1000
    command: Sequence[str] = ()
    # Resources the service's deployments wait for (the schema migration its new code needs).
    deploy_after: Sequence[pulumi.Resource] = ()
