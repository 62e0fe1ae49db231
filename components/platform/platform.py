"""ECS cluster and the one shared Application Load Balancer that every HTTP service attaches to."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.aws.alb_rules import NOT_FOUND_BODY, NOT_FOUND_CONTENT_TYPE, NOT_FOUND_STATUS
from components.aws.buckets import PrivateBucket, PrivateBucketArgs
from components.aws.dashboard import Graph, Metric, Panel
from components.aws.kms import alarm_key_policy

# TLS 1.3 with 1.2 as the floor: AWS's recommended policy for new HTTPS listeners.
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
# Longer than every service's keep-alive/ping interval, so the ALB never cuts an idle WebSocket first.
ALB_IDLE_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class PlatformArgs:
    name_prefix: str
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    public_subnet_ids: list[pulumi.Output[str]]
    # The listener's certificate: an ARN from config, or the validated certificate's (`ApiCertificate.arn`,
    # so the HTTPS listener waits for the validation); None serves plain HTTP.
    certificate_arn: pulumi.Input[str] | None
    domain: str
    container_insights: bool
    deletion_protection: bool
    access_logs: bool
    log_retention_days: int
    alarm_email: str
    versioned_logs: bool


class Platform(pulumi.ComponentResource):
    """Exposes what a service needs to attach: `listener_arn`, `alb_security_group_id`, `cluster_arn`."""

    def __init__(self, name: str, args: PlatformArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("motion:platform:Platform", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix = args.name_prefix

        self.cluster = aws.ecs.Cluster(
            f"{name}-cluster",
            name=f"{prefix}",
            settings=[
                aws.ecs.ClusterSettingArgs(
                    name="containerInsights", value="enhanced" if args.container_insights else "disabled"
                )
            ],
            opts=child,
        )
        aws.ecs.ClusterCapacityProviders(
            f"{name}-capacity",
            cluster_name=self.cluster.name,
            capacity_providers=["FARGATE", "FARGATE_SPOT"],
            default_capacity_provider_strategies=[
                aws.ecs.ClusterCapacityProvidersDefaultCapacityProviderStrategyArgs(
                    capacity_provider="FARGATE", weight=1, base=1
                )
            ],
            opts=child,
        )

        # Every alarm of every service notifies this topic. It is encrypted with a key of ours because
        # CloudWatch cannot publish to a topic under the AWS-managed SNS key.
        alarm_key = aws.kms.Key(
            f"{name}-alarms-key",
            description=f"{prefix} alarm notifications",
            enable_key_rotation=True,
            deletion_window_in_days=30 if args.deletion_protection else 7,
            policy=alarm_key_policy(self),
            opts=child,
        )
        self.alarm_topic = aws.sns.Topic(
            f"{name}-alarms", name=f"{prefix}-alarms", kms_master_key_id=alarm_key.arn, opts=child
        )
        aws.sns.TopicSubscription(
            f"{name}-alarms-email",
            topic=self.alarm_topic.arn,
            protocol="email",
            endpoint=args.alarm_email,
            opts=child,
        )

        self.alb_security_group = aws.ec2.SecurityGroup(
            f"{name}-alb-sg",
            vpc_id=args.vpc_id,
            description="Motion ALB: HTTP(S) from the internet",
            tags={"Name": f"{prefix}-alb"},
            opts=child,
        )
        for port in (80, 443):
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-alb-in-{port}",
                security_group_id=self.alb_security_group.id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                cidr_ipv4="0.0.0.0/0",
                description=f"public {port}",
                opts=child,
            )
        # The ALB only ever talks to targets inside the VPC.
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-alb-out-vpc",
            security_group_id=self.alb_security_group.id,
            ip_protocol="tcp",
            from_port=1024,
            to_port=65535,
            cidr_ipv4=args.vpc_cidr,
            description="to targets in the VPC",
            opts=child,
        )

        access_logs = None
        depends: list[pulumi.Resource] = []
        if args.access_logs:
            logs_bucket = self._access_log_bucket(name, prefix, args.log_retention_days, args.versioned_logs)
            access_logs = aws.lb.LoadBalancerAccessLogsArgs(
                bucket=logs_bucket.name, prefix="alb", enabled=True
            )
            depends.append(logs_bucket.policy)

        self.alb = aws.lb.LoadBalancer(
            f"{name}-alb",
            name=f"{prefix}"[:32],
            load_balancer_type="application",
            internal=False,
            security_groups=[self.alb_security_group.id],
            subnets=args.public_subnet_ids,
            drop_invalid_header_fields=True,
            enable_deletion_protection=args.deletion_protection,
            idle_timeout=ALB_IDLE_TIMEOUT_SECONDS,
            access_logs=access_logs,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends),
        )
        not_found = aws.lb.ListenerDefaultActionArgs(
            type="fixed-response",
            fixed_response=aws.lb.ListenerDefaultActionFixedResponseArgs(
                content_type=NOT_FOUND_CONTENT_TYPE,
                message_body=NOT_FOUND_BODY,
                status_code=str(NOT_FOUND_STATUS),
            ),
        )
        if args.certificate_arn is not None:
            self.listener = aws.lb.Listener(
                f"{name}-https",
                load_balancer_arn=self.alb.arn,
                port=443,
                protocol="HTTPS",
                ssl_policy=TLS_POLICY,
                certificate_arn=args.certificate_arn,
                default_actions=[not_found],
                opts=child,
            )
            aws.lb.Listener(
                f"{name}-http-redirect",
                load_balancer_arn=self.alb.arn,
                port=80,
                protocol="HTTP",
                default_actions=[
                    aws.lb.ListenerDefaultActionArgs(
                        type="redirect",
                        redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                            protocol="HTTPS", port="443", status_code="HTTP_301"
                        ),
                    )
                ],
                # A stack that served plain HTTP (dev before its zone) had its port-80 listener as
                # `<name>-http`: the alias makes the engine update that listener in place, where a
                # new one beside it would be refused (one listener per port and load balancer).
                opts=pulumi.ResourceOptions(parent=self, aliases=[pulumi.Alias(name=f"{name}-http")]),
            )
        else:
            self.listener = aws.lb.Listener(
                f"{name}-http",
                load_balancer_arn=self.alb.arn,
                port=80,
                protocol="HTTP",
                default_actions=[not_found],
                opts=child,
            )

        host: pulumi.Input[str] = args.domain or self.alb.dns_name
        tls = args.certificate_arn is not None
        self.base_url = pulumi.Output.concat("https" if tls else "http", "://", host)
        self.ws_base_url = pulumi.Output.concat("wss" if tls else "ws", "://", host)
        self.listener_arn = self.listener.arn
        self.alb_security_group_id = self.alb_security_group.id
        self.cluster_arn = self.cluster.arn
        self.cluster_name = self.cluster.name
        self.alb_arn_suffix = self.alb.arn_suffix
        self.alarm_topic_arn = self.alarm_topic.arn
        self.panel = _panel(self.alb.arn_suffix)
        self.register_outputs(
            {
                "cluster_arn": self.cluster_arn,
                "alb_dns_name": self.alb.dns_name,
                "listener_arn": self.listener_arn,
                "base_url": self.base_url,
            }
        )

    def _access_log_bucket(
        self, name: str, prefix: str, retention_days: int, versioned: bool
    ) -> PrivateBucket:
        # ALB log delivery writes as the region's ELB account and supports SSE-S3 only, not SSE-KMS.
        elb_account = aws.elb.get_service_account_output(opts=pulumi.InvokeOptions(parent=self))
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOptions(parent=self)).account_id
        bucket = PrivateBucket(
            f"{name}-alb-logs",
            PrivateBucketArgs(
                bucket_prefix=f"{prefix}-alb-logs-",
                versioning=versioned,
                force_destroy=not versioned,
                lifecycle_rules=(
                    aws.s3.BucketLifecycleConfigurationRuleArgs(
                        id="expire-access-logs",
                        status="Enabled",
                        filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix="alb/"),
                        expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=retention_days),
                    ),
                ),
                extra_statements=lambda bucket_arn: [
                    {
                        "Sid": "AllowAlbLogDelivery",
                        "Effect": "Allow",
                        "Principal": {"AWS": elb_account.arn},
                        "Action": "s3:PutObject",
                        "Resource": pulumi.Output.concat(bucket_arn, "/alb/AWSLogs/", account, "/*"),
                    }
                ],
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return bucket


def _panel(alb_arn_suffix: pulumi.Input[str]) -> Panel:
    """The load balancer as a whole: what it answered itself (its 4xx and 5xx: no rule matched, no
    healthy target) beside what it passed on. Each service's panel has its own target group's figures."""
    lb = {"LoadBalancer": alb_arn_suffix}

    def elb(metric: str, statistic: str, label: str) -> Metric:
        return Metric("AWS/ApplicationELB", metric, statistic, lb, label)

    return Panel(
        "Load balancer",
        [
            Graph(
                "Requests",
                [elb("RequestCount", "Sum", "requests"), elb("ActiveConnectionCount", "Sum", "connections")],
                period_seconds=60,
            ),
            Graph(
                "Errors",
                [
                    elb("HTTPCode_ELB_4XX_Count", "Sum", "load balancer 4xx"),
                    elb("HTTPCode_ELB_5XX_Count", "Sum", "load balancer 5xx"),
                    elb("HTTPCode_Target_4XX_Count", "Sum", "targets 4xx"),
                    elb("HTTPCode_Target_5XX_Count", "Sum", "targets 5xx"),
                ],
                period_seconds=60,
            ),
            Graph(
                "Target response time (s)",
                [elb("TargetResponseTime", "p50", "p50"), elb("TargetResponseTime", "p99", "p99")],
                period_seconds=60,
            ),
        ],
    )
