"""Files: private S3 bucket for the bytes, RDS PostgreSQL for metadata and permissions, and the Upload and
Download services (one image, two ECS services) that hand out short-lived pre-signed URLs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.app_code import APP_CODE
from components.aws.buckets import PrivateBucket, PrivateBucketArgs
from components.aws.container_image import ContainerImage, ContainerImageArgs
from components.aws.dashboard import Graph, Metric, Panel, lambda_graphs
from components.aws.fargate_service import FargateService
from components.aws.fargate_types import Attachment, FargateServiceArgs, TaskCount
from components.aws.iam import statement
from components.aws.kms import READ, WRITE, DataKey, DataKeyArgs
from components.config.model import (
    AuthConfig,
    DatabaseConfig,
    FilesConfig,
    Scaling,
)
from components.facts import FILES
from components.files.database import Database, DatabaseArgs
from components.files.migration import FilesMigration, FilesMigrationArgs
from components.platform.listener_priorities import LISTENER_PRIORITIES

# Objects the pre-signed POST created but the client never completed carry this tag until completion.
PENDING_TAG = ("upload-state", "pending")
LISTENER_PRIORITY = {role: LISTENER_PRIORITIES[f"files-{role}"] for role in ("upload", "download")}


@dataclass(frozen=True)
class FilesArgs:
    name_prefix: str
    files: FilesConfig
    database: DatabaseConfig
    auth: AuthConfig
    upload: Scaling
    download: Scaling
    cors_origins: Sequence[str]
    isolated_subnet_ids: Sequence[pulumi.Input[str]]
    attachment: Attachment
    kms_encryption: bool
    versioning: bool
    # The stack's SDK layer, for the migration's task runner Lambda.
    sdk_layer_arn: pulumi.Input[str]


class Files(pulumi.ComponentResource):
    def __init__(self, name: str, args: FilesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("motion:files:Files", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix = f"{args.name_prefix}-files"

        key = DataKey.optional(
            args.kms_encryption,
            DataKeyArgs(
                name=name,
                alias=prefix,
                description=f"{prefix}: objects, database storage and Performance Insights, master "
                "password secret, image repository",
                services=("s3", "rds", "secretsmanager", "ecr"),
                protected=args.versioning,
            ),
            self,
        )
        self.key = key
        self.bucket = PrivateBucket(
            f"{name}-bucket",
            PrivateBucketArgs(
                bucket_prefix=f"{prefix}-",
                kms_key_arn=key.arn if key else None,
                versioning=args.versioning,
                force_destroy=not args.versioning,
                lifecycle_rules=(
                    aws.s3.BucketLifecycleConfigurationRuleArgs(
                        id="expire-never-completed-uploads",
                        status="Enabled",
                        filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(
                            tag=aws.s3.BucketLifecycleConfigurationRuleFilterTagArgs(
                                key=PENDING_TAG[0], value=PENDING_TAG[1]
                            )
                        ),
                        expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=2),
                    ),
                ),
                cors_rules=(
                    aws.s3.BucketCorsConfigurationCorsRuleArgs(
                        # Browsers POST the pre-signed form and GET the pre-signed URL straight from S3.
                        allowed_methods=["GET", "HEAD", "POST"],
                        allowed_origins=list(args.cors_origins),
                        allowed_headers=["*"],
                        expose_headers=["ETag"],
                        max_age_seconds=3000,
                    ),
                ),
            ),
            opts=child,
        )

        self.image = ContainerImage(
            f"{name}-image",
            ContainerImageArgs(
                context=APP_CODE,
                repository_name=prefix,
                dockerfile="files/Dockerfile",
                force_delete=not args.versioning,
                kms_key_arn=key.arn if key else None,
            ),
            opts=child,
        )

        self.database = Database(
            f"{name}-db",
            DatabaseArgs(
                name_prefix=prefix,
                config=args.database,
                vpc_id=args.attachment.vpc_id,
                subnet_ids=args.isolated_subnet_ids,
                alarm_topic_arn=args.attachment.alarm_topic_arn,
                kms_key_arn=key.arn if key else None,
            ),
            opts=child,
        )
        # TLS that checks the server's name against the RDS CAs in the image, for every client.
        database_tls: dict[str, pulumi.Input[str]] = {
            "DATABASE_HOST": self.database.address,
            "DATABASE_PORT": "5432",
            "DATABASE_NAME": self.database.db_name,
            "DATABASE_SSLMODE": "verify-full",
            "DATABASE_SSLROOTCERT": FILES.rds_ca_bundle,
        }
        # The services hold no database secret: they log in as the application role with an IAM token
        # per new connection (signed with the task role's credentials), so nothing they were handed at
        # start-up can go stale when RDS rotates the master password.
        environment: dict[str, pulumi.Input[str]] = {
            "FILES_BUCKET": self.bucket.name,
            "AWS_REGION": args.attachment.region,
            **database_tls,
            "DATABASE_AUTH": "iam",
            "DATABASE_USER": FILES.app_role,
            "AUTH_ISSUER": args.auth.issuer,
            "AUTH_JWKS_URL": args.auth.jwks_url,
            "AUTH_AUDIENCE": args.auth.audience,
            "CORS_ORIGINS": ",".join(args.cors_origins),
            "MAX_UPLOAD_BYTES": str(args.files.max_upload_bytes),
            "ALLOWED_CONTENT_TYPES": ",".join(args.files.allowed_content_types),
            "PRESIGN_TTL_SECONDS": str(args.files.presign_ttl_seconds),
            "MAX_SHARE_DAYS": str(args.files.max_share_days),
            "MAX_PENDING_UPLOADS_PER_USER": str(args.files.max_pending_uploads_per_user),
            "MAX_PROJECT_BYTES": str(args.files.max_project_bytes),
            "LOG_LEVEL": "INFO",
        }
        # The schema first: new service code only starts once its migrations are in (the services
        # refuse to start on a schema without them).
        self.migration = FilesMigration(
            f"{name}-migrate",
            FilesMigrationArgs(
                name_prefix=args.name_prefix,
                image=self.image.image_ref,
                image_user=self.image.user,
                repository_arn=self.image.repository_arn,
                database=self.database,
                database_tls=database_tls,
                master_secret_key=key,
                attachment=args.attachment,
                sdk_layer_arn=args.sdk_layer_arn,
            ),
            opts=child,
        )
        connect = statement(
            ["rds-db:connect"], [self.database.connect_arn(FILES.app_role)], sid="DatabaseLogin"
        )
        self.services: dict[str, FargateService] = {}
        for role, scaling in (("upload", args.upload), ("download", args.download)):
            self.services[role] = FargateService(
                f"{name}-{role}",
                FargateServiceArgs(
                    name_prefix=args.name_prefix,
                    service=role,
                    image=self.image.image_ref,
                    repository_arn=self.image.repository_arn,
                    container_user=self.image.user,
                    port=FILES.default_port,
                    liveness_path=FILES.liveness_path,
                    readiness_path=FILES.readiness_path,
                    path_patterns=list(FILES.alb_path_patterns[role]),
                    listener_priority=LISTENER_PRIORITY[role],
                    scaling=TaskCount(scaling.desired, scaling.min, scaling.max),
                    attachment=args.attachment,
                    environment={**environment, "FILES_ROLE": role, "PORT": str(FILES.default_port)},
                    task_role_statements=[*self._bucket_statements(role, key), connect],
                    deploy_after=[self.migration.invocation],
                ),
                opts=child,
            )
            self.database.admit(f"{name}-{role}", self.services[role].security_group)

        self.bucket_name = self.bucket.name
        own = FILES.metrics
        self.panel = Panel(
            "Files: the service's own metrics and the migration runner",
            [
                Graph(
                    f"Files {role} service: own metrics",
                    [
                        Metric(
                            own.namespace,
                            metric,
                            "Sum",
                            {own.dimension: FILES.metrics_dimension_value(role)},
                            metric,
                        )
                        for metric in own.names
                    ],
                    period_seconds=60,
                )
                for role in self.services
            ]
            + lambda_graphs([("migration runner", self.migration.runner.name)]),
        )
        self.register_outputs(
            {
                "bucket": self.bucket.name,
                "database_address": self.database.address,
                "repository_url": self.image.repository.repository_url,
            }
        )

    def _bucket_statements(self, role: str, key: DataKey | None) -> list[dict[str, object]]:
        objects = pulumi.Output.concat(self.bucket.arn, "/", FILES.object_key_prefix, "*")
        statements = [statement(list(FILES.s3_object_actions[role]), [objects], sid="UploadObjects")]
        if FILES.s3_bucket_actions[role]:
            # s3:ListBucket is here only so that S3 answers a HEAD of a not-yet-uploaded key with 404,
            # not 403 ("If you have the s3:ListBucket permission on the bucket, Amazon S3 returns an
            # HTTP status code 404 Not Found error. If you don't [...] 403 Forbidden", HeadObject,
            # Permissions: https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html).
            # It carries no condition on purpose. s3:prefix is a condition key of the list actions
            # (ListBucket, ListBucketVersions), set from a listing's `prefix` parameter; HeadObject is
            # authorized as s3:GetObject, whose keys do not include it (Service Authorization
            # Reference, "Actions, resources, and condition keys for Amazon S3"), and "If the key that
            # you specify in a policy condition is not present in the request context, the values do
            # not match and the condition is false" (IAM User Guide, "Condition operators"). So the
            # documented reading of `StringLike s3:prefix uploads/*` is that it never grants the
            # ListBucket a HEAD is judged by, and S3 answers 403. (Ceph's RGW judges it with
            # s3:prefix set to the key and says AWS does the same, ceph/ceph#68577; AWS documents
            # no such rule.) Without the condition the answer is 404 under either reading. It costs
            # nothing: this bucket holds only the service's objects, all under uploads/, which this
            # role may already list and read. The code still copes with a 403 (files_service/storage.py).
            statements.append(
                statement(list(FILES.s3_bucket_actions[role]), [self.bucket.arn], sid="ListBucketFor404")
            )
        if key is not None:
            # SSE-KMS: writers need data keys, readers need to decrypt them.
            statements.append(key.use_statement("s3", WRITE if role == "upload" else READ, "ObjectKey"))
        return statements
