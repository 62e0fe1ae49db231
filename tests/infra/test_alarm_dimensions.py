"""Every CloudWatch alarm of both stacks watches a metric AWS publishes: its namespace, metric name and
set of dimension names must be one the service documents. CloudWatch accepts an alarm on any
namespace/metric/dimensions (a metric need not exist yet), and so do the mocks; an alarm whose
dimensions match nothing the service publishes sits in INSUFFICIENT_DATA (here: notBreaching) forever.

The table lists, per namespace and metric, each documented dimension set (the names only; values are
the program's). A metric or dimension the program starts using must be looked up and added here with
its source.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from components.facts import CHAT, FILES, MAILER
from tests.infra.harness import RecordedResource, StackRun

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"

DimensionSets = frozenset[frozenset[str]]


def _sets(*sets: Iterable[str]) -> DimensionSets:
    return frozenset(frozenset(s) for s in sets)


# AWS/ElastiCache: metrics are "measured and published for each cache node"
# (https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/CacheMetrics.html), "calculated at the cache
# node level" (https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/CacheMetrics.Redis.html), with the
# dimensions CacheClusterId and CacheNodeId (awsdocs/amazon-elasticache-docs
# doc_source/CacheMetrics.DimensionsAndSets.md, "Dimensions for ElastiCache Metrics"); cluster and node
# level sets: https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/CloudWatchMetrics.html ("Monitoring
# CloudWatch Cluster and Node Metrics"); aws-cdk-lib's ElastiCacheMetrics, generated from CloudWatch's
# metric metadata, lists {CacheClusterId} and {CacheClusterId, CacheNodeId} for both metrics below.
# ReplicationGroupId is not among them.
_ELASTICACHE_NODE = _sets({"CacheClusterId"}, {"CacheClusterId", "CacheNodeId"})

# AWS/SQS: "The only dimension that Amazon SQS sends to CloudWatch is QueueName"
# (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-available-cloudwatch-metrics.html).
_SQS_QUEUE = _sets({"QueueName"})

# AWS/Lambda: FunctionName, Resource (version or alias) and ExecutedVersion (alias invocations), and
# the account-wide aggregate without dimensions
# (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html, "Using CloudWatch metrics
# with Lambda"; aws-cdk-lib LambdaMetrics lists these four sets for Errors).
_LAMBDA_FUNCTION = _sets(
    {"FunctionName"}, {"FunctionName", "Resource"}, {"FunctionName", "Resource", "ExecutedVersion"}, ()
)

# AWS/DynamoDB: ReadThrottleEvents and WriteThrottleEvents, "Dimensions: TableName,
# GlobalSecondaryIndexName"; TableName alone counts the table without its indexes
# (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/metrics-dimensions.html).
_DYNAMODB_TABLE = _sets({"TableName"}, {"TableName", "GlobalSecondaryIndexName"})

# AWS/ApplicationELB: the "Dimensions" list under each metric
# (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-cloudwatch-metrics.html).
# HTTPCode_Target_5XX_Count: LoadBalancer; AvailabilityZone, LoadBalancer; TargetGroup, LoadBalancer;
# TargetGroup, AvailabilityZone, LoadBalancer. UnHealthyHostCount (a per-target-group count): TargetGroup,
# LoadBalancer; TargetGroup, AvailabilityZone, LoadBalancer.
_ALB_TARGET_CODES = _sets(
    {"LoadBalancer"},
    {"AvailabilityZone", "LoadBalancer"},
    {"TargetGroup", "LoadBalancer"},
    {"TargetGroup", "AvailabilityZone", "LoadBalancer"},
)
_ALB_TARGET_HEALTH = _sets(
    {"TargetGroup", "LoadBalancer"}, {"TargetGroup", "AvailabilityZone", "LoadBalancer"}
)

# AWS/ECS: CPUUtilization, "Valid Dimension: ClusterName, ServiceName"; ClusterName alone is the
# cluster-level figure, for tasks on EC2 instances only (Fargate tasks report per service)
# (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/available-metrics.html).
_ECS_SERVICE = _sets({"ClusterName"}, {"ClusterName", "ServiceName"})

# AWS/RDS: each of DBInstanceIdentifier, DatabaseClass, EngineName and SourceRegion filters the instance
# metrics on its own (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/dimensions.html, "Amazon
# CloudWatch dimensions for Amazon RDS").
_RDS_INSTANCE = _sets({"DBInstanceIdentifier"}, {"DatabaseClass"}, {"EngineName"}, {"SourceRegion"})

# AWS/WAFV2: "AWS WAF for Application Load Balancer can use the following dimension combinations:
# Region, Rule, WebACL; Region, RuleGroup, WebACL; Region, Rule, RuleGroup" (AWS WAF Developer Guide,
# "AWS WAF metrics and dimensions"; WebACL and RuleGroup are their metric names, Rule a rule's metric
# name or ALL).
_WAF_REGIONAL = _sets(
    {"Region", "Rule", "WebACL"}, {"Region", "RuleGroup", "WebACL"}, {"Region", "Rule", "RuleGroup"}
)
# AWS/SES: "Amazon SES automatically publishes two reputation-related metrics to Amazon CloudWatch:
# Reputation.BounceRate and Reputation.ComplaintRate", "decimal numbers between 0 and 1" (SES Developer
# Guide, "Creating reputation monitoring alarms using CloudWatch",
# https://docs.aws.amazon.com/ses/latest/DeveloperGuide/reputationdashboard-cloudwatch-alarm.html): the
# account's rates, without dimensions. (A configuration set with reputation metrics enabled adds its
# own series; the account's is what SES reviews.)
_SES_ACCOUNT = _sets(())
# Load balancer-level ALB metrics: "Dimensions: LoadBalancer; AvailabilityZone, LoadBalancer" under
# ActiveConnectionCount, HTTPCode_ELB_4XX_Count and HTTPCode_ELB_5XX_Count (the ALB metrics page above).
_ALB_LOAD_BALANCER = _sets({"LoadBalancer"}, {"AvailabilityZone", "LoadBalancer"})
# ECS/ContainerInsights service-level task and deployment counts: "ClusterName, ServiceName"
# (CloudWatch User Guide, "Amazon ECS Container Insights metrics",
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/Container-Insights-metrics-ECS.html);
# published only where the cluster has Container Insights on.
_CONTAINER_INSIGHTS_SERVICE = _sets({"ClusterName", "ServiceName"})
# The services' own metrics are not in this table: their namespace, dimension and names are the
# services' EMF declarations (components/facts.py MetricsFacts), checked in `undocumented`.
SERVICE_METRICS = (CHAT.metrics, FILES.metrics, MAILER.metrics)

DOCUMENTED: Mapping[tuple[str, str], DimensionSets] = {
    ("AWS/ElastiCache", "DatabaseMemoryUsagePercentage"): _ELASTICACHE_NODE,
    ("AWS/ElastiCache", "Evictions"): _ELASTICACHE_NODE,
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible"): _SQS_QUEUE,
    ("AWS/SQS", "ApproximateAgeOfOldestMessage"): _SQS_QUEUE,
    ("AWS/Lambda", "Errors"): _LAMBDA_FUNCTION,
    ("AWS/DynamoDB", "ReadThrottleEvents"): _DYNAMODB_TABLE,
    ("AWS/DynamoDB", "WriteThrottleEvents"): _DYNAMODB_TABLE,
    ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count"): _ALB_TARGET_CODES,
    ("AWS/ApplicationELB", "UnHealthyHostCount"): _ALB_TARGET_HEALTH,
    ("AWS/ECS", "CPUUtilization"): _ECS_SERVICE,
    ("AWS/RDS", "CPUUtilization"): _RDS_INSTANCE,
    ("AWS/RDS", "FreeStorageSpace"): _RDS_INSTANCE,
    ("AWS/WAFV2", "BlockedRequests"): _WAF_REGIONAL,
    ("AWS/SES", "Reputation.BounceRate"): _SES_ACCOUNT,
    ("AWS/SES", "Reputation.ComplaintRate"): _SES_ACCOUNT,
    # What the dashboard shows beside the alarms (components/aws/dashboard.py), same sources.
    ("AWS/ApplicationELB", "RequestCount"): _ALB_TARGET_CODES,
    ("AWS/ApplicationELB", "HTTPCode_Target_4XX_Count"): _ALB_TARGET_CODES,
    ("AWS/ApplicationELB", "TargetResponseTime"): _ALB_TARGET_CODES,
    ("AWS/ApplicationELB", "HealthyHostCount"): _ALB_TARGET_HEALTH,
    ("AWS/ApplicationELB", "ActiveConnectionCount"): _ALB_LOAD_BALANCER,
    ("AWS/ApplicationELB", "HTTPCode_ELB_4XX_Count"): _ALB_LOAD_BALANCER,
    ("AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count"): _ALB_LOAD_BALANCER,
    ("AWS/ECS", "MemoryUtilization"): _ECS_SERVICE,
    **{
        ("ECS/ContainerInsights", m): _CONTAINER_INSIGHTS_SERVICE
        for m in ("RunningTaskCount", "DesiredTaskCount", "PendingTaskCount", "DeploymentCount")
    },
    ("AWS/RDS", "DatabaseConnections"): _RDS_INSTANCE,
    ("AWS/RDS", "FreeableMemory"): _RDS_INSTANCE,
    ("AWS/RDS", "ReadLatency"): _RDS_INSTANCE,
    ("AWS/RDS", "WriteLatency"): _RDS_INSTANCE,
    ("AWS/ElastiCache", "EngineCPUUtilization"): _ELASTICACHE_NODE,
    ("AWS/ElastiCache", "CurrConnections"): _ELASTICACHE_NODE,
    ("AWS/Lambda", "Duration"): _LAMBDA_FUNCTION,
    ("AWS/Lambda", "Throttles"): _LAMBDA_FUNCTION,
    ("AWS/WAFV2", "AllowedRequests"): _WAF_REGIONAL,
}


def undocumented(alarm: Mapping[str, Any]) -> str | None:
    """Why an alarm's inputs watch no documented metric, or None when they do."""
    namespace, metric = alarm.get("namespace"), alarm.get("metricName")
    if not namespace or not metric:
        return "names no namespace and metric (metric math is not in the table)"
    dimensions: Mapping[str, Any] = alarm.get("dimensions") or {}
    own = next((m for m in SERVICE_METRICS if m.namespace == namespace), None)
    if own is not None:
        if metric not in own.names:
            return f"{namespace} {metric}: the service declares no such metric ({own.names})"
        if set(dimensions) != {own.dimension}:
            return f"{namespace} {metric}: the service publishes the dimension set [{own.dimension}] only"
    documented = _sets({own.dimension}) if own is not None else DOCUMENTED.get((namespace, metric))
    if documented is None:
        return f"{namespace} {metric} is not in the table: look up its dimensions and add them"
    if frozenset(dimensions) not in documented:
        sets = sorted(sorted(s) for s in documented)
        return f"{namespace} {metric} has no dimension set {sorted(dimensions)}; AWS documents {sets}"
    empty = sorted(k for k, v in dimensions.items() if not isinstance(v, str) or not v)
    if empty:
        return f"dimensions without a value: {empty}"
    return None


