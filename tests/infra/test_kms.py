"""Customer managed KMS keys under mocks. Mocks accept any key policy and any role, so what KMS and the
services would refuse, or silently allow, is checked here from their documented rules:
- log groups under the stack's log key in production, with the key policy CloudWatch Logs documents;
- every data store of a component under that component's key in production (AWS's keys in dev);
- every key's policy lets the account administer it but use it only through the services (or service
  principals) that encrypt with it, and keeps kms:PutKeyPolicy (KMS's lockout safety check);
- every role that reads or writes data under a key may use that key exactly through that service
  (AWS answers AccessDenied at run time otherwise), and no role holds a key it does not need."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from components.aws.kms import ROLE_ACTIONS, VIA_SERVICE_ACTIONS, VIA_SERVICE_NAMES
from stacktools.mocked_program import ACCOUNT, computed_outputs
from tests.infra.harness import RecordedResource, StackRun, arn

KEY = "aws:kms/key:Key"
DATA_GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
# Delivered by the service itself (vended logs: WAF's and ElastiCache's), which CloudWatch Logs
# encrypts at ingestion with the group's key like any other (CloudWatch Logs User Guide, "Logs sent to
# CloudWatch Logs" asks the delivery only for the group's resource policy), so they take the key too.
VENDED = {"waf-logs", "chat-redis-slow-log"}
# Actions that encrypt, decrypt or hand out the key (KMS Developer Guide, "AWS KMS permissions":
# cryptographic operations, and grants, which confer them).
CRYPTO = ("kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt", "kms:GenerateDataKey", "kms:CreateGrant", "kms:*")
# The component keys and the data each encrypts: (resource type, resource name, input path to the key).
Path = tuple[str | int, ...]
DATA: dict[str, list[tuple[str, str, Path]]] = {
    "mailing-key": [
        ("aws:dynamodb/table:Table", "mailing-messages", ("serverSideEncryption", "kmsKeyArn")),
        ("aws:dynamodb/table:Table", "mailing-users", ("serverSideEncryption", "kmsKeyArn")),
        ("aws:dynamodb/table:Table", "mailing-quotas", ("serverSideEncryption", "kmsKeyArn")),
        ("aws:sqs/queue:Queue", "mailing-queue", ("kmsMasterKeyId",)),
        ("aws:sqs/queue:Queue", "mailing-dlq", ("kmsMasterKeyId",)),
        ("aws:sqs/queue:Queue", "mailing-ses-events-queue", ("kmsMasterKeyId",)),
        ("aws:sqs/queue:Queue", "mailing-ses-events-dlq", ("kmsMasterKeyId",)),
        ("aws:secretsmanager/secret:Secret", "mailing-clerk-webhook-secret", ("kmsKeyId",)),
    ],
    "chat-key": [
        ("aws:dynamodb/table:Table", "chat-messages", ("serverSideEncryption", "kmsKeyArn")),
        ("aws:ecr/repository:Repository", "chat-image-repo", ("encryptionConfigurations", 0, "kmsKey")),
        ("aws:elasticache/replicationGroup:ReplicationGroup", "chat-redis", ("kmsKeyId",)),
        ("aws:secretsmanager/secret:Secret", "chat-redis-auth", ("kmsKeyId",)),
    ],
    "files-key": [
        (
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            "files-bucket-encryption",
            ("rules", 0, "applyServerSideEncryptionByDefault", "kmsMasterKeyId"),
        ),
        ("aws:rds/instance:Instance", "files-db-instance", ("kmsKeyId",)),
        ("aws:rds/instance:Instance", "files-db-instance", ("performanceInsightsKmsKeyId",)),
        ("aws:rds/instance:Instance", "files-db-instance", ("masterUserSecretKmsKeyId",)),
        ("aws:ecr/repository:Repository", "files-image-repo", ("encryptionConfigurations", 0, "kmsKey")),
    ],
}
# Data that stays under AWS's keys, and why.
EXEMPT = {
    # ALB access log delivery supports SSE-S3 only (ELB User Guide, "Access logs": "the only server-side
    # encryption option that's supported is Amazon S3-managed keys (SSE-S3)").
    "platform-alb-logs-encryption",
}
# Data no role reads or writes: SQS itself moves failed messages into the dead-letter queue, and an
# operator's redrive uses the operator's permissions.
UNTOUCHED_BY_ROLES = {"motion-production-mail-dead-letters", "motion-production-mail-ses-events-dead-letters"}
# Which service encrypts a resource of each type with its key (the kms:ViaService the key allows).
SERVICE = {
    "aws:dynamodb/table:Table": "dynamodb",
    "aws:sqs/queue:Queue": "sqs",
    "aws:secretsmanager/secret:Secret": "secretsmanager",
    "aws:ecr/repository:Repository": "ecr",
    "aws:elasticache/replicationGroup:ReplicationGroup": "elasticache",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": "s3",
}


def service_of(type_: str, path: Path) -> str:
    # The RDS master password secret is Secrets Manager's; storage and Performance Insights are RDS's.
    if type_ == "aws:rds/instance:Instance":
        return "secretsmanager" if path == ("masterUserSecretKmsKeyId",) else "rds"
    return SERVICE[type_]


def dig(value: Any, path: Path) -> Any:
    for step in path:
        if value is None:
            return None
        value = value[step] if isinstance(step, int) else value.get(step)
    return value


def log_key(run: StackRun) -> RecordedResource:
    return next(k for k in run.of_type(KEY) if k.name == "logs-key")


def statements(key: RecordedResource) -> list[dict[str, Any]]:
    return json.loads(key.inputs["policy"])["Statement"]


def actions(stmt: dict[str, Any]) -> list[str]:
    return [stmt["Action"]] if isinstance(stmt["Action"], str) else list(stmt["Action"])


def is_crypto(action: str) -> bool:
    return action == "*" or any(action.startswith(prefix) for prefix in CRYPTO)


def test_dev_log_groups_use_cloudwatch_logs_encryption(dev: StackRun) -> None:
    assert not dev.config.logs_kms_encryption
    assert not [k for k in dev.of_type(KEY) if k.name == "logs-key"]
    assert all("kmsKeyId" not in g.inputs for g in dev.of_type(LOG_GROUP))


def test_production_log_groups_are_encrypted_with_the_stacks_key(production: StackRun) -> None:
    key = log_key(production)
    assert key.inputs["enableKeyRotation"] is True and key.inputs["deletionWindowInDays"] == 30
    groups = {g.name: g.inputs for g in production.of_type(LOG_GROUP)}
    assert set(groups) >= VENDED
    encrypted = {name for name, g in groups.items() if g.get("kmsKeyId") == arn(production, key)}
    assert encrypted == set(groups)
    assert len(encrypted) >= 6  # flow logs, two Lambdas, the API's access log, the services, the migration
    aliases = {a.inputs["name"]: a.inputs["targetKeyId"] for a in production.of_type("aws:kms/alias:Alias")}
    assert "alias/motion-production-logs" in aliases


def test_the_log_key_policy_is_the_documented_one_and_nothing_more(production: StackRun) -> None:
    # CloudWatch Logs User Guide, "Encrypt log data in CloudWatch Logs using AWS Key Management Service",
    # step 2: the regional principal, these actions, and the encryption context naming the log group.
    region = production.config.region
    by_sid = {s["Sid"]: s for s in statements(log_key(production))}
    assert set(by_sid) == {"AccountAdministers", "CloudWatchLogsEncryptsLogGroups"}
    logs = by_sid["CloudWatchLogsEncryptsLogGroups"]
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


def all_keys(run: StackRun) -> Iterator[RecordedResource]:
    keys = run.of_type(KEY)
    assert keys  # the alarm topic's key is in every stack
    yield from keys


def test_every_key_is_administered_by_the_account_but_used_only_through_a_service(stack: StackRun) -> None:
    region = stack.config.region
    root = f"arn:aws:iam::{ACCOUNT}:root"
    for key in all_keys(stack):
        assert key.inputs["enableKeyRotation"] is True, key.name
        policy = statements(key)
        admin = [s for s in policy if s["Sid"] == "AccountAdministers"]
        assert len(admin) == 1, key.name
        assert admin[0]["Principal"] == {"AWS": root} and "Condition" not in admin[0]
        granted = actions(admin[0])
        # KMS refuses a policy that would lock the caller out of changing it again (CreateKey,
        # BypassPolicyLockoutSafetyCheck): the account must keep kms:PutKeyPolicy.
        assert "kms:PutKeyPolicy" in granted, key.name
        # No wildcard that could include a cryptographic action or a grant (kms:Create* would).
        assert not [a for a in granted if is_crypto(a) or "*" in a], (key.name, granted)
        for stmt in policy:
            if stmt is admin[0]:
                continue
            assert stmt["Effect"] == "Allow", (key.name, stmt)
            principal = stmt["Principal"]
            if "AWS" in principal:
                # The account's principals only through one service, as its documentation lists.
                assert principal == {"AWS": root}, (key.name, stmt)
                equals = stmt["Condition"]["StringEquals"]
                assert equals["kms:CallerAccount"] == ACCOUNT
                via = equals["kms:ViaService"]
                service = (via[0] if isinstance(via, list) else via).removesuffix(f".{region}.amazonaws.com")
                names = VIA_SERVICE_NAMES.get(service, (service,))
                expected = [f"{n}.{region}.amazonaws.com" for n in names]
                assert via == (expected if len(expected) > 1 else expected[0]), (key.name, via)
                assert sorted(actions(stmt)) == sorted(VIA_SERVICE_ACTIONS[service]), (key.name, service)
            else:
                (kind,) = principal
                assert kind == "Service", (key.name, stmt)
                if not [a for a in actions(stmt) if is_crypto(a)]:
                    # Metadata only (DynamoDB watching its tables' key): nothing to confine.
                    assert sorted(actions(stmt)) == ["kms:Describe*", "kms:Get*", "kms:List*"], stmt
                    continue
                # A service principal, pinned to this account (or to this account's log groups).
                condition = json.dumps(stmt["Condition"])
                assert ACCOUNT in condition, (key.name, stmt)


def test_dev_keeps_its_data_under_aws_keys(dev: StackRun) -> None:
    assert not dev.config.data_kms_encryption
    assert not [k for k in dev.of_type(KEY) if k.name in DATA]
    for entries in DATA.values():
        for type_, name, path in entries:
            assert not dig(dev.one(type_, name).inputs, path), (name, path)


def test_production_keeps_each_components_data_under_that_components_key(production: StackRun) -> None:
    region = production.config.region
    for key_name, entries in DATA.items():
        key = production.one(KEY, key_name)
        assert key.inputs["deletionWindowInDays"] == 30
        key_arn = arn(production, key)
        for type_, name, path in entries:
            assert dig(production.one(type_, name).inputs, path) == key_arn, (key_name, name, path)
        # The key may be used through exactly the services that encrypt its data, no others.
        services = {
            str(
                via[0] if isinstance(via := s["Condition"]["StringEquals"]["kms:ViaService"], list) else via
            ).split(".")[0]
            for s in statements(key)
            if "AWS" in s["Principal"] and s["Sid"] != "AccountAdministers"
        }
        assert services == {service_of(t, p) for t, _, p in entries}, key_name
        assert all(s["Principal"] != {"Service": f"logs.{region}.amazonaws.com"} for s in statements(key))
    # Storage and Performance Insights: an encrypted instance, with Performance Insights on.
    instance = production.one("aws:rds/instance:Instance", "files-db-instance").inputs
    assert instance["storageEncrypted"] is True and instance["performanceInsightsEnabled"] is True
    # Every ECR repository, table, queue, cache and secret of the stack is one the table above names.
    named = {name for entries in DATA.values() for _, name, _ in entries}
    for type_ in SERVICE:
        for resource in production.of_type(type_):
            if resource.name not in EXEMPT:
                assert resource.name in named, f"{resource.name} ({type_}) is under no component key"


def encrypted_data(run: StackRun) -> dict[str, tuple[str, str]]:
    """ARN (or ARN prefix, for objects) of every piece of data under a component key -> (key ARN,
    the service that uses the key for it)."""
    found: dict[str, tuple[str, str]] = {}
    for key_name, entries in DATA.items():
        key_arn = arn(run, run.one(KEY, key_name))
        for type_, name, path in entries:
            resource = run.one(type_, name)
            service = service_of(type_, path)
            if type_ == "aws:rds/instance:Instance":
                if service == "secretsmanager":
                    secret = computed_outputs(type_, resource.name, resource.inputs, run.config.region)[
                        "masterUserSecrets"
                    ][0]["secretArn"]
                    found[secret] = (key_arn, service)
                continue  # storage and Performance Insights: no role reads them through IAM
            if type_.startswith("aws:s3/"):
                bucket = run.one("aws:s3/bucket:Bucket", "files-bucket")
                found[arn(run, bucket) + "/"] = (key_arn, service)
                continue
            if type_ in (
                "aws:ecr/repository:Repository",
                "aws:elasticache/replicationGroup:ReplicationGroup",
            ):
                continue  # ECR and ElastiCache use their grants, not the caller's permissions
            found[arn(run, resource)] = (key_arn, service)
    return found


# The data-plane actions that need the key, per service, and whether they write (WRITE needs data keys).
WRITES = {"s3:PutObject", "sqs:SendMessage"}


def test_every_role_that_touches_encrypted_data_may_use_its_key_through_that_service(
    production: StackRun,
) -> None:
    region = production.config.region
    data = encrypted_data(production)
    assert len(data) >= 8
    touched: set[str] = set()
    for policy in production.of_type("aws:iam/rolePolicy:RolePolicy"):
        doc = policy.json("policy")
        needed: dict[tuple[str, str], set[str]] = {}
        for stmt in doc["Statement"]:
            for resource in stmt["Resource"]:
                for prefix, (key_arn, service) in data.items():
                    if resource == prefix or (prefix.endswith("/") and resource.startswith(prefix)):
                        touched.add(prefix)
                        access = "write" if WRITES & set(stmt["Action"]) else "read"
                        needed.setdefault((key_arn, service), set()).update(ROLE_ACTIONS[(service, access)])
        held: dict[tuple[str, str], set[str]] = {}
        for stmt in doc["Statement"]:
            kms = [a for a in stmt["Action"] if a.startswith("kms:")]
            if not kms:
                continue
            # Always scoped to one key and to the service that uses it for the role.
            assert len(stmt["Resource"]) == 1, (policy.name, stmt)
            via = stmt["Condition"]["StringEquals"]["kms:ViaService"]
            service = via.removesuffix(f".{region}.amazonaws.com")
            held.setdefault((stmt["Resource"][0], service), set()).update(kms)
        assert held == needed, policy.name
    untouched = {d for d in data if d.rsplit(":", 1)[-1] in UNTOUCHED_BY_ROLES}
    assert len(untouched) == len(UNTOUCHED_BY_ROLES)
    assert touched == set(data) - untouched, set(data) - untouched - touched


def test_resources_a_key_change_replaces_can_take_their_fixed_names_again(stack: StackRun) -> None:
    # ECR and ElastiCache fix the key at creation, so turning dataKmsEncryption on replaces the
    # repositories and the cache; both have fixed names (repository name, replication group id),
    # which the engine's default create-before-delete could never reuse.
    fixed = [*stack.of_type("aws:ecr/repository:Repository"), *stack.of_type(DATA_GROUP)]
    assert len(fixed) == 3
    assert all(r.delete_before_replace for r in fixed), [r.name for r in fixed if not r.delete_before_replace]
    # RDS takes a generated identifier (identifier_prefix), so it needs no such option; deletion
    # protection stops its replacement in production instead (README, "Customer managed keys").
    instance = stack.one("aws:rds/instance:Instance").inputs
    assert "identifierPrefix" in instance and "identifier" not in instance


def test_the_cache_key_admits_both_names_elasticache_uses(production: StackRun) -> None:
    # ElastiCache's KMS requests carry kms:ViaService elasticache.<region> or dax.<region> (ElastiCache
    # User Guide, "Using customer managed keys from AWS KMS"); a key admitting only the first refuses
    # some of its grants, and the group or its backups fail.
    region = production.config.region
    (stmt,) = [s for s in statements(production.one(KEY, "chat-key")) if s["Sid"] == "UseThroughElasticache"]
    assert stmt["Condition"]["StringEquals"]["kms:ViaService"] == [
        f"elasticache.{region}.amazonaws.com",
        f"dax.{region}.amazonaws.com",
    ]
