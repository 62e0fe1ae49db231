"""S3: pulumi-aws 7 configures a bucket through separate resources, so every S3 rule is a stack rule
that pairs each bucket with the settings resources whose `bucket` refers to it (see `refers_to`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .model import (
    Context,
    Resource,
    Rule,
    StackRule,
    Violation,
    as_list,
    get_path,
    is_true,
    is_unknown,
    of_type,
    parse_json,
    referrers,
)

BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
PUBLIC_ACCESS_BLOCKS = ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",)
ENCRYPTION = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
)
POLICIES = ("aws:s3/bucketPolicy:BucketPolicy",)
OWNERSHIP = ("aws:s3/bucketOwnershipControls:BucketOwnershipControls",)
ACLS = ("aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2")
LIFECYCLES = (
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2",
)
VERSIONING = ("aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2")

PUBLIC_ACCESS_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
SSE_ALGORITHMS = frozenset({"AES256", "aws:kms", "aws:kms:dsse"})

BucketCheck = Callable[[Resource, Sequence[Resource]], str | None]


def _per_bucket(check: BucketCheck) -> Callable[[Sequence[Resource], Context], list[Violation]]:
    def run(resources: Sequence[Resource], ctx: Context) -> list[Violation]:
        found: list[Violation] = []
        for bucket in of_type(resources, *BUCKETS):
            message = check(bucket, resources)
            if message:
                found.append(Violation(bucket.urn, f"bucket '{bucket.name}': {message}"))
        return found

    return run


def _settings(bucket: Resource, resources: Sequence[Resource], types: tuple[str, ...]) -> list[Resource]:
    return referrers(bucket, resources, types, "bucket")


def _public_access(bucket: Resource, resources: Sequence[Resource]) -> str | None:
    blocks = _settings(bucket, resources, PUBLIC_ACCESS_BLOCKS)
    if not blocks:
        return "has no BucketPublicAccessBlock"
    if any(all(is_true(b.get(flag)) for flag in PUBLIC_ACCESS_FLAGS) for b in blocks):
        return None
    off = sorted({flag for b in blocks for flag in PUBLIC_ACCESS_FLAGS if not is_true(b.get(flag))})
    return f"public access block leaves {', '.join(off)} off"


def _denies_insecure_transport(statement: Any) -> bool:
    if not isinstance(statement, dict) or statement.get("Effect") != "Deny":
        return False
    principal = statement.get("Principal")
    if principal != "*" and not (isinstance(principal, dict) and "*" in as_list(principal.get("AWS"))):
        return False
    if not {"s3:*", "*"} & set(as_list(statement.get("Action"))):
        return False
    secure = get_path(statement, "Condition", "Bool", "aws:SecureTransport")
    return any(str(v).lower() == "false" for v in as_list(secure))


def _tls_only(bucket: Resource, resources: Sequence[Resource]) -> str | None:
    policies = _settings(bucket, resources, POLICIES)
    if not policies:
        return "has no bucket policy denying requests without TLS"
    for policy in policies:
        document = parse_json(policy.get("policy"))
        if is_unknown(document):
            return None
        if any(_denies_insecure_transport(s) for s in as_list(get_path(document, "Statement"))):
            return None
    return 'bucket policy has no Deny of "s3:*" for Principal "*" when aws:SecureTransport is "false"'


def _encrypted(bucket: Resource, resources: Sequence[Resource]) -> str | None:
    configs = _settings(bucket, resources, ENCRYPTION)
    if not configs:
        return "has no server-side encryption configuration"
    for config in configs:
        rules = config.get("rules")
        if is_unknown(rules):
            return None
        for rule in as_list(rules):
            algorithm = get_path(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm")
            if is_unknown(algorithm) or algorithm in SSE_ALGORITHMS:
                return None
    return f"encryption configuration sets no default algorithm ({' | '.join(sorted(SSE_ALGORITHMS))})"


def _no_acls(bucket: Resource, resources: Sequence[Resource]) -> str | None:
    if _settings(bucket, resources, ACLS):
        return "is managed with an ACL (BucketAcl)"
    for controls in _settings(bucket, resources, OWNERSHIP):
        ownership = controls.get("rule", "objectOwnership")
        if is_unknown(ownership) or ownership == "BucketOwnerEnforced":
            return None
    return 'has no BucketOwnershipControls with objectOwnership "BucketOwnerEnforced" (ACLs disabled)'


def _enabled(status: Any) -> bool:
    return is_unknown(status) or status == "Enabled"


def _lifecycle(bucket: Resource, resources: Sequence[Resource]) -> str | None:
    for config in _settings(bucket, resources, LIFECYCLES):
        rules = config.get("rules")
        if is_unknown(rules) or any(_enabled(get_path(r, "status")) for r in as_list(rules)):
            return None
    return "has no lifecycle configuration with an enabled rule"


def _versioning(bucket: Resource, resources: Sequence[Resource]) -> str | None:
    for config in _settings(bucket, resources, VERSIONING):
        status = config.get("versioningConfiguration", "status")
        if is_unknown(status) or status == "Enabled":
            return None
    return 'has no BucketVersioning with status "Enabled"'


RULES: list[Rule] = [
    StackRule(
        name="s3-public-access-blocked",
        control="FSBP S3.8",
        description="S3 buckets block all public access.",
        severity="critical",
        remediation="Give the bucket an aws.s3.BucketPublicAccessBlock(bucket=bucket.id) with blockPublicAcls, "
        "blockPublicPolicy, ignorePublicAcls and restrictPublicBuckets all true.",
        resource_types=BUCKETS,
        check=_per_bucket(_public_access),
    ),
    StackRule(
        name="s3-tls-only",
        control="FSBP S3.5",
        description="S3 buckets refuse requests that do not use TLS.",
        severity="high",
        remediation='Attach a bucket policy with a statement {"Effect": "Deny", "Principal": "*", "Action": "s3:*", '
        '"Resource": [bucket ARN, bucket ARN + "/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}.',
        resource_types=BUCKETS,
        check=_per_bucket(_tls_only),
    ),
    StackRule(
        name="s3-encryption",
        # Security Hub retired S3.4 once S3 began encrypting every new object by default; Motion keeps
        # it as an explicit requirement so the algorithm (and the KMS key in production) is chosen,
        # not inherited from an account default.
        control="FSBP S3.4",
        description="S3 buckets have default server-side encryption configured.",
        severity="medium",
        remediation="Add aws.s3.BucketServerSideEncryptionConfiguration(bucket=bucket.id) with a rule whose "
        'applyServerSideEncryptionByDefault.sseAlgorithm is "AES256" or "aws:kms".',
        resource_types=BUCKETS,
        check=_per_bucket(_encrypted),
    ),
    StackRule(
        name="s3-no-acls",
        control="FSBP S3.12",
        description="S3 buckets disable ACLs (bucket owner enforced); access is granted by policy only.",
        severity="medium",
        remediation='Add aws.s3.BucketOwnershipControls(bucket=bucket.id, rule={"objectOwnership": '
        '"BucketOwnerEnforced"}) and remove any aws.s3.BucketAcl.',
        resource_types=BUCKETS,
        check=_per_bucket(_no_acls),
    ),
    StackRule(
        name="s3-lifecycle",
        control="FSBP S3.13",
        description="S3 buckets have a lifecycle configuration.",
        severity="low",
        remediation="Add aws.s3.BucketLifecycleConfiguration(bucket=bucket.id) with at least one enabled rule "
        "(e.g. abort incomplete multipart uploads, expire noncurrent versions).",
        resource_types=BUCKETS,
        check=_per_bucket(_lifecycle),
    ),
    StackRule(
        name="s3-versioning",
        control="NIST S3.14",
        description="In production, S3 buckets keep object versions so deletes and overwrites can be undone.",
        severity="medium",
        remediation='Add aws.s3.BucketVersioning(bucket=bucket.id, versioning_configuration={"status": "Enabled"}) '
        "when the stack's dataProtection is on.",
        resource_types=BUCKETS,
        check=_per_bucket(_versioning),
        production_only=True,
    ),
]
