"""Chat under mocks: history table, Redis with TLS + AUTH, the WebSocket service and its alarms."""

from __future__ import annotations

import re
import string
from typing import Any

import pytest

import components.chat as chat_module
from components.facts import CHAT
from components.platform.platform import ALB_IDLE_TIMEOUT_SECONDS
from stacktools.mocked_program import RANDOM_PASSWORD, random_password_alphabet, random_password_classes
from tests.infra.harness import RecordedResource, StackRun, run_program, run_stack, stack_config_values

GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"
SECRET_VERSION = "aws:secretsmanager/secretVersion:SecretVersion"

# ElastiCache's rule for AUTH tokens ("Authenticating with the Valkey and Redis OSS AUTH command",
# https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/auth.html): "Tokens, or passwords, must be
# 16-128 printable characters. Nonalphanumeric characters are restricted to (!, &, #, $, ^, <, >, -)."
# (CreateReplicationGroup's AuthToken: "Must be only printable ASCII characters".) The provider's own
# check is looser (validReplicationGroupAuthToken: 16-128, no @ " /), so the documented rule is the one
# that holds.
AUTH_TOKEN_LENGTH = (16, 128)
AUTH_TOKEN_CHARACTERS = frozenset(string.ascii_letters + string.digits + "!&#$^<>-")

# Replication group arguments that force a replacement (terraform-provider-aws
# internal/service/elasticache/replication_group.go: `ForceNew: true` in the schema), camelCase.
GROUP_FORCE_NEW = frozenset(
    {
        "atRestEncryptionEnabled",
        "dataTieringEnabled",
        "globalReplicationGroupId",
        "kmsKeyId",
        "networkType",
        "port",
        "replicationGroupId",
        "securityGroupNames",
        "snapshotArns",
        "snapshotName",
        "subnetGroupName",
    }
)


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
    assert tg["healthCheck"]["path"] == "/chat/readyz" and tg["deregistrationDelay"] == 15
    rule = stack.one("aws:lb/listenerRule:ListenerRule", "chat-service-rule").inputs
    assert rule["conditions"][0]["pathPattern"]["values"] == ["/chat/*"]
    assert (
        stack.one("aws:lb/loadBalancer:LoadBalancer").inputs["idleTimeout"]
        == ALB_IDLE_TIMEOUT_SECONDS
        >= CHAT.min_alb_idle_timeout_seconds
        > CHAT.ping_interval_seconds
    )


def test_task_role_limited_to_the_table(stack: StackRun) -> None:
    policy = stack.one("aws:iam/rolePolicy:RolePolicy", "chat-service-task-policy").json("policy")
    statements = {s["Sid"]: s for s in policy["Statement"]}
    # Plus, where the table is under the component's key, its use through DynamoDB (test_kms.py).
    assert (
        set(statements) == {"ChatHistory", "HistoryKey"}
        if stack.config.data_kms_encryption
        else {"ChatHistory"}
    )
    stmt = statements["ChatHistory"]
    assert stmt["Resource"] == [
        f"arn:aws:dynamodb:us-east-1:123456789012:table/motion-{stack.stack}-chat-messages"
    ]
    assert set(stmt["Action"]) == {"dynamodb:BatchWriteItem", "dynamodb:PutItem", "dynamodb:Query"}


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


def auth_token_problems(token: str) -> list[str]:
    """Where a token breaks ElastiCache's documented AUTH rule."""
    low, high = AUTH_TOKEN_LENGTH
    problems = [] if low <= len(token) <= high else [f"length {len(token)} outside {low}-{high}"]
    bad = sorted(set(token) - AUTH_TOKEN_CHARACTERS)
    return problems + ([f"characters ElastiCache refuses: {bad}"] if bad else [])


