"""Target-tracking autoscaling of an ECS service's task count, on CPU and on ALB requests per task."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws


def service_autoscaling(
    parent: pulumi.Resource,
    name: str,
    *,
    min_count: int,
    max_count: int,
    cluster_name: pulumi.Input[str],
    service_name: pulumi.Input[str],
    alb_arn_suffix: pulumi.Input[str],
    target_group_arn_suffix: pulumi.Input[str],
    requests_per_target: int,
) -> None:
    """`<name>-scaling-target` between `min_count` and `max_count` tasks, and one `<name>-scale-<metric>`
    policy per metric (AWS scales out when any policy asks, and in only when all do)."""
    child = pulumi.ResourceOptions(parent=parent)
    target = aws.appautoscaling.Target(
        f"{name}-scaling-target",
        service_namespace="ecs",
        scalable_dimension="ecs:service:DesiredCount",
        resource_id=pulumi.Output.concat("service/", cluster_name, "/", service_name),
        min_capacity=min_count,
        max_capacity=max_count,
        opts=child,
    )
    metrics = {
        "cpu": aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs(
            predefined_metric_type="ECSServiceAverageCPUUtilization"
        ),
        "requests": aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs(
            predefined_metric_type="ALBRequestCountPerTarget",
            resource_label=pulumi.Output.concat(alb_arn_suffix, "/", target_group_arn_suffix),
        ),
    }
    targets = {"cpu": 60.0, "requests": float(requests_per_target)}
    for metric, spec in metrics.items():
        aws.appautoscaling.Policy(
            f"{name}-scale-{metric}",
            policy_type="TargetTrackingScaling",
            service_namespace=target.service_namespace,
            scalable_dimension=target.scalable_dimension,
            resource_id=target.resource_id,
            target_tracking_scaling_policy_configuration=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs(
                target_value=targets[metric],
                predefined_metric_specification=spec,
                scale_in_cooldown=120,
                scale_out_cooldown=30,
            ),
            opts=child,
        )