def alarms(stack: StackRun) -> list[RecordedResource]:
    found = stack.of_type(ALARM)
    assert found, "the program registers no alarm"
    return found


def test_every_alarm_watches_a_documented_metric_and_dimension_set(stack: StackRun) -> None:
    problems = {a.name: why for a in alarms(stack) if (why := undocumented(a.inputs))}
    assert not problems, problems


def test_the_check_rejects_what_aws_does_not_publish() -> None:
    good = {
        "namespace": "AWS/ElastiCache",
        "metricName": "Evictions",
        "dimensions": {"CacheClusterId": "c-001"},
    }
    assert undocumented(good) is None
    # The dimension the Redis alarms used before: ElastiCache publishes nothing under it.
    assert undocumented({**good, "dimensions": {"ReplicationGroupId": "c"}})
    assert undocumented({**good, "dimensions": {"CacheNodeId": "0001"}})
    assert undocumented({**good, "metricName": "NoSuchMetric"})
    assert undocumented({**good, "dimensions": {"CacheClusterId": ""}})
    # SES's reputation is the account's: no dimension names a queue, function or identity.
    ses = {"namespace": "AWS/SES", "metricName": "Reputation.BounceRate"}
    assert undocumented(ses) is None
    assert undocumented({**ses, "dimensions": {"FunctionName": "f"}})
    assert undocumented({**ses, "metricName": "BounceRate"}), "the metric is Reputation.BounceRate"
    alb = {"namespace": "AWS/ApplicationELB", "metricName": "UnHealthyHostCount"}
    assert undocumented({**alb, "dimensions": {"LoadBalancer": "app/x/1"}}), "no per-ALB healthy host count"
    waf = {"namespace": "AWS/WAFV2", "metricName": "BlockedRequests"}
    assert (
        undocumented({**waf, "dimensions": {"Region": "us-east-1", "Rule": "ALL", "WebACL": "acl"}}) is None
    )
    # Without Region it is the CloudFront form, which a regional web ACL does not publish.
    assert undocumented({**waf, "dimensions": {"Rule": "ALL", "WebACL": "acl"}}), (
        "Region is required for an ALB"
    )
