"""Customer managed KMS keys: production data under keys of ours, and every key's policy letting the
account administer the key but use it only through a service (or a service principal) pinned to the
account."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any

from .model import (
    Context,
    Resource,
    ResourceRule,
    Rule,
    StackRule,
    Violation,
    as_list,
    get_path,
    is_set,
    is_true,
    is_unknown,
    of_type,
    parse_json,
    referrers,
)
from .network import LOAD_BALANCERS
from .s3 import BUCKETS, ENCRYPTION

KMS_KEY = "aws:kms/key:Key"
TABLE = "aws:dynamodb/table:Table"
QUEUE = "aws:sqs/queue:Queue"
TOPIC = "aws:sns/topic:Topic"
SECRETS_MANAGER_SECRET = "aws:secretsmanager/secret:Secret"  # noqa: S105 - a resource type
REPOSITORY = "aws:ecr/repository:Repository"
REPLICATION_GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"
DB_INSTANCE = "aws:rds/instance:Instance"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
# S3's default encryptions under a KMS key (S3 API Reference, ServerSideEncryptionByDefault).
KMS_SSE = frozenset({"aws:kms", "aws:kms:dsse"})

# Actions that encrypt, decrypt, or hand the key to someone (a grant confers the others), lower-cased
# (KMS Developer Guide, "AWS KMS permissions"). A statement's action patterns are matched against
# them, so kms:Create* (kms:CreateGrant) and kms:* count.
CRYPTO_ACTIONS = (
    "kms:encrypt",
    "kms:decrypt",
    "kms:reencryptfrom",
    "kms:reencryptto",
    "kms:generatedatakey",
    "kms:generatedatakeypair",
    "kms:generatedatakeywithoutplaintext",
    "kms:generatedatakeypairwithoutplaintext",
    "kms:creategrant",
)
# Conditions that confine a use of the key to a service acting for this account.
CONFINING_KEYS = (
    "kms:viaservice",
    "kms:calleraccount",
    "aws:sourceaccount",
    "aws:sourcearn",
    "kms:encryptioncontext:",
)


def _aws_managed(key_id: Any) -> bool:
    """`alias/aws/<service>` (or its ARN) names the AWS managed key, which passes a "key is set"
    check but is not ours: its policy is AWS's and cannot be narrowed."""
    return isinstance(key_id, str) and ("alias/aws/" in key_id)


def _our_key(value: Any, what: str, prop: str) -> list[str]:
    if not is_set(value):
        return [f"{what} uses an AWS key: set {prop} to a customer managed key of the stack"]
    if _aws_managed(value):
        return [f"{what} names the AWS managed key ({value}): set {prop} to a customer managed key"]
    return []


def _customer_managed(resource: Resource, ctx: Context) -> list[str]:
    t = resource.type
    if t == TABLE:
        return _our_key(
            resource.get("serverSideEncryption", "kmsKeyArn"), "table", "serverSideEncryption.kmsKeyArn"
        )
    if t == QUEUE:
        return _our_key(resource.get("kmsMasterKeyId"), "queue", "kmsMasterKeyId")
    if t == TOPIC:
        return _our_key(resource.get("kmsMasterKeyId"), "topic", "kmsMasterKeyId")
    if t == SECRETS_MANAGER_SECRET:
        return _our_key(resource.get("kmsKeyId"), "secret", "kmsKeyId")
    if t == LOG_GROUP:
        return _our_key(resource.get("kmsKeyId"), "log group", "kmsKeyId")
    if t == REPLICATION_GROUP:
        return _our_key(resource.get("kmsKeyId"), "cache", "kmsKeyId")
    if t == REPOSITORY:
        configs = as_list(resource.get("encryptionConfigurations"))
        config = configs[0] if configs else {}
        if is_unknown(config):
            return []
        if get_path(config, "encryptionType") != "KMS":
            return [
                'repository uses AES-256: set encryptionConfigurations[0] to encryptionType "KMS" with kmsKey'
            ]
        return _our_key(get_path(config, "kmsKey"), "repository", "encryptionConfigurations[0].kmsKey")
    if t == DB_INSTANCE:
        problems = _our_key(resource.get("kmsKeyId"), "database storage", "kmsKeyId")
        if is_true(resource.get("performanceInsightsEnabled")):
            problems += _our_key(
                resource.get("performanceInsightsKmsKeyId"),
                "Performance Insights",
                "performanceInsightsKmsKeyId",
            )
        if is_true(resource.get("manageMasterUserPassword")):
            problems += _our_key(
                resource.get("masterUserSecretKmsKeyId"), "master password secret", "masterUserSecretKmsKeyId"
            )
        return problems
    return []


def receives_alb_logs(bucket: Resource, resources: Sequence[Resource]) -> bool:
    """Does a load balancer write its access logs into `bucket` (accessLogs.bucket names it)?"""
    for lb in of_type(resources, *LOAD_BALANCERS):
        if bucket.urn in lb.property_dependencies.get("accessLogs", ()):
            return True
        name = lb.get("accessLogs", "bucket")
        if isinstance(name, str) and name in bucket.identities:
            return True
    return False


