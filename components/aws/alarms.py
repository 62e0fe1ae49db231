"""CloudWatch alarms as data: each component lists what a pager should hear about, one helper makes them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class Alarm:
    suffix: str
    namespace: str
    metric: str
    statistic: str
    threshold: float
    dimensions: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    comparison: str = "GreaterThanThreshold"
    period_seconds: int = 300
    evaluation_periods: int = 1
    # A metric that stops reporting is usually healthy (no traffic), except where noted per alarm.
    missing_data: str = "notBreaching"


def create_alarms(
    parent: pulumi.Resource,
    name: str,
    alarm_prefix: str,
    alarms: Iterable[Alarm],
    topic_arn: pulumi.Input[str],
) -> list[aws.cloudwatch.MetricAlarm]:
    """One alarm each, named `<alarm_prefix>-<suffix>`, notifying the topic when it fires and clears."""
    return [
        aws.cloudwatch.MetricAlarm(
            f"{name}-{alarm.suffix}",
            name=f"{alarm_prefix}-{alarm.suffix}",
            namespace=alarm.namespace,
            metric_name=alarm.metric,
            statistic=alarm.statistic,
            dimensions=dict(alarm.dimensions),
            period=alarm.period_seconds,
            evaluation_periods=alarm.evaluation_periods,
            threshold=alarm.threshold,
            comparison_operator=alarm.comparison,
            treat_missing_data=alarm.missing_data,
            alarm_actions=[topic_arn],
            ok_actions=[topic_arn],
            opts=pulumi.ResourceOptions(parent=parent),
        )
        for alarm in alarms
    ]
