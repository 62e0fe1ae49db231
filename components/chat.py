"""Chat: the WebSocket service on ECS Fargate behind the shared ALB, DynamoDB history, and Redis pub/sub
(ElastiCache, TLS + AUTH) so a message sent on one task reaches members connected to any other."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import pulumi
import pulumi_aws as aws
import pulumi_random

from components.app_code import APP_CODE
from components.aws.alarms import Alarm, create_alarms
from components.aws.container_image import ContainerImage, ContainerImageArgs
from components.aws.dashboard import Graph, Metric, Panel
from components.aws.dynamo import table_args
from components.aws.fargate_service import FargateService
from components.aws.fargate_types import Attachment, FargateServiceArgs, SecretRef, TaskCount
from components.aws.iam import statement
from components.aws.kms import WRITE, DataKey, DataKeyArgs
from components.config.model import AuthConfig, CacheConfig, Scaling
from components.facts import CHAT
from components.platform.listener_priorities import LISTENER_PRIORITIES

REDIS_PORT = 6379
LISTENER_PRIORITY = LISTENER_PRIORITIES["chat"]
T = TypeVar("T")
# Each WebSocket upgrade is one ALB request; a task comfortably holds this many new sockets a minute.
UPGRADES_PER_TARGET = 500
# The Redis AUTH token: well inside ElastiCache's 16-128 characters.
AUTH_TOKEN_LENGTH = 64
# ElastiCache ModifyReplicationGroup AuthTokenUpdateStrategy: ROTATE adds the new token while the
# group keeps accepting the old one (SET, "allowed only after ROTATE", then drops the old one), so
# chat tasks started with the previous secret keep working until they are replaced.
AUTH_TOKEN_UPDATE_STRATEGY = "ROTATE"  # noqa: S105 - the name of a strategy, not a secret


@dataclass(frozen=True)
class ChatArgs:
    name_prefix: str
    cache: CacheConfig
    auth: AuthConfig
    scaling: Scaling
    cors_origins: Sequence[str]
    isolated_subnet_ids: Sequence[pulumi.Input[str]]
    attachment: Attachment
    data_protection: bool
    # A key of the component's own for its history table, image repository, Redis and AUTH token
    # secret (else AWS's keys).
    kms_encryption: bool


def table_name(name_prefix: str) -> str:
    """The history table's name (the local backend creates the same one)."""
    return f"{name_prefix}-chat-messages"