def _bucket_key(bucket: Resource, resources: Sequence[Resource]) -> str | None:
    if receives_alb_logs(bucket, resources):
        # "The only server-side encryption option that's supported is Amazon S3-managed keys
        # (SSE-S3)" (ELB User Guide for Application Load Balancers, "Enable access logs", bucket
        # requirements): the rule alb-access-log-bucket-sse-s3 holds it there.
        return None
    configs = referrers(bucket, resources, ENCRYPTION, "bucket")
    if not configs:
        return "has no default encryption: give it a customer managed key"
    for config in configs:
        rules = config.get("rules")
        if is_unknown(rules):
            return None
        for rule in as_list(rules):
            default = get_path(rule, "applyServerSideEncryptionByDefault")
            if is_unknown(default):
                return None
            algorithm = get_path(default, "sseAlgorithm")
            if algorithm in KMS_SSE:
                problems = _our_key(
                    get_path(default, "kmsMasterKeyId"), "default encryption", "kmsMasterKeyId"
                )
                return problems[0] if problems else None
    return "is encrypted with S3-managed keys (SSE-S3): set sseAlgorithm aws:kms with a customer managed key"


def _customer_managed_keys(resources: Sequence[Resource], ctx: Context) -> list[Violation]:
    found = [Violation(r.urn, m) for r in resources for m in _customer_managed(r, ctx)]
    for bucket in of_type(resources, *BUCKETS):
        problem = _bucket_key(bucket, resources)
        if problem:
            found.append(Violation(bucket.urn, f"bucket '{bucket.name}' {problem}"))
    return found


def _lower_keys(value: Any) -> list[str]:
    """Every condition key of a statement's Condition block, lower-cased (keys are case-insensitive)."""
    if not isinstance(value, dict):
        return []
    return [key.lower() for operator in value.values() if isinstance(operator, dict) for key in operator]


def _key_policy(key: Resource, ctx: Context) -> list[str]:
    policy = parse_json(key.get("policy"))
    if policy is None:
        # No policy: KMS applies its default, which gives the account root kms:* (IAM decides use).
        return ["key has no policy (KMS's default lets IAM grant any use): give it a key policy"]
    if is_unknown(policy):
        return []
    problems: list[str] = []
    keeps_put_policy = False
    for stmt in as_list(get_path(policy, "Statement")):
        if not isinstance(stmt, dict) or stmt.get("Effect") != "Allow":
            continue
        actions = [str(a).lower() for a in as_list(stmt.get("Action"))]
        if any(fnmatchcase("kms:putkeypolicy", a) for a in actions):
            keeps_put_policy = True
        crypto = [a for a in actions if any(fnmatchcase(name, a) for name in CRYPTO_ACTIONS)]
        if not crypto:
            continue
        confined = [k for k in _lower_keys(stmt.get("Condition")) if k.startswith(CONFINING_KEYS)]
        if not confined:
            sid = stmt.get("Sid") or "a statement"
            problems.append(
                f"{sid} allows {', '.join(sorted(set(crypto)))} without kms:ViaService, kms:CallerAccount, "
                "aws:SourceAccount/SourceArn or an encryption context: anyone its principal's IAM "
                "policies allow could use the key directly"
            )
    if not keeps_put_policy:
        # CreateKey / PutKeyPolicy, BypassPolicyLockoutSafetyCheck: KMS refuses such a policy.
        problems.append("no statement allows kms:PutKeyPolicy: KMS refuses a policy that locks the key")
    return problems


RULES: list[Rule] = [
    StackRule(
        name="kms-customer-managed-keys",
        control="Motion ENC-3",
        description="In production, tables, queues, topics, secrets, image repositories, the cache, the "
        "database (storage, Performance Insights, master password), log groups and buckets (but the "
        "load balancer's access log bucket, which takes SSE-S3 only) are encrypted with customer managed keys.",
        severity="medium",
        remediation="Set motion:dataKmsEncryption true: each component then encrypts its data with its own key "
        "(components/aws/kms.py DataKey) and motion:logsKmsEncryption true (LogKey).",
        resource_types=(
            TABLE,
            QUEUE,
            TOPIC,
            SECRETS_MANAGER_SECRET,
            REPOSITORY,
            REPLICATION_GROUP,
            DB_INSTANCE,
            LOG_GROUP,
            *BUCKETS,
        ),
        check=_customer_managed_keys,
        production_only=True,
    ),
    ResourceRule(
        name="kms-key-policy-least-privilege",
        control="Motion IAM-3",
        description="KMS key policies let the account administer a key but use it only through a service "
        "or service principal confined to the account, and keep kms:PutKeyPolicy.",
        severity="high",
        remediation="Build key policies from components/aws/kms.py: admin_statement (no cryptographic actions), "
        "via_service_statement per service, service principals with aws:SourceAccount or an encryption context.",
        resource_types=(KMS_KEY,),
        check=_key_policy,
    ),
]
