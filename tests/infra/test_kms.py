"""Customer managed KMS keys under mocks: the stack's log groups under a key of ours in production, with
a key policy granting CloudWatch Logs exactly what its documentation asks for."""

from __future__ import annotations

import json

from harness import RecordedResource, StackRun

from devstack.mocked_program import ACCOUNT, computed_outputs

KEY = "aws:kms/key:Key"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
# Delivered by the service itself (vended logs), not put by our code or roles: they keep CloudWatch
# Logs' own encryption.
VENDED = {"waf-logs", "chat-redis-slow-log"}


def log_key(run: StackRun) -> RecordedResource:
    return next(k for k in run.of_type(KEY) if k.name == "logs-key")


def test_dev_log_groups_use_cloudwatch_logs_encryption(dev: StackRun) -> None:
    assert not dev.config.logs_kms_encryption
    assert not [k for k in dev.of_type(KEY) if k.name == "logs-key"]
    assert all("kmsKeyId" not in g.inputs for g in dev.of_type(LOG_GROUP))


def test_production_log_groups_are_encrypted_with_the_stacks_key(production: StackRun) -> None:
    key = log_key(production)
    assert key.inputs["enableKeyRotation"] is True and key.inputs["deletionWindowInDays"] == 30
    arn = computed_outputs(key.type, key.name, key.inputs, production.config.region)["arn"]
    groups = {g.name: g.inputs for g in production.of_type(LOG_GROUP)}
    assert set(groups) >= VENDED
    encrypted = {name for name, g in groups.items() if g.get("kmsKeyId") == arn}
    assert encrypted == set(groups) - VENDED
    assert len(encrypted) >= 6  # flow logs, two Lambdas, the API's access log, the services, the migration
    aliases = {a.inputs["name"]: a.inputs["targetKeyId"] for a in production.of_type("aws:kms/alias:Alias")}
    assert "alias/motion-production-logs" in aliases


def test_the_log_key_policy_is_the_documented_one_and_nothing_more(production: StackRun) -> None:
    # CloudWatch Logs User Guide, "Encrypt log data in CloudWatch Logs using AWS Key Management Service",
    # step 2: the regional principal, these actions, and the encryption context naming the log group.
    region = production.config.region
    statements = {s["Sid"]: s for s in json.loads(log_key(production).inputs["policy"])["Statement"]}
    assert set(statements) == {"AccountAdministers", "CloudWatchLogsEncryptsLogGroups"}
    assert statements["AccountAdministers"]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    logs = statements["CloudWatchLogsEncryptsLogGroups"]
    assert logs["Principal"] == {
        "Service": f"logs.{region}.amazonaws.com"
    }  # regional, not logs.amazonaws.com
    assert sorted(logs["Action"]) == sorted(
        ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    )
    # Only log groups of this account and region may have the key used for them.
    assert logs["Condition"] == {
        "ArnLike": {"kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:{region}:{ACCOUNT}:log-group:*"}
    }