class Chat(pulumi.ComponentResource):
    def __init__(self, name: str, args: ChatArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("motion:chat:Chat", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix = f"{args.name_prefix}-chat"
        att = args.attachment
        key = DataKey.optional(
            args.kms_encryption,
            DataKeyArgs(
                name=name,
                alias=prefix,
                description=f"{prefix}: message history, image repository, Redis, Redis AUTH token",
                services=("dynamodb", "ecr", "elasticache", "secretsmanager"),
                protected=args.data_protection,
            ),
            self,
        )
        self.key = key
        key_arn = key.arn if key else None

        self.table = aws.dynamodb.Table(
            f"{name}-messages",
            **table_args(table_name(args.name_prefix), CHAT.table, args.data_protection, kms_key_arn=key_arn),
            opts=child,
        )
        self.image = ContainerImage(
            f"{name}-image",
            ContainerImageArgs(
                context=APP_CODE,
                repository_name=prefix,
                dockerfile="chat/Dockerfile",
                force_delete=not args.data_protection,
                kms_key_arn=key_arn,
            ),
            opts=child,
        )

        self.auth_token = aws.secretsmanager.Secret(
            f"{name}-redis-auth",
            name_prefix=f"{prefix}-redis-auth-",
            description=f"{prefix} Redis AUTH token",
            recovery_window_in_days=7 if args.data_protection else 0,
            kms_key_id=key_arn,
            opts=child,
        )
        # The token lives in the stack's state: a RandomPassword draws it once, on create, and returns
        # the same value on every later run whose inputs are unchanged (terraform-provider-random
        # resource_password.go: every input RequiresReplace, `result` UseStateForUnknown). The group
        # and the secret both take it from here, so a replacement of either is created with the token
        # the other holds. Characters: ElastiCache's AUTH rule (16-128 printable characters,
        # non-alphanumerics only from !&#$^<>-) is checked against these inputs in
        # tests/infra/test_chat_infra.py; alphanumerics alone keep the token shell- and URL-safe.
        # Rotate deliberately (README, "The Redis AUTH token"): `pulumi up --replace` this resource's
        # URN draws a new token, which the group applies with AUTH_TOKEN_UPDATE_STRATEGY.
        self.auth_token_value = pulumi_random.RandomPassword(
            f"{name}-redis-auth-token", length=AUTH_TOKEN_LENGTH, special=False, opts=child
        )
        token: pulumi.Output[str] = pulumi.Output.secret(self.auth_token_value.result)

        self.redis_security_group = aws.ec2.SecurityGroup(
            f"{name}-redis-sg",
            vpc_id=att.vpc_id,
            description=f"{prefix} Redis: chat tasks only",
            tags={"Name": f"{prefix}-redis"},
            opts=child,
        )
        subnets = aws.elasticache.SubnetGroup(
            f"{name}-redis-subnets",
            subnet_ids=list(args.isolated_subnet_ids),
            description=f"{prefix} isolated subnets",
            opts=child,
        )
        slow_log = aws.cloudwatch.LogGroup(
            f"{name}-redis-slow-log",
            name=f"/motion/{prefix}/redis-slow-log",
            retention_in_days=att.log_retention_days,
            # Under the stack's log key like every other group: ElastiCache hands the log to CloudWatch
            # Logs' vended-log delivery, and CloudWatch Logs encrypts it at ingestion with the group's
            # key, which the key's policy lets logs.<region> use for any log group of the account
            # (components/aws/kms.py, log_key_statement). The delivery needs nothing from the key:
            # "Logs sent to CloudWatch Logs" (CloudWatch Logs User Guide) asks only for the group's
            # resource policy.
            kms_key_id=att.log_kms_key_arn,
            opts=child,
        )
        failover = args.cache.replicas > 0
        # One primary plus the replicas, each a single-node member cluster of the group.
        members = 1 + args.cache.replicas
        self.redis = aws.elasticache.ReplicationGroup(
            f"{name}-redis",
            replication_group_id=f"{prefix}"[:40],
            description=f"{prefix} pub/sub fan-out",
            engine="redis",
            engine_version="7.1",
            node_type=args.cache.node_type,
            num_cache_clusters=members,
            automatic_failover_enabled=failover,
            multi_az_enabled=failover,
            port=REDIS_PORT,
            subnet_group_name=subnets.name,
            security_group_ids=[self.redis_security_group.id],
            at_rest_encryption_enabled=True,
            # Fixed at creation: a change replaces the group (README, "Customer managed keys").
            kms_key_id=key_arn,
            transit_encryption_enabled=True,
            auth_token=token,
            # How a changed token reaches a running group (terraform-provider-aws replication_group.go,
            # Update: ModifyReplicationGroup with AuthToken and this strategy, ApplyImmediately).
            auth_token_update_strategy=AUTH_TOKEN_UPDATE_STRATEGY,
            auto_minor_version_upgrade=True,
            snapshot_retention_limit=7 if args.data_protection else 0,
            log_delivery_configurations=[
                aws.elasticache.ReplicationGroupLogDeliveryConfigurationArgs(
                    destination=slow_log.name,
                    destination_type="cloudwatch-logs",
                    log_format="json",
                    log_type="slow-log",
                )
            ],
            # replication_group_id is fixed, so a replacement (the at-rest key, the port, the subnet
            # group) must delete the old group first. Redis carries only pub/sub traffic: chat tasks
            # reconnect and catch up from history (app_code/chat/README.md, "Delivery and ordering
            # guarantees").
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )

        # After the group: during a rotation (ROTATE strategy) the group accepts both tokens before
        # the secret moves to the new one, so a task starting meanwhile never reads a token the
        # group does not accept yet.
        aws.secretsmanager.SecretVersion(
            f"{name}-redis-auth-value",
            secret_id=self.auth_token.id,
            secret_string=token,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.redis]),
        )

        self.service = FargateService(
            f"{name}-service",
            FargateServiceArgs(
                name_prefix=args.name_prefix,
                service="chat",
                image=self.image.image_ref,
                repository_arn=self.image.repository_arn,
                container_user=self.image.user,
                port=CHAT.default_port,
                liveness_path=CHAT.liveness_path,
                readiness_path=CHAT.readiness_path,
                path_patterns=list(CHAT.alb_path_patterns),
                listener_priority=LISTENER_PRIORITY,
                scaling=TaskCount(args.scaling.desired, args.scaling.min, args.scaling.max),
                attachment=att,
                environment=chat_environment(
                    port=CHAT.default_port,
                    table=self.table.name,
                    region=att.region,
                    redis_host=self.redis.primary_endpoint_address,
                    redis_port=REDIS_PORT,
                    redis_tls=True,
                    auth_issuer=args.auth.issuer,
                    auth_jwks_url=args.auth.jwks_url,
                    auth_audience=args.auth.audience,
                    cors_origins=args.cors_origins,
                ),
                secrets={"REDIS_AUTH_TOKEN": SecretRef(self.auth_token.arn, key=key)},
                task_role_statements=[
                    statement(list(CHAT.table_actions), [self.table.arn], sid="ChatHistory"),
                    *([key.use_statement("dynamodb", WRITE, "HistoryKey")] if key else []),
                ],
                cpu=512,
                memory=1024,
                # Sockets get close code 1012 on SIGTERM and reconnect elsewhere; give that time to finish.
                deregistration_delay_seconds=CHAT.alb_deregistration_delay_seconds,
                stop_timeout_seconds=CHAT.shutdown_grace_seconds + 20,
                requests_per_target=UPGRADES_PER_TARGET,
            ),
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-redis-from-chat",
            security_group_id=self.redis_security_group.id,
            ip_protocol="tcp",
            from_port=REDIS_PORT,
            to_port=REDIS_PORT,
            referenced_security_group_id=self.service.security_group.id,
            description="from chat tasks",
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-chat-to-redis",
            security_group_id=self.service.security_group.id,
            ip_protocol="tcp",
            from_port=REDIS_PORT,
            to_port=REDIS_PORT,
            referenced_security_group_id=self.redis_security_group.id,
            description="to Redis",
            opts=child,
        )
        self._alarms(name, prefix, att, members)
        self.register_outputs(
            {"table": self.table.name, "redis_endpoint": self.redis.primary_endpoint_address}
        )

    def _alarms(self, name: str, prefix: str, att: Attachment, members: int) -> None:
        # ElastiCache publishes its host and engine metrics (DatabaseMemoryUsagePercentage, Evictions)
        # per cache node, under the member cluster's CacheClusterId; ReplicationGroupId is not a
        # dimension of these metrics, so each member cluster gets its own alarms (the documented
        # dimension sets and their sources: tests/infra/test_alarm_dimensions.py).
        redis = [
            (member, {"CacheClusterId": cluster_id})
            for member, cluster_id in member_cluster_ids(self.redis.replication_group_id, members)
        ]
        table = {"TableName": self.table.name}
        memory = [
            (
                member,
                Alarm(
                    f"redis-memory-{member}",
                    "AWS/ElastiCache",
                    "DatabaseMemoryUsagePercentage",
                    "Maximum",
                    80.0,
                    dims,
                ),
            )
            for member, dims in redis
        ]
        # Pub/sub needs no eviction; any eviction means memory pressure is already losing data.
        evictions = [
            (member, Alarm(f"redis-evictions-{member}", "AWS/ElastiCache", "Evictions", "Sum", 0.0, dims))
            for member, dims in redis
        ]
        throttles = [
            (
                "writes",
                Alarm("table-write-throttles", "AWS/DynamoDB", "WriteThrottleEvents", "Sum", 0.0, table),
            ),
            ("reads", Alarm("table-read-throttles", "AWS/DynamoDB", "ReadThrottleEvents", "Sum", 0.0, table)),
        ]
        alarms = create_alarms(
            self, name, prefix, [a for _, a in (*memory, *evictions, *throttles)], att.alarm_topic_arn
        )
        own = CHAT.metrics
        service = {own.dimension: CHAT.metrics_service}
        self.panel = Panel(
            "Chat: Redis, history, and the service's own metrics",
            [
                Graph.watching("Redis memory (%)", memory),
                Graph.watching("Redis evictions", evictions),
                Graph(
                    "Redis engine CPU (%) and connections",
                    [
                        *(
                            Metric(
                                "AWS/ElastiCache", "EngineCPUUtilization", "Maximum", dims, f"CPU {member}"
                            )
                            for member, dims in redis
                        ),
                        *(
                            Metric(
                                "AWS/ElastiCache", "CurrConnections", "Maximum", dims, f"connections {member}"
                            )
                            for member, dims in redis
                        ),
                    ],
                ),
                Graph.watching("History table throttles", throttles),
                # One document per task and minute: the per-minute sum of the gauge is every task's
                # connections together.
                Graph(
                    "Connections (all tasks)",
                    [Metric(own.namespace, "Connections", "Sum", service, "connections")],
                    period_seconds=60,
                ),
                Graph(
                    "Sends and deliveries",
                    [
                        Metric(own.namespace, metric, "Sum", service, metric)
                        for metric in own.names
                        if metric in ("SendsAccepted", "Deliveries")
                    ],
                    period_seconds=60,
                ),
                # A distribution: its percentiles, from every task's sampled values together.
                Graph(
                    "Fan-out latency (ms)",
                    [Metric(own.namespace, "FanoutLatency", stat, service, stat) for stat in ("p50", "p99")],
                    period_seconds=60,
                ),
                Graph(
                    "Closes and bus drops",
                    [
                        Metric(own.namespace, metric, "Sum", service, metric)
                        for metric in own.names
                        if metric not in ("Connections", "SendsAccepted", "Deliveries", "FanoutLatency")
                    ],
                    period_seconds=60,
                ),
            ],
            alarms,
        )


