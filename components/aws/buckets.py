"""A private S3 bucket with the settings every bucket of ours needs (pulumi-aws 7: one resource each)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws.iam import policy_document


@dataclass(frozen=True)
class PrivateBucketArgs:
    bucket_prefix: str
    # None: SSE-S3. A KMS key ARN: SSE-KMS with a bucket key (fewer, cheaper KMS calls).
    kms_key_arn: pulumi.Input[str] | None = None
    versioning: bool = False
    force_destroy: bool = True
    # Extra lifecycle rules (s3.BucketLifecycleConfigurationRuleArgs); abandoned multipart uploads are always cleaned.
    lifecycle_rules: tuple[aws.s3.BucketLifecycleConfigurationRuleArgs, ...] = ()
    # Extra policy statements besides the TLS-only deny, made from the bucket's ARN.
    extra_statements: Callable[[pulumi.Output[str]], Sequence[dict[str, Any]]] | None = None
    cors_rules: tuple[aws.s3.BucketCorsConfigurationCorsRuleArgs, ...] = field(default=())


class PrivateBucket(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: PrivateBucketArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("motion:storage:PrivateBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.bucket = aws.s3.Bucket(
            name, bucket_prefix=args.bucket_prefix, force_destroy=args.force_destroy, opts=child
        )
        self.arn = self.bucket.arn
        self.name = self.bucket.bucket
        block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=self.bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        )
        default = (
            aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                sse_algorithm="aws:kms", kms_master_key_id=args.kms_key_arn
            )
            if args.kms_key_arn is not None
            else aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                sse_algorithm="AES256"
            )
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=self.bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=default,
                    bucket_key_enabled=args.kms_key_arn is not None,
                )
            ],
            opts=child,
        )
        if args.versioning:
            aws.s3.BucketVersioning(
                f"{name}-versioning",
                bucket=self.bucket.id,
                versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
                opts=child,
            )
        rules = [
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="abort-incomplete-multipart-uploads",
                status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                    days_after_initiation=1
                ),
            ),
            *args.lifecycle_rules,
        ]
        if args.versioning:
            rules.append(
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-noncurrent-versions",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                        noncurrent_days=90
                    ),
                )
            )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle", bucket=self.bucket.id, rules=rules, opts=child
        )
        if args.cors_rules:
            aws.s3.BucketCorsConfiguration(
                f"{name}-cors", bucket=self.bucket.id, cors_rules=list(args.cors_rules), opts=child
            )
        deny_plain_http = {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [self.bucket.arn, pulumi.Output.concat(self.bucket.arn, "/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
        self.policy = aws.s3.BucketPolicy(
            f"{name}-policy",
            bucket=self.bucket.id,
            policy=policy_document(
                deny_plain_http, *(args.extra_statements(self.bucket.arn) if args.extra_statements else ())
            ),
            # The public access block must exist first, or S3 may judge the policy against an open bucket.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[block]),
        )
        self.register_outputs({"bucket": self.bucket.bucket, "arn": self.bucket.arn})