def test_auth_token_rule_rejects_what_elasticache_does() -> None:
    assert auth_token_problems("A1b2C3d4E5f6G7h8") == []
    assert auth_token_problems("A1b2C3d4E5f6G7h8!&#$^<>-") == []
    assert auth_token_problems("short")
    assert auth_token_problems("x" * 129)
    assert auth_token_problems("A1b2C3d4E5f6G7h8@")  # the provider would pass it; AWS does not
    assert auth_token_problems("A1b2C3d4E5f6G7h8%")
    # The password resource's defaults (special on, the provider's own special set) would break it.
    assert auth_token_problems(random_password_alphabet({"length": 64}))


def test_the_auth_token_password_can_only_draw_what_elasticache_accepts(stack: StackRun) -> None:
    password = stack.one(RANDOM_PASSWORD, "redis-auth").inputs
    length = int(password["length"])
    low, high = AUTH_TOKEN_LENGTH
    assert low <= length <= high
    # The provider refuses a length below the sum of the minimums (resource_password.go, AtLeastSumOf).
    assert sum(minimum for _, _, minimum in random_password_classes(password)) <= length
    assert auth_token_problems(random_password_alphabet(password)) == []
    assert auth_token_problems(stack.one(GROUP).inputs["authToken"]) == []


def token_holders(run: StackRun) -> tuple[RecordedResource, RecordedResource, RecordedResource]:
    return run.one(RANDOM_PASSWORD, "redis-auth"), run.one(GROUP), run.one(SECRET_VERSION, "redis-auth")


def test_group_and_secret_take_the_token_from_one_stateful_password(stack: StackRun) -> None:
    password, group, version = token_holders(stack)
    # Both inputs are made of the password's output, not of a value drawn anew on each run (an invoke).
    assert password.urn in group.property_dependencies["authToken"]
    assert password.urn in version.property_dependencies["secretString"]
    assert group.inputs["authToken"] == version.inputs["secretString"]
    assert "aws:secretsmanager/getRandomPassword:getRandomPassword" not in stack.calls
    # Nothing pins an old value: what the engine sends is what the password holds.
    assert not group.ignore_changes & {"authToken", "authTokenUpdateStrategy"}
    assert "secretString" not in version.ignore_changes
    assert group.inputs["authTokenUpdateStrategy"] == "ROTATE"
    # The secret moves to a new token only after the group accepts it.
    assert group.urn in version.dependencies


@pytest.fixture(scope="module")
def production_with_a_new_port() -> StackRun:
    """Production as a later run in which a change forces the replication group's replacement: a new
    Redis port (`port` is ForceNew for the provider)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(chat_module, "REDIS_PORT", chat_module.REDIS_PORT + 1)
        return run_program("production", stack_config_values("production"))


def test_a_replaced_group_is_created_with_the_token_the_secret_holds(
    production_with_a_new_port: StackRun,
) -> None:
    before, after = token_holders(run_stack("production")), token_holders(production_with_a_new_port)
    (old_password, old_group, old_version), (password, group, version) = before, after

    def force_new(inputs: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in inputs.items() if k in GROUP_FORCE_NEW}

    # The engine would replace the group: a ForceNew argument changed...
    assert force_new(old_group.inputs) != force_new(group.inputs)
    # ...while the password's inputs did not, so its state (the token) stays.
    assert (password.urn, password.inputs) == (old_password.urn, old_password.inputs)
    # The new group gets the token the secret already holds, and the chat tasks read it from there.
    assert group.inputs["authToken"] == version.inputs["secretString"] == old_version.inputs["secretString"]
    assert old_group.inputs["authToken"] == group.inputs["authToken"]
    assert re.fullmatch(r"[A-Za-z0-9]{64}", group.inputs["authToken"])


def test_a_changed_password_input_draws_a_new_token() -> None:
    """The mock models the provider's state, not a constant: a replaced password is a new token."""
    from stacktools.mocked_program import mock_random_password

    inputs = {"length": 64.0, "special": False}
    assert mock_random_password("p", inputs) == mock_random_password("p", dict(inputs))
    assert mock_random_password("p", inputs) != mock_random_password("p", {**inputs, "length": 65.0})
    assert mock_random_password("p", inputs) != mock_random_password("q", inputs)
