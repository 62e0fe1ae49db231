"""Customer managed KMS keys: production data under keys of ours, and every key's policy letting the
account administer the key but use it only through a service (or a service principal) pinned to the
account."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from .model import (
    Context,
    Resource,
    ResourceRule,
    Rule,
    as_list,
    get_path,
    is_set,
    is_true,
    is_unknown,
    parse_json,
)

KMS_KEY = "aws:kms/key:Key"
TABLE = "aws:dynamodb/table:Table"
QUEUE = "aws:sqs/queue:Queue"
TOPIC = "aws:sns/topic:Topic"
SECRETS_MANAGER_SECRET = "aws:secretsmanager/secret:Secret"  # noqa: S105 - a resource type
REPOSITORY = "aws:ecr/repository:Repository"
REPLICATION_GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"
DB_INSTANCE = "aws:rds/instance:Instance"

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
    ResourceRule(
        name="kms-customer-managed-keys",
        control="Motion ENC-3",
        description="In production, tables, queues, topics, secrets, image repositories, the cache and the "
        "database (storage, Performance Insights, master password) are encrypted with customer managed keys.",
        severity="medium",
        remediation="Set motion:dataKmsEncryption true: each component then encrypts its data with its own key "
        "(components/aws/kms.py DataKey).",
        resource_types=(
            TABLE,
            QUEUE,
            TOPIC,
            SECRETS_MANAGER_SECRET,
            REPOSITORY,
            REPLICATION_GROUP,
            DB_INSTANCE,
        ),
        check=_customer_managed,
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
