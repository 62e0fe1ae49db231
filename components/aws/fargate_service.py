"""One HTTP service on ECS Fargate behind the shared ALB: task definition, roles, target group, path rule,
service with circuit breaker, autoscaling and alarms. Every HTTP service builds on it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws.alarms import Alarm, create_alarms
from components.aws.alb_rules import NOT_FOUND_BODY, NOT_FOUND_CONTENT_TYPE, NOT_FOUND_STATUS, service_rules
from components.aws.container_definition import container_definition
from components.aws.dashboard import Graph, Metric, Panel
from components.aws.fargate_types import FargateServiceArgs, SecretRef
from components.aws.iam import assume_role_policy, policy_document, statement
from components.aws.kms import READ
from components.aws.service_autoscaling import service_autoscaling


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


class FargateService(pulumi.ComponentResource):
    security_group: aws.ec2.SecurityGroup
    task_role: aws.iam.Role
    panel: Panel

    def __init__(
        self, name: str, args: FargateServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("motion:platform:FargateService", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        att = args.attachment
        full_name = f"{args.name_prefix}-{args.service}"

        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"{att.log_group_prefix}/{full_name}",
            retention_in_days=att.log_retention_days,
            kms_key_id=att.log_kms_key_arn,
            opts=child,
        )
        # Where the task's logs go (the operators' saved queries read it).
        self.log_group_name = log_group.name
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

        container = pulumi.Output.json_dumps(
            [
                container_definition(
                    name=args.service,
                    image=args.image,
                    user=args.container_user,
                    port=args.port,
                    liveness_path=args.liveness_path,
                    environment=args.environment,
                    secrets=args.secrets,
                    stop_timeout_seconds=args.stop_timeout_seconds,
                    command=args.command,
                    log_group=log_group.name,
                    region=att.region,
                    stream_prefix=full_name,
                )
            ]
        )
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
                min_count=args.scaling.min,
                max_count=args.scaling.max,
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
        """Its alarms, and its panel of the dashboard built from them."""
        lb = {"LoadBalancer": args.attachment.alb_arn_suffix, "TargetGroup": self.target_group.arn_suffix}
        ecs = {"ClusterName": args.attachment.cluster_name, "ServiceName": self.service.name}
        target_5xx = Alarm(
            "target-5xx", "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "Sum", 10, lb, period_seconds=60
        )
        unhealthy = Alarm(
            "unhealthy",
            "AWS/ApplicationELB",
            "UnHealthyHostCount",
            "Maximum",
            0,
            lb,
            period_seconds=60,
            evaluation_periods=3,
        )
        cpu = Alarm(
            "cpu", "AWS/ECS", "CPUUtilization", "Average", 85, ecs, period_seconds=60, evaluation_periods=3
        )
        alarms = create_alarms(
            self, name, full_name, [target_5xx, unhealthy, cpu], args.attachment.alarm_topic_arn
        )

        def elb(metric: str, statistic: str, label: str) -> Metric:
            return Metric("AWS/ApplicationELB", metric, statistic, lb, label)

        graphs = [
            Graph.watching(
                "Requests and target errors",
                [("target 5xx", target_5xx)],
                elb("RequestCount", "Sum", "requests"),
                elb("HTTPCode_Target_4XX_Count", "Sum", "target 4xx"),
            ),
            Graph(
                "Target response time (s)",
                [elb("TargetResponseTime", "p50", "p50"), elb("TargetResponseTime", "p99", "p99")],
                period_seconds=60,
            ),
            Graph.watching(
                "Targets", [("unhealthy", unhealthy)], elb("HealthyHostCount", "Minimum", "healthy")
            ),
            Graph.watching(
                "CPU and memory (%)",
                [("CPU", cpu)],
                Metric("AWS/ECS", "MemoryUtilization", "Average", ecs, "memory"),
            ),
        ]
        if args.attachment.container_insights:
            # Task counts and deployments are Container Insights metrics (ECS/ContainerInsights); without
            # it the healthy targets above are the running tasks that serve.
            graphs.append(
                Graph(
                    "Tasks and deployments",
                    [
                        Metric("ECS/ContainerInsights", metric, "Maximum", ecs, label)
                        for metric, label in (
                            ("RunningTaskCount", "running"),
                            ("DesiredTaskCount", "desired"),
                            ("PendingTaskCount", "pending"),
                            ("DeploymentCount", "deployments"),
                        )
                    ],
                    period_seconds=60,
                )
            )
        self.panel = Panel(f"Service {full_name}", graphs, alarms)
