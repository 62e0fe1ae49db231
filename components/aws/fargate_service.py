"""One HTTP service on ECS Fargate behind the shared ALB: task definition, roles, target group, path rule,
service with circuit breaker, autoscaling and alarms. The files and chat components build on it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws.alarms import Alarm, create_alarms
from components.aws.alb_rules import NOT_FOUND_BODY, NOT_FOUND_CONTENT_TYPE, NOT_FOUND_STATUS, service_rules
from components.aws.container_definition import container_definition
from components.aws.iam import assume_role_policy, policy_document, statement
from components.aws.kms import READ, DataKey
from components.aws.service_autoscaling import service_autoscaling
from components.config.model import Scaling


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


def execution_statements(
    repository_arn: pulumi.Input[str], log_group: aws.cloudwatch.LogGroup, secrets: Mapping[str, SecretRef]
) -> list[dict[str, Any]]:
    """What ECS needs to start a task: pull its image, write its logs, inject its secrets (and no more)."""
    found = [
        # ECR offers no narrower resource for the registry token.
        statement(["ecr:GetAuthorizationToken"], ["*"], sid="RegistryToken"),
        statement(
            ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            [repository_arn],
            sid="PullImage",
        ),
        statement(
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [pulumi.Output.concat(log_group.arn, ":*")],
            sid="WriteLogs",
        ),
    ]
    # The same secret may back several variables (e.g. two JSON keys); grant it once. Secrets Manager
    # secrets encrypted with the AWS managed key need no kms:Decrypt, one under a customer managed key
    # does (ECS Developer Guide, "Required IAM permissions for Amazon ECS secrets").
    secret_arns = list(dict.fromkeys(ref.secret_arn for ref in secrets.values()))
    if secret_arns:
        found.append(statement(["secretsmanager:GetSecretValue"], secret_arns, sid="InjectSecrets"))
    keys = list({id(ref.key): ref.key for ref in secrets.values() if ref.key is not None}.values())
    found.extend(
        key.use_statement("secretsmanager", READ, f"DecryptSecrets{i}" if i else "DecryptSecrets")
        for i, key in enumerate(keys)
    )
    return found


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
    # The stack's key for log groups (None: CloudWatch Logs' own encryption).
    log_kms_key_arn: pulumi.Input[str] | None
    # What must exist before a task in `subnet_ids` can reach AWS's APIs (routes to the internet or
    # NAT gateway); a service retries failed starts, a one-off task does not.
    egress: Sequence[pulumi.Resource] = ()


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
    scaling: Scaling
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


class FargateService(pulumi.ComponentResource):
    security_group: aws.ec2.SecurityGroup
    task_role: aws.iam.Role

    def __init__(
        self, name: str, args: FargateServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("motion:platform:FargateService", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        att = args.attachment
        full_name = f"{args.name_prefix}-{args.service}"

        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"/motion/{full_name}",
            retention_in_days=att.log_retention_days,
            kms_key_id=att.log_kms_key_arn,
            opts=child,
        )
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOptions(parent=self)).account_id
        self.execution_role = aws.iam.Role(
            f"{name}-execution",
            assume_role_policy=assume_role_policy("ecs-tasks.amazonaws.com", account),
            opts=child,
        )
        execution_policy = aws.iam.RolePolicy(
            f"{name}-execution-policy",
            role=self.execution_role.id,
            policy=policy_document(*execution_statements(args.repository_arn, log_group, args.secrets)),
            opts=child,
        )

        self.task_role = aws.iam.Role(
            f"{name}-task",
            assume_role_policy=assume_role_policy("ecs-tasks.amazonaws.com", account),
            opts=child,
        )
        task_policy = None
        if args.task_role_statements:
            task_policy = aws.iam.RolePolicy(
                f"{name}-task-policy",
                role=self.task_role.id,
                policy=policy_document(*args.task_role_statements),
                opts=child,
            )

        container = container_definition(args, log_group.name, full_name)
        task_definition = aws.ecs.TaskDefinition(
            f"{name}-task-definition",
            family=full_name,
            cpu=str(args.cpu),
            memory=str(args.memory),
            network_mode="awsvpc",
            requires_compatibilities=["FARGATE"],
            runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
                cpu_architecture="ARM64", operating_system_family="LINUX"
            ),
            execution_role_arn=self.execution_role.arn,
            task_role_arn=self.task_role.arn,
            container_definitions=container,
            volumes=[aws.ecs.TaskDefinitionVolumeArgs(name="tmp")],
            opts=child,
        )

        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=att.vpc_id,
            description=f"{full_name} tasks: from the ALB only",
            tags={"Name": full_name},
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-from-alb",
            security_group_id=self.security_group.id,
            ip_protocol="tcp",
            from_port=args.port,
            to_port=args.port,
            referenced_security_group_id=att.alb_security_group_id,
            description="from the load balancer",
            opts=child,
        )
        # AWS APIs (Secrets Manager, ECR, logs) and the identity provider's JWKS are HTTPS endpoints.
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-to-https",
            security_group_id=self.security_group.id,
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            cidr_ipv4="0.0.0.0/0",
            description="HTTPS to AWS APIs and the JWKS",
            opts=child,
        )

        self.target_group = aws.lb.TargetGroup(
            f"{name}-tg",
            name=full_name[:32],
            port=args.port,
            protocol="HTTP",
            target_type="ip",
            vpc_id=att.vpc_id,
            deregistration_delay=args.deregistration_delay_seconds,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                path=args.readiness_path,
                matcher="200",
                interval=15,
                timeout=5,
                healthy_threshold=2,
                unhealthy_threshold=3,
            ),
            opts=child,
        )
        # The service's paths, and before them (when they would cover it) a 404 for its health check
        # path: the health checks reach the tasks directly, the public must not (components/aws/alb_rules.py).
        health_paths = (args.liveness_path, args.readiness_path)
        for rule in service_rules(args.listener_priority, args.path_patterns, health_paths):
            if rule.forward:
                action = aws.lb.ListenerRuleActionArgs(type="forward", target_group_arn=self.target_group.arn)
            else:
                action = aws.lb.ListenerRuleActionArgs(
                    type="fixed-response",
                    fixed_response=aws.lb.ListenerRuleActionFixedResponseArgs(
                        content_type=NOT_FOUND_CONTENT_TYPE,
                        message_body=NOT_FOUND_BODY,
                        status_code=str(NOT_FOUND_STATUS),
                    ),
                )
            aws.lb.ListenerRule(
                f"{name}-rule" if rule.forward else f"{name}-health-not-public",
                listener_arn=att.listener_arn,
                priority=rule.priority,
                conditions=[
                    aws.lb.ListenerRuleConditionArgs(
                        path_pattern=aws.lb.ListenerRuleConditionPathPatternArgs(values=list(rule.patterns))
                    )
                ],
                actions=[action],
                opts=child,
            )
        autoscaled = args.scaling.max > args.scaling.min
        self.service = aws.ecs.Service(
            f"{name}-service",
            name=full_name,
            cluster=att.cluster_arn,
            task_definition=task_definition.arn,
            desired_count=args.scaling.desired,
            launch_type="FARGATE",
            platform_version="LATEST",
            deployment_minimum_healthy_percent=100,
            deployment_maximum_percent=200,
            deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(
                enable=True, rollback=True
            ),
            availability_zone_rebalancing="ENABLED",
            health_check_grace_period_seconds=30,
            enable_ecs_managed_tags=True,
            propagate_tags="SERVICE",
            network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
                subnets=list(att.subnet_ids),
                security_groups=[self.security_group.id],
                assign_public_ip=att.assign_public_ip,
            ),
            load_balancers=[
                aws.ecs.ServiceLoadBalancerArgs(
                    target_group_arn=self.target_group.arn,
                    container_name=args.service,
                    container_port=args.port,
                )
            ],
            # Autoscaling owns the running count once the service exists. New tasks start only once
            # both roles' permissions are in place: the execution role's to pull the image, write logs
            # and inject secrets at task start (ECS stops a task that cannot), the task role's because
            # new code may need new actions. Inline policies are separate resources, so nothing else
            # orders them before the service.
            opts=pulumi.ResourceOptions(
                parent=self,
                ignore_changes=["desiredCount"] if autoscaled else None,
                depends_on=[
                    execution_policy,
                    *([task_policy] if task_policy is not None else []),
                    *args.deploy_after,
                ],
            ),
        )
        if autoscaled:
            service_autoscaling(
                self,
                name,
                scaling=args.scaling,
                cluster_name=att.cluster_name,
                service_name=self.service.name,
                alb_arn_suffix=att.alb_arn_suffix,
                target_group_arn_suffix=self.target_group.arn_suffix,
                requests_per_target=args.requests_per_target,
            )
        self._alarms(name, args, full_name)
        self.register_outputs(
            {
                "service_name": self.service.name,
                "security_group_id": self.security_group.id,
                "target_group_arn": self.target_group.arn,
            }
        )

    def _alarms(self, name: str, args: FargateServiceArgs, full_name: str) -> None:
        lb = {"LoadBalancer": args.attachment.alb_arn_suffix, "TargetGroup": self.target_group.arn_suffix}
        ecs = {"ClusterName": args.attachment.cluster_name, "ServiceName": self.service.name}
        create_alarms(
            self,
            name,
            full_name,
            [
                Alarm(
                    "target-5xx",
                    "AWS/ApplicationELB",
                    "HTTPCode_Target_5XX_Count",
                    "Sum",
                    10,
                    lb,
                    period_seconds=60,
                ),
                Alarm(
                    "unhealthy",
                    "AWS/ApplicationELB",
                    "UnHealthyHostCount",
                    "Maximum",
                    0,
                    lb,
                    period_seconds=60,
                    evaluation_periods=3,
                ),
                Alarm(
                    "cpu",
                    "AWS/ECS",
                    "CPUUtilization",
                    "Average",
                    85,
                    ecs,
                    period_seconds=60,
                    evaluation_periods=3,
                ),
            ],
            args.attachment.alarm_topic_arn,
        )