def chat_environment(
    *,
    port: int,
    table: T,
    region: str,
    redis_host: T,
    redis_port: int,
    redis_tls: bool,
    auth_issuer: str,
    auth_jwks_url: str,
    auth_audience: str,
    cors_origins: Sequence[str],
) -> dict[str, T | str]:
    """The chat service's environment (docs/service-settings.md), as the task definition sets it and
    the local backend (devstack/backend.py) sets it for its instances, pointed at local servers. The
    Redis AUTH token is not here: the task gets it as a secret, the local backend adds its own."""
    return {
        "PORT": str(port),
        "CHAT_TABLE": table,
        "AWS_REGION": region,
        "REDIS_HOST": redis_host,
        "REDIS_PORT": str(redis_port),
        "REDIS_TLS": "true" if redis_tls else "false",
        "AUTH_ISSUER": auth_issuer,
        "AUTH_JWKS_URL": auth_jwks_url,
        "AUTH_AUDIENCE": auth_audience,
        "CORS_ORIGINS": ",".join(cors_origins),
        "LOG_LEVEL": "INFO",
    }


def member_cluster_ids(
    replication_group_id: pulumi.Output[str], num_cache_clusters: int
) -> list[tuple[str, pulumi.Output[str]]]:
    """The member clusters ElastiCache creates for a cluster-mode-disabled group of
    `num_cache_clusters`, as (sequence suffix, CacheClusterId) pairs: the group's id (stored
    lowercase) with a sequential three-digit number appended, `<id>-001`, `<id>-002`, ...

    Sources: ElastiCache User Guide, "Creating a replication group using an existing cluster"
    (https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/Replication.CreatingReplGroup.ExistingCluster.html:
    "a sequential 3-digit number added to the end of the --replication-group-id. For example,
    sample-repl-group-001"); CreateReplicationGroup's ReplicationGroupId "is stored as a lowercase
    string"; terraform-provider-aws replication_group.go names the first member
    `fmt.Sprintf("%s-001", d.Id())` when it picks the snapshotting cluster.

    Why not the group's `member_clusters` output: the provider declares it a computed TypeSet
    (no order) that is unknown in the preview of a new group, and the number of alarms must be
    known when they are registered (no resources inside an `apply`). The count comes from the same
    fact the group is created with (`num_cache_clusters`); the id from the group's own output, so the
    alarms wait for it. A later change of `cacheReplicas` resizes the group in place
    (IncreaseReplicaCount / DecreaseReplicaCount), and AWS picks which member ids are added or
    removed; the documented naming covers a group created with this count, so after a resize compare
    the group's `member_clusters` with the alarms."""

    def member(n: int) -> tuple[str, pulumi.Output[str]]:
        suffix = f"{n:03d}"
        return suffix, replication_group_id.apply(lambda group_id: f"{group_id.lower()}-{suffix}")

    return [member(n) for n in range(1, num_cache_clusters + 1)]
