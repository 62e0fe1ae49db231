"""Chat under mocks: history table, Redis with TLS + AUTH, the WebSocket service and its alarms."""

from __future__ import annotations

from harness import StackRun

from components.platform import ALB_IDLE_TIMEOUT_SECONDS

GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"


def test_history_table_keys_and_protection(dev: StackRun, production: StackRun) -> None:
    for run, protected in ((dev, False), (production, True)):
        table = run.one("aws:dynamodb/table:Table", "chat").inputs
        assert (table["hashKey"], table["rangeKey"]) == ("project_id", "message_key")
        assert table["billingMode"] == "PAY_PER_REQUEST" and table["serverSideEncryption"]["enabled"] is True
        assert (
            table["pointInTimeRecovery"]["enabled"] is protected
            and table["deletionProtectionEnabled"] is protected
        )


def test_redis_one_node_in_dev_replicated_with_failover_in_production(
    dev: StackRun, production: StackRun
) -> None:
    d, p = dev.one(GROUP).inputs, production.one(GROUP).inputs
    assert d["numCacheClusters"] == 1 and d["automaticFailoverEnabled"] is False
    assert (
        p["numCacheClusters"] == 3 and p["automaticFailoverEnabled"] is True and p["multiAzEnabled"] is True
    )


def test_redis_encrypted_with_auth_in_isolated_subnets(stack: StackRun) -> None:
    group = stack.one(GROUP)
    assert (
        group.inputs["transitEncryptionEnabled"] is True and group.inputs["atRestEncryptionEnabled"] is True
    )
    assert "authToken" in group.secret_paths
    isolated = {
        s.id for s in stack.of_type("aws:ec2/subnet:Subnet") if s.inputs["tags"]["tier"] == "isolated"
    }
    assert set(stack.one("aws:elasticache/subnetGroup:SubnetGroup").inputs["subnetIds"]) == isolated
    version = stack.one("aws:secretsmanager/secretVersion:SecretVersion")
    assert "secretString" in version.secret_paths


def test_redis_admits_only_chat_tasks(stack: StackRun) -> None:
    redis_sg = stack.one("aws:ec2/securityGroup:SecurityGroup", "chat-redis")
    chat_sg = stack.one("aws:ec2/securityGroup:SecurityGroup", "chat-service-sg")
    ingress = [
        r.inputs
        for r in stack.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.inputs["securityGroupId"] == redis_sg.id
    ]
    assert [(r["referencedSecurityGroupId"], r["fromPort"]) for r in ingress] == [(chat_sg.id, 6379)]


def test_service_behind_alb_with_drain_and_secrets_by_reference(stack: StackRun) -> None:
    (container,) = stack.one("aws:ecs/taskDefinition:TaskDefinition", "chat").json("containerDefinitions")
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env["REDIS_TLS"] == "true" and env["CHAT_TABLE"] == f"motion-{stack.stack}-chat-messages"
    assert "REDIS_AUTH_TOKEN" not in env
    (secret,) = container["secrets"]
    assert secret["name"] == "REDIS_AUTH_TOKEN" and ":secretsmanager:" in secret["valueFrom"]
    assert container["readonlyRootFilesystem"] is True and container["stopTimeout"] > 10
    tg = stack.one("aws:lb/targetGroup:TargetGroup", "chat").inputs
    assert tg["healthCheck"]["path"] == "/chat/healthz" and tg["deregistrationDelay"] == 15
    rule = stack.one("aws:lb/listenerRule:ListenerRule", "chat").inputs
    assert rule["conditions"][0]["pathPattern"]["values"] == ["/chat/*"]
    assert (
        stack.one("aws:lb/loadBalancer:LoadBalancer").inputs["idleTimeout"] == ALB_IDLE_TIMEOUT_SECONDS > 25
    )


def test_task_role_limited_to_the_table(stack: StackRun) -> None:
    policy = stack.one("aws:iam/rolePolicy:RolePolicy", "chat-service-task-policy").json("policy")
    (stmt,) = policy["Statement"]
    assert stmt["Resource"] == [
        f"arn:aws:dynamodb:us-east-1:123456789012:table/motion-{stack.stack}-chat-messages"
    ]
    assert set(stmt["Action"]) == {"dynamodb:BatchWriteItem", "dynamodb:Query"}


def test_production_runs_two_or_more_tasks_with_cpu_and_request_scaling(production: StackRun) -> None:
    assert production.one("aws:ecs/service:Service", "chat").inputs["desiredCount"] >= 2
    policies = [
        p.inputs for p in production.of_type("aws:appautoscaling/policy:Policy") if p.name.startswith("chat")
    ]
    kinds = {
        p["targetTrackingScalingPolicyConfiguration"]["predefinedMetricSpecification"]["predefinedMetricType"]
        for p in policies
    }
    assert kinds == {"ECSServiceAverageCPUUtilization", "ALBRequestCountPerTarget"}


def test_alarms(stack: StackRun) -> None:
    metrics = {
        a.inputs["metricName"]
        for a in stack.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
        if a.name.startswith("chat")
    }
    assert {
        "HTTPCode_Target_5XX_Count",
        "UnHealthyHostCount",
        "CPUUtilization",
        "DatabaseMemoryUsagePercentage",
        "Evictions",
        "WriteThrottleEvents",
    } <= metrics


def test_one_redis_alarm_per_metric_and_member_cluster(stack: StackRun) -> None:
    """The member clusters AWS creates for the group: its id, lowercase, plus -001, -002, ... one per
    cache cluster (see components/chat.py member_cluster_ids for the sources)."""
    group = stack.one(GROUP).inputs
    members = [
        f"{group['replicationGroupId'].lower()}-{n:03d}" for n in range(1, int(group["numCacheClusters"]) + 1)
    ]
    assert len(members) == (3 if stack.stack == "production" else 1)
    for metric in ("DatabaseMemoryUsagePercentage", "Evictions"):
        watched = sorted(
            a.inputs["dimensions"].get("CacheClusterId", "")
            for a in stack.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
            if a.inputs["namespace"] == "AWS/ElastiCache" and a.inputs["metricName"] == metric
        )
        assert watched == members, (metric, watched)
