"""For every policy rule, resources that pass it and resources that violate it.

Each case is as small as the rule allows, built from a compliant baseline with one thing changed,
so a violating case fails for the reason its label gives. Props are written the way the engine
hands them to CrossGuard: camelCase keys, numbers as floats, JSON documents as strings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from policy.motion_policy.model import UNKNOWN, Resource

REGION = "eu-west-1"
ACCOUNT = "123456789012"


def res(
    type_: str,
    name: str,
    props: dict[str, Any] | None = None,
    *,
    stack: str = "dev",
    deps: dict[str, list[str]] | None = None,
    provider: str | None = None,
) -> Resource:
    return Resource(
        type=type_,
        name=name,
        urn=urn(type_, name, stack),
        props=props or {},
        provider=provider,
        id=f"{name}-id",
        property_dependencies=deps or {},
    )


def urn(type_: str, name: str, stack: str = "dev") -> str:
    return f"urn:pulumi:{stack}::motion::{type_}::{name}"


def but(resource: Resource, **props: Any) -> Resource:
    """The resource with some props changed; a value of None removes the prop."""
    merged = {**resource.props, **props}
    return replace(resource, props={k: v for k, v in merged.items() if v is not None})


@dataclass(frozen=True)
class Case:
    rule: str
    label: str
    violates: bool
    resources: tuple[Resource, ...]
    stack: str = "dev"

    @property
    def id(self) -> str:
        return f"{self.rule}:{'violates' if self.violates else 'passes'}:{self.label}"


def passes(rule: str, label: str, *resources: Resource, stack: str = "dev") -> Case:
    return Case(rule, label, False, resources, stack)


def violates(rule: str, label: str, *resources: Resource, stack: str = "dev") -> Case:
    return Case(rule, label, True, resources, stack)


PROD = "production"

# --- S3 --------------------------------------------------------------------------------------------

BUCKET = "aws:s3/bucket:Bucket"
BUCKET_ID = "files-id"
bucket = res(BUCKET, "files", {"bucket": "motion-dev-files"})
other_bucket = res(BUCKET, "logs", {"bucket": "motion-dev-logs"})
public_access_block = res(
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "files-pab",
    {
        "bucket": BUCKET_ID,
        "blockPublicAcls": True,
        "blockPublicPolicy": True,
        "ignorePublicAcls": True,
        "restrictPublicBuckets": True,
    },
)
DENY_INSECURE_TRANSPORT: dict[str, Any] = {
    "Sid": "DenyInsecureTransport",
    "Effect": "Deny",
    "Principal": "*",
    "Action": "s3:*",
    "Resource": ["arn:aws:s3:::motion-dev-files", "arn:aws:s3:::motion-dev-files/*"],
    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
}
TLS_ONLY_POLICY = {"Version": "2012-10-17", "Statement": [DENY_INSECURE_TRANSPORT]}
bucket_policy = res(
    "aws:s3/bucketPolicy:BucketPolicy",
    "files-policy",
    {"bucket": BUCKET_ID, "policy": json.dumps(TLS_ONLY_POLICY)},
)
encryption = res(
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "files-sse",
    {"bucket": BUCKET_ID, "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}}]},
)
ownership = res(
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    "files-ownership",
    {"bucket": BUCKET_ID, "rule": {"objectOwnership": "BucketOwnerEnforced"}},
)
lifecycle = res(
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "files-lifecycle",
    {
        "bucket": BUCKET_ID,
        "rules": [
            {
                "id": "abort",
                "status": "Enabled",
                "abortIncompleteMultipartUpload": {"daysAfterInitiation": 1.0},
            }
        ],
    },
)
versioning = res(
    "aws:s3/bucketVersioning:BucketVersioning",
    "files-versioning",
    {"bucket": BUCKET_ID, "versioningConfiguration": {"status": "Enabled"}},
)


def in_preview(setting: Resource) -> Resource:
    """A setting of a bucket a preview has not created: the reference is unknown, the dependency known."""
    return replace(but(setting, bucket=UNKNOWN), property_dependencies={"bucket": [bucket.urn]})


S3_CASES = [
    passes("s3-public-access-blocked", "all four flags", bucket, public_access_block),
    passes(
        "s3-public-access-blocked", "preview: paired by dependency", bucket, in_preview(public_access_block)
    ),
    violates("s3-public-access-blocked", "no block", bucket),
    violates(
        "s3-public-access-blocked",
        "one flag off",
        bucket,
        but(public_access_block, restrictPublicBuckets=False),
    ),
    violates(
        "s3-public-access-blocked",
        "block of another bucket",
        bucket,
        other_bucket,
        but(public_access_block, bucket="logs-id"),
    ),
    passes("s3-tls-only", "deny without TLS", bucket, bucket_policy),
    passes("s3-tls-only", "preview: policy unknown", bucket, in_preview(but(bucket_policy, policy=UNKNOWN))),
    violates("s3-tls-only", "no policy", bucket),
    violates(
        "s3-tls-only",
        "policy without the TLS deny",
        bucket,
        but(
            bucket_policy,
            policy=json.dumps({"Statement": [{**DENY_INSECURE_TRANSPORT, "Condition": {}}]}),
        ),
    ),
    passes("s3-encryption", "SSE-KMS", bucket, encryption),
    passes(
        "s3-encryption",
        "SSE-S3",
        bucket,
        but(encryption, rules=[{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]),
    ),
    violates("s3-encryption", "no configuration", bucket),
    violates(
        "s3-encryption",
        "rule without default algorithm",
        bucket,
        but(encryption, rules=[{"bucketKeyEnabled": True}]),
    ),
    passes("s3-no-acls", "owner enforced", bucket, ownership),
    violates("s3-no-acls", "no ownership controls", bucket),
    violates("s3-no-acls", "object writer", bucket, but(ownership, rule={"objectOwnership": "ObjectWriter"})),
    violates(
        "s3-no-acls",
        "an ACL resource",
        bucket,
        ownership,
        res("aws:s3/bucketAcl:BucketAcl", "files-acl", {"bucket": BUCKET_ID, "acl": "private"}),
    ),
    passes("s3-lifecycle", "enabled rule", bucket, lifecycle),
    violates("s3-lifecycle", "no configuration", bucket),
    violates(
        "s3-lifecycle",
        "only disabled rules",
        bucket,
        but(lifecycle, rules=[{"id": "abort", "status": "Disabled"}]),
    ),
    passes("s3-versioning", "enabled", bucket, versioning, stack=PROD),
    violates("s3-versioning", "no versioning", bucket, stack=PROD),
    violates(
        "s3-versioning",
        "suspended",
        bucket,
        but(versioning, versioningConfiguration={"status": "Suspended"}),
        stack=PROD,
    ),
]

# --- SQS -------------------------------------------------------------------------------------------

QUEUE = "aws:sqs/queue:Queue"
DLQ_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:mail-dead-letters"
dead_letter_queue = res(
    QUEUE, "mail-dlq", {"name": "mail-dead-letters", "arn": DLQ_ARN, "sqsManagedSseEnabled": True}
)
queue = res(
    QUEUE,
    "mail",
    {
        "name": "mail-events",
        "sqsManagedSseEnabled": True,
        "redrivePolicy": json.dumps({"deadLetterTargetArn": DLQ_ARN, "maxReceiveCount": 5}),
    },
)

SQS_CASES = [
    passes("sqs-encryption", "SQS-managed SSE", queue),
    passes("sqs-encryption", "KMS key", but(queue, sqsManagedSseEnabled=None, kmsMasterKeyId="alias/motion")),
    violates("sqs-encryption", "neither", but(queue, sqsManagedSseEnabled=None)),
    violates("sqs-encryption", "SSE switched off", but(queue, sqsManagedSseEnabled=False)),
    passes("sqs-dead-letter-queue", "redrive to a DLQ found by ARN", queue, dead_letter_queue),
    passes(
        "sqs-dead-letter-queue",
        "preview: DLQ found by dependency",
        replace(
            but(queue, redrivePolicy=UNKNOWN),
            property_dependencies={"redrivePolicy": [dead_letter_queue.urn]},
        ),
        but(dead_letter_queue, arn=None),
    ),
    passes(
        "sqs-dead-letter-queue",
        "DLQ declared by a RedriveAllowPolicy resource",
        but(queue, redrivePolicy=json.dumps({"deadLetterTargetArn": "elsewhere", "maxReceiveCount": 5})),
        but(dead_letter_queue, arn=None),
        res(
            "aws:sqs/redriveAllowPolicy:RedriveAllowPolicy",
            "mail-dlq-allow",
            {"queueUrl": "mail-dlq-id", "redriveAllowPolicy": json.dumps({"redrivePermission": "allowAll"})},
        ),
    ),
    passes(
        "sqs-dead-letter-queue",
        "redrive as a RedrivePolicy resource",
        but(queue, redrivePolicy=None),
        dead_letter_queue,
        res(
            "aws:sqs/redrivePolicy:RedrivePolicy",
            "mail-redrive",
            {
                "queueUrl": "mail-id",
                "redrivePolicy": json.dumps({"deadLetterTargetArn": DLQ_ARN, "maxReceiveCount": 5}),
            },
        ),
    ),
    violates("sqs-dead-letter-queue", "no redrive", but(queue, redrivePolicy=None)),
    violates(
        "sqs-dead-letter-queue",
        "redrive without maxReceiveCount",
        but(queue, redrivePolicy=json.dumps({"deadLetterTargetArn": DLQ_ARN})),
        dead_letter_queue,
    ),
    violates(
        "sqs-dead-letter-queue",
        "denyAll is no DLQ declaration",
        but(queue, redrivePolicy=None, redriveAllowPolicy=json.dumps({"redrivePermission": "denyAll"})),
    ),
]

# --- RDS -------------------------------------------------------------------------------------------

database = res(
    "aws:rds/instance:Instance",
    "files-db",
    {
        "engine": "postgres",
        "engineVersion": "17",
        "instanceClass": "db.t4g.micro",
        "username": "motion_files",
        "manageMasterUserPassword": True,
        "storageEncrypted": True,
        "publiclyAccessible": False,
        "multiAz": True,
        "deletionProtection": True,
        "backupRetentionPeriod": 7.0,
        "autoMinorVersionUpgrade": True,
        "enabledCloudwatchLogsExports": ["postgresql", "upgrade"],
        "iamDatabaseAuthenticationEnabled": True,
        "monitoringInterval": 60.0,
        "monitoringRoleArn": f"arn:aws:iam::{ACCOUNT}:role/files-db-monitoring-role",
    },
)

RDS_CASES = [
    passes("rds-not-public", "private", database),
    passes("rds-not-public", "provider default", but(database, publiclyAccessible=None)),
    violates("rds-not-public", "public", but(database, publiclyAccessible=True)),
    passes("rds-encrypted", "encrypted", database),
    violates("rds-encrypted", "unset", but(database, storageEncrypted=None)),
    passes("rds-multi-az", "multi-AZ", database, stack=PROD),
    violates("rds-multi-az", "single-AZ", but(database, multiAz=False), stack=PROD),
    passes("rds-deletion-protection", "protected", database, stack=PROD),
    violates("rds-deletion-protection", "unprotected", but(database, deletionProtection=None), stack=PROD),
    passes("rds-backups", "7 days", database, stack=PROD),
    violates("rds-backups", "1 day", but(database, backupRetentionPeriod=1.0), stack=PROD),
    violates("rds-backups", "unset", but(database, backupRetentionPeriod=None), stack=PROD),
    passes("rds-minor-version-upgrades", "default", but(database, autoMinorVersionUpgrade=None)),
    violates("rds-minor-version-upgrades", "off", but(database, autoMinorVersionUpgrade=False)),
    violates("rds-minor-version-upgrades", "off as a string", but(database, autoMinorVersionUpgrade="false")),
    passes("rds-log-exports", "postgresql logs", database),
    violates("rds-log-exports", "none", but(database, enabledCloudwatchLogsExports=None)),
    violates(
        "rds-log-exports", "not the postgresql log", but(database, enabledCloudwatchLogsExports=["upgrade"])
    ),
    passes("rds-custom-admin-username", "custom", database),
    passes(
        "rds-custom-admin-username",
        "read replica",
        but(database, username=None, replicateSourceDb="files-db"),
    ),
    violates("rds-custom-admin-username", "postgres", but(database, username="postgres")),
    violates("rds-custom-admin-username", "Admin", but(database, username="Admin")),
    passes("rds-managed-master-password", "managed", database),
    violates("rds-managed-master-password", "not managed", but(database, manageMasterUserPassword=None)),
    violates(
        "rds-managed-master-password", "password in the program", but(database, password="hunter2-hunter2")
    ),
    passes("rds-iam-authentication", "enabled", database),
    passes(
        "rds-iam-authentication", "not known yet", but(database, iamDatabaseAuthenticationEnabled=UNKNOWN)
    ),
    passes(
        "rds-iam-authentication",
        "engine without IAM authentication",
        but(database, engine="sqlserver-ex", iamDatabaseAuthenticationEnabled=None),
    ),
    violates(
        "rds-iam-authentication",
        "unset (provider default off)",
        but(database, iamDatabaseAuthenticationEnabled=None),
    ),
    violates("rds-iam-authentication", "off", but(database, iamDatabaseAuthenticationEnabled=False)),
    passes("rds-enhanced-monitoring", "every 60 s with a role", database, stack=PROD),
    passes("rds-enhanced-monitoring", "not known yet", but(database, monitoringInterval=UNKNOWN), stack=PROD),
    violates("rds-enhanced-monitoring", "unset", but(database, monitoringInterval=None), stack=PROD),
    violates("rds-enhanced-monitoring", "off", but(database, monitoringInterval=0.0), stack=PROD),
    violates("rds-enhanced-monitoring", "no role", but(database, monitoringRoleArn=None), stack=PROD),
    violates(
        "rds-enhanced-monitoring", "interval RDS rejects", but(database, monitoringInterval=20.0), stack=PROD
    ),
    violates(
        "rds-iam-authentication", "off, as a string", but(database, iamDatabaseAuthenticationEnabled="false")
    ),
]

# --- ElastiCache -----------------------------------------------------------------------------------

cache = res(
    "aws:elasticache/replicationGroup:ReplicationGroup",
    "chat-redis",
    {
        "engine": "redis",
        "atRestEncryptionEnabled": True,
        "transitEncryptionEnabled": True,
        "authToken": "generated-secret-value-0123456789",
        "automaticFailoverEnabled": True,
        "multiAzEnabled": True,
        "numCacheClusters": 2.0,
    },
)

ELASTICACHE_CASES = [
    passes("elasticache-encryption-at-rest", "encrypted", cache),
    passes(
        "elasticache-encryption-at-rest", "encrypted, as a string", but(cache, atRestEncryptionEnabled="true")
    ),
    violates("elasticache-encryption-at-rest", "unset", but(cache, atRestEncryptionEnabled=None)),
    passes("elasticache-encryption-in-transit", "TLS", cache),
    violates("elasticache-encryption-in-transit", "off", but(cache, transitEncryptionEnabled=False)),
    violates(
        "elasticache-encryption-in-transit", "preferred mode", but(cache, transitEncryptionMode="preferred")
    ),
    passes("elasticache-auth", "auth token", cache),
    passes("elasticache-auth", "preview: token unknown", but(cache, authToken=UNKNOWN)),
    passes("elasticache-auth", "RBAC user group", but(cache, authToken=None, userGroupIds=["motion-chat"])),
    violates("elasticache-auth", "no auth", but(cache, authToken=None)),
    passes("elasticache-automatic-failover", "on", cache, stack=PROD),
    violates("elasticache-automatic-failover", "off", but(cache, automaticFailoverEnabled=False), stack=PROD),
    passes("elasticache-multi-az", "multi-AZ", cache, stack=PROD),
    violates("elasticache-multi-az", "not multi-AZ", but(cache, multiAzEnabled=None), stack=PROD),
    violates("elasticache-multi-az", "one node", but(cache, numCacheClusters=1.0), stack=PROD),
]

# --- DynamoDB --------------------------------------------------------------------------------------

table = res(
    "aws:dynamodb/table:Table",
    "chat-messages",
    {
        "hashKey": "project_id",
        "rangeKey": "sort_key",
        "serverSideEncryption": {"enabled": True},
        "pointInTimeRecovery": {"enabled": True},
        "deletionProtectionEnabled": True,
    },
)

DYNAMODB_CASES = [
    passes("dynamodb-kms-encryption", "KMS", table),
    violates("dynamodb-kms-encryption", "AWS-owned key", but(table, serverSideEncryption=None)),
    passes("dynamodb-point-in-time-recovery", "on", table, stack=PROD),
    violates(
        "dynamodb-point-in-time-recovery",
        "off",
        but(table, pointInTimeRecovery={"enabled": False}),
        stack=PROD,
    ),
    passes("dynamodb-deletion-protection", "on", table, stack=PROD),
    violates("dynamodb-deletion-protection", "off", but(table, deletionProtectionEnabled=None), stack=PROD),
]

# --- Lambda ----------------------------------------------------------------------------------------

function = res(
    "aws:lambda/function:Function",
    "mailer",
    {
        "runtime": "python3.13",
        "handler": "mailer.worker.handler",
        "loggingConfig": {"logFormat": "JSON", "logGroup": "/aws/lambda/motion-dev-mailer"},
        "environment": {
            "variables": {"MESSAGES_TABLE": "mail-messages", "API_KEY_SECRET_ARN": "arn:aws:secretsmanager:x"}
        },
    },
)
sqs_mapping = res(
    "aws:lambda/eventSourceMapping:EventSourceMapping",
    "mailing-ses-events-source",
    {
        "eventSourceArn": "arn:aws:sqs:us-east-1:123456789012:motion-dev-mail-ses-events",
        "functionName": "arn:aws:lambda:us-east-1:123456789012:function:motion-dev-mail-events",
        "functionResponseTypes": ["ReportBatchItemFailures"],
    },
)
permission = res(
    "aws:lambda/permission:Permission",
    "api-invoke",
    {
        "action": "lambda:InvokeFunction",
        "function": "motion-dev-mail-api",
        "principal": "apigateway.amazonaws.com",
        "sourceArn": f"arn:aws:execute-api:{REGION}:{ACCOUNT}:abc123/*/*",
    },
)
function_url = res(
    "aws:lambda/functionUrl:FunctionUrl",
    "mailer-url",
    {"functionName": "mailer", "authorizationType": "AWS_IAM"},
)

api_function = res(
    "aws:lambda/function:Function",
    "mail-api",
    {"name": "motion-dev-mail-api", "runtime": "python3.13", "reservedConcurrentExecutions": 100.0},
)

LAMBDA_CASES = [
    passes("lambda-api-reserved-concurrency", "reserved", api_function, permission, stack=PROD),
    passes(
        "lambda-api-reserved-concurrency",
        "not invoked by API Gateway",
        but(api_function, reservedConcurrentExecutions=None),
        but(permission, principal="events.amazonaws.com"),
        stack=PROD,
    ),
    passes(
        "lambda-api-reserved-concurrency",
        "not known yet",
        but(api_function, reservedConcurrentExecutions=UNKNOWN),
        permission,
        stack=PROD,
    ),
    violates(
        "lambda-api-reserved-concurrency",
        "unset",
        but(api_function, reservedConcurrentExecutions=None),
        permission,
        stack=PROD,
    ),
    violates(
        "lambda-api-reserved-concurrency",
        "unreserved (-1)",
        but(api_function, reservedConcurrentExecutions=-1.0),
        permission,
        stack=PROD,
    ),
    passes("lambda-supported-runtime", "python3.13", function),
    passes("lambda-supported-runtime", "container image", but(function, runtime=None, packageType="Image")),
    violates("lambda-supported-runtime", "python3.9", but(function, runtime="python3.9")),
    violates("lambda-supported-runtime", "nodejs18.x", but(function, runtime="nodejs18.x")),
    passes("lambda-sqs-partial-batch-responses", "SQS mapping reporting item failures", sqs_mapping),
    passes(
        "lambda-sqs-partial-batch-responses",
        "not an SQS source",
        but(
            sqs_mapping,
            eventSourceArn="arn:aws:kinesis:us-east-1:123456789012:stream/s",
            functionResponseTypes=None,
        ),
    ),
    passes(
        "lambda-sqs-partial-batch-responses",
        "preview: queue not known yet",
        but(sqs_mapping, eventSourceArn=UNKNOWN),
    ),
    violates(
        "lambda-sqs-partial-batch-responses",
        "SQS mapping failing whole batches",
        but(sqs_mapping, functionResponseTypes=None),
    ),
    violates(
        "lambda-sqs-partial-batch-responses",
        "SQS mapping with an empty list",
        but(sqs_mapping, functionResponseTypes=[]),
    ),
    passes("lambda-no-public-invoke", "service with source ARN", permission),
    passes("lambda-no-public-invoke", "function URL with IAM auth", function_url),
    passes("lambda-no-public-invoke", "another account", but(permission, principal=ACCOUNT, sourceArn=None)),
    violates("lambda-no-public-invoke", "anyone", but(permission, principal="*")),
    violates("lambda-no-public-invoke", "any API Gateway", but(permission, sourceArn=None)),
    violates(
        "lambda-no-public-invoke", "function URL without auth", but(function_url, authorizationType="NONE")
    ),
    passes("lambda-managed-log-group", "managed group", function),
    violates(
        "lambda-managed-log-group", "implicit group", but(function, loggingConfig={"logFormat": "JSON"})
    ),
    passes("lambda-no-secrets-in-environment", "names and ARNs only", function),
    violates(
        "lambda-no-secrets-in-environment",
        "API key",
        but(function, environment={"variables": {"SENDGRID_API_KEY": "SG.abc"}}),
    ),
    violates(
        "lambda-no-secrets-in-environment",
        "credentials in a URL",
        but(function, environment={"variables": {"DATABASE_URL": "postgres://motion:pw@db:5432/motion"}}),
    ),
]

# --- ECS -------------------------------------------------------------------------------------------

CONTAINER = {
    "name": "upload",
    "image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/files@sha256:{'ab' * 32}",
    "essential": True,
    "readonlyRootFilesystem": True,
    "privileged": False,
    "logConfiguration": {
        "logDriver": "awslogs",
        "options": {
            "awslogs-group": "/motion/dev/upload",
            "awslogs-region": REGION,
            "awslogs-stream-prefix": "upload",
        },
    },
    "environment": [
        {"name": "AUTH_JWKS_URL", "value": "https://clerk.example/.well-known/jwks.json"},
        {"name": "DATABASE_SECRET_ARN", "value": "arn:aws:secretsmanager:x"},
        {"name": "CLERK_PUBLISHABLE_KEY", "value": "pk_test_abc"},
        {"name": "AUTH_TOKEN_TTL", "value": "300"},
    ],
    "secrets": [{"name": "DATABASE_PASSWORD", "valueFrom": "arn:aws:secretsmanager:x:password::"}],
}


def task(**container: Any) -> Resource:
    merged = {k: v for k, v in {**CONTAINER, **container}.items() if v is not None}
    return res(
        "aws:ecs/taskDefinition:TaskDefinition",
        "upload-task",
        {"family": "upload", "networkMode": "awsvpc", "containerDefinitions": json.dumps([merged])},
    )


def env(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"name": n, "value": v} for n, v in pairs]


cluster = res(
    "aws:ecs/cluster:Cluster", "cluster", {"settings": [{"name": "containerInsights", "value": "enabled"}]}
)
service = res(
    "aws:ecs/service:Service",
    "upload",
    {"desiredCount": 2.0, "networkConfiguration": {"subnets": ["private-a-id"], "assignPublicIp": False}},
)
nat = res("aws:ec2/natGateway:NatGateway", "nat-a", {"subnetId": "public-a-id"})

ECS_CASES = [
    passes("ecs-readonly-root-filesystem", "read-only", task()),
    passes(
        "ecs-readonly-root-filesystem",
        "preview: definitions unknown",
        but(task(readonlyRootFilesystem=None), containerDefinitions=UNKNOWN),
    ),
    violates("ecs-readonly-root-filesystem", "unset", task(readonlyRootFilesystem=None)),
    violates("ecs-readonly-root-filesystem", "false", task(readonlyRootFilesystem=False)),
    passes("ecs-non-privileged", "not privileged", task()),
    violates("ecs-non-privileged", "privileged", task(privileged=True)),
    passes("ecs-logging", "awslogs to a managed group", task()),
    violates("ecs-logging", "no log configuration", task(logConfiguration=None)),
    violates(
        "ecs-logging",
        "awslogs without a group",
        task(logConfiguration={"logDriver": "awslogs", "options": {}}),
    ),
    violates(
        "ecs-logging",
        "awslogs creates the group",
        task(
            logConfiguration={
                "logDriver": "awslogs",
                "options": {"awslogs-group": "g", "awslogs-create-group": "true"},
            }
        ),
    ),
    passes("ecs-no-secrets-in-environment", "secrets via valueFrom", task()),
    violates(
        "ecs-no-secrets-in-environment", "password", task(environment=env(("DATABASE_PASSWORD", "hunter2")))
    ),
    violates(
        "ecs-no-secrets-in-environment",
        "Redis AUTH token",
        task(environment=env(("REDIS_AUTH_TOKEN", "abc"))),
    ),
    violates(
        "ecs-no-secrets-in-environment",
        "AWS secret key",
        task(environment=env(("AWS_SECRET_ACCESS_KEY", "abc"))),
    ),
    passes("ecs-container-insights", "enabled", cluster, stack=PROD),
    passes(
        "ecs-container-insights",
        "enhanced",
        but(cluster, settings=[{"name": "containerInsights", "value": "enhanced"}]),
        stack=PROD,
    ),
    violates("ecs-container-insights", "no settings", but(cluster, settings=None), stack=PROD),
    violates(
        "ecs-container-insights",
        "disabled",
        but(cluster, settings=[{"name": "containerInsights", "value": "disabled"}]),
        stack=PROD,
    ),
    passes("ecs-service-redundancy", "two tasks", service, stack=PROD),
    violates("ecs-service-redundancy", "one task", but(service, desiredCount=1.0), stack=PROD),
    violates("ecs-service-redundancy", "unset", but(service, desiredCount=None), stack=PROD),
    passes("ecs-no-public-ip-behind-nat", "private behind NAT", service, nat),
    passes(
        "ecs-no-public-ip-behind-nat",
        "public IP without NAT (dev)",
        but(service, networkConfiguration={"subnets": ["public-a-id"], "assignPublicIp": True}),
    ),
    violates(
        "ecs-no-public-ip-behind-nat",
        "public IP behind NAT",
        but(service, networkConfiguration={"subnets": ["private-a-id"], "assignPublicIp": True}),
        nat,
    ),
]

# --- ECR -------------------------------------------------------------------------------------------

repository = res(
    "aws:ecr/repository:Repository",
    "chat-repo",
    {
        "name": "motion-dev-chat",
        "imageScanningConfiguration": {"scanOnPush": True},
        "imageTagMutability": "IMMUTABLE",
    },
)
ecr_lifecycle = res(
    "aws:ecr/lifecyclePolicy:LifecyclePolicy",
    "chat-repo-lifecycle",
    {"repository": "motion-dev-chat", "policy": json.dumps({"rules": []})},
)

ECR_CASES = [
    passes("ecr-scan-on-push", "on", repository),
    violates("ecr-scan-on-push", "off", but(repository, imageScanningConfiguration={"scanOnPush": False})),
    passes("ecr-immutable-tags", "immutable", repository),
    passes(
        "ecr-immutable-tags",
        "immutable with exclusions",
        but(repository, imageTagMutability="IMMUTABLE_WITH_EXCLUSION"),
    ),
    violates("ecr-immutable-tags", "mutable", but(repository, imageTagMutability="MUTABLE")),
    violates("ecr-immutable-tags", "provider default", but(repository, imageTagMutability=None)),
    passes("ecr-lifecycle-policy", "policy by repository name", repository, ecr_lifecycle),
    violates("ecr-lifecycle-policy", "none", repository),
    violates(
        "ecr-lifecycle-policy",
        "policy of another repository",
        repository,
        but(ecr_lifecycle, repository="other"),
    ),
]

# --- EC2 -------------------------------------------------------------------------------------------

vpc = res("aws:ec2/vpc:Vpc", "vpc", {"cidrBlock": "10.20.0.0/16"})
default_sg = res("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", "vpc-default-sg", {"vpcId": "vpc-id"})
flow_log = res(
    "aws:ec2/flowLog:FlowLog",
    "vpc-flow-logs",
    {"vpcId": "vpc-id", "trafficType": "ALL", "logDestinationType": "cloud-watch-logs"},
)
SG = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
alb_sg = res(SG, "alb-sg", {"vpcId": "vpc-id", "description": "load balancer"})
app_sg = res(SG, "app-sg", {"vpcId": "vpc-id", "description": "service"})
load_balancer = res(
    "aws:lb/loadBalancer:LoadBalancer",
    "alb",
    {
        "loadBalancerType": "application",
        "internal": False,
        "securityGroups": ["alb-sg-id"],
        "dropInvalidHeaderFields": True,
        "enableDeletionProtection": True,
        "accessLogs": {"bucket": "motion-prod-alb-logs", "enabled": True},
        "arn": f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:loadbalancer/app/alb/1",
    },
)
https_in = res(
    INGRESS,
    "alb-in-443",
    {
        "securityGroupId": "alb-sg-id",
        "cidrIpv4": "0.0.0.0/0",
        "ipProtocol": "tcp",
        "fromPort": 443.0,
        "toPort": 443.0,
    },
)
http6_in = res(
    INGRESS,
    "alb-in-80-v6",
    {
        "securityGroupId": "alb-sg-id",
        "cidrIpv6": "::/0",
        "ipProtocol": "tcp",
        "fromPort": 80.0,
        "toPort": 80.0,
    },
)
from_alb = res(
    INGRESS,
    "app-from-alb",
    {
        "securityGroupId": "app-sg-id",
        "referencedSecurityGroupId": "alb-sg-id",
        "ipProtocol": "tcp",
        "fromPort": 8080.0,
        "toPort": 8080.0,
    },
)

EC2_CASES = [
    passes("ec2-default-security-group-closed", "adopted and empty", vpc, default_sg),
    violates("ec2-default-security-group-closed", "not adopted", vpc),
    violates(
        "ec2-default-security-group-closed",
        "adopted with rules",
        vpc,
        but(default_sg, ingress=[{"protocol": "-1", "fromPort": 0.0, "toPort": 0.0, "self": True}]),
    ),
    passes(
        "ec2-no-world-ingress",
        "ALB on 443 and 80",
        load_balancer,
        alb_sg,
        app_sg,
        https_in,
        http6_in,
        from_alb,
    ),
    passes(
        "ec2-no-world-ingress",
        "preview: group paired by dependency",
        load_balancer,
        alb_sg,
        replace(
            but(https_in, securityGroupId=UNKNOWN), property_dependencies={"securityGroupId": [alb_sg.urn]}
        ),
    ),
    violates(
        "ec2-no-world-ingress",
        "SSH on the ALB group",
        load_balancer,
        alb_sg,
        but(https_in, fromPort=22.0, toPort=22.0),
    ),
    violates(
        "ec2-no-world-ingress",
        "all protocols",
        load_balancer,
        alb_sg,
        but(https_in, ipProtocol="-1", fromPort=None, toPort=None),
    ),
    violates(
        "ec2-no-world-ingress",
        "port range",
        load_balancer,
        alb_sg,
        but(https_in, fromPort=80.0, toPort=443.0),
    ),
    violates(
        "ec2-no-world-ingress",
        "443 on a service group",
        load_balancer,
        alb_sg,
        app_sg,
        but(https_in, securityGroupId="app-sg-id"),
    ),
    violates(
        "ec2-no-world-ingress",
        "inline rule on a service group",
        load_balancer,
        alb_sg,
        but(
            app_sg,
            ingress=[{"protocol": "tcp", "fromPort": 443.0, "toPort": 443.0, "cidrBlocks": ["0.0.0.0/0"]}],
        ),
    ),
    violates(
        "ec2-no-world-ingress",
        "legacy rule resource",
        load_balancer,
        alb_sg,
        app_sg,
        res(
            "aws:ec2/securityGroupRule:SecurityGroupRule",
            "app-world",
            {
                "type": "ingress",
                "securityGroupId": "app-sg-id",
                "protocol": "tcp",
                "fromPort": 8080.0,
                "toPort": 8080.0,
                "ipv6CidrBlocks": ["::/0"],
            },
        ),
    ),
    passes("ec2-vpc-flow-logs", "all traffic", vpc, flow_log, stack=PROD),
    violates("ec2-vpc-flow-logs", "none", vpc, stack=PROD),
    violates(
        "ec2-vpc-flow-logs", "flow log of another VPC", vpc, but(flow_log, vpcId="other-vpc-id"), stack=PROD
    ),
]

# --- ALB -------------------------------------------------------------------------------------------

LISTENER = "aws:lb/listener:Listener"
LB_ARN = load_balancer.props["arn"]
WEB_ACL_ARN = f"arn:aws:wafv2:{REGION}:{ACCOUNT}:regional/webacl/motion-production-alb/1"
WAF_LOG_GROUP_ARN = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:aws-waf-logs-motion-production"
web_acl = res(
    "aws:wafv2/webAcl:WebAcl",
    "waf-acl",
    {"name": "motion-production-alb", "scope": "REGIONAL", "arn": WEB_ACL_ARN},
)
web_acl_association = res(
    "aws:wafv2/webAclAssociation:WebAclAssociation",
    "waf-alb",
    {"resourceArn": LB_ARN, "webAclArn": WEB_ACL_ARN},
)
waf_log_group = res(
    "aws:cloudwatch/logGroup:LogGroup",
    "waf-logs",
    {"name": "aws-waf-logs-motion-production", "retentionInDays": 365.0, "arn": WAF_LOG_GROUP_ARN},
)
waf_logging = res(
    "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration",
    "waf-logging",
    {"resourceArn": WEB_ACL_ARN, "logDestinationConfigs": [WAF_LOG_GROUP_ARN]},
)
WAF_CASES = [
    passes("alb-waf", "associated", load_balancer, web_acl, web_acl_association, stack=PROD),
    passes("alb-waf", "internal load balancer", but(load_balancer, internal=True), stack=PROD),
    violates("alb-waf", "no web ACL", load_balancer, stack=PROD),
    violates(
        "alb-waf",
        "web ACL of another load balancer",
        load_balancer,
        web_acl,
        but(
            web_acl_association,
            resourceArn=f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:loadbalancer/app/x/2",
        ),
        stack=PROD,
    ),
    violates(
        "alb-waf",
        "CloudFront web ACL",
        load_balancer,
        but(web_acl, scope="CLOUDFRONT"),
        web_acl_association,
        stack=PROD,
    ),
    passes("waf-logging", "to an aws-waf-logs- group", web_acl, waf_log_group, waf_logging),
    violates("waf-logging", "no logging", web_acl, waf_log_group),
    violates(
        "waf-logging",
        "group without the prefix",
        web_acl,
        but(waf_log_group, name="/motion/production/waf"),
        waf_logging,
    ),
]


def managed(group: str, priority: int, override: str = "none") -> dict[str, Any]:
    return {
        "name": group,
        "priority": float(priority),
        "overrideAction": {override: {}},
        "statement": {"managedRuleGroupStatement": {"name": group, "vendorName": "AWS"}},
    }


def rate_rule(key: str = "IP", action: str = "block") -> dict[str, Any]:
    return {
        "name": "rate-limit-per-ip",
        "priority": 1.0,
        "action": {action: {}},
        "statement": {"rateBasedStatement": {"aggregateKeyType": key, "limit": 2000.0}},
    }


WAF_RULES = [
    managed("AWSManagedRulesAmazonIpReputationList", 0),
    rate_rule(),
    managed("AWSManagedRulesCommonRuleSet", 2),
    managed("AWSManagedRulesKnownBadInputsRuleSet", 3),
]
protected_acl = but(web_acl, rules=WAF_RULES, visibilityConfig={"metricName": "motion-production-alb"})
blocked_alarm = res(
    "aws:cloudwatch/metricAlarm:MetricAlarm",
    "waf-blocked",
    {
        "namespace": "AWS/WAFV2",
        "metricName": "BlockedRequests",
        "dimensions": {"Region": REGION, "Rule": "ALL", "WebACL": "motion-production-alb"},
        "alarmActions": [f"arn:aws:sns:{REGION}:{ACCOUNT}:motion-production-alarms"],
    },
)


def pascal(value: Any) -> Any:
    """A rules document as rule_json takes it (the WAF API's PascalCase)."""
    if isinstance(value, dict):
        return {k[:1].upper() + k[1:]: pascal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [pascal(v) for v in value]
    return value


WAF_CASES += [
    passes("waf-protections", "managed groups, rate rule, alarm", protected_acl, blocked_alarm, stack=PROD),
    passes(
        "waf-protections",
        "the same rules as rule_json",
        but(protected_acl, rules=None, ruleJson=json.dumps(pascal(WAF_RULES))),
        blocked_alarm,
        stack=PROD,
    ),
    passes(
        "waf-protections",
        "preview: rules not known yet",
        but(protected_acl, rules=UNKNOWN),
        blocked_alarm,
        stack=PROD,
    ),
    violates(
        "waf-protections",
        "no IP reputation list",
        but(
            protected_acl,
            rules=[r for r in WAF_RULES if r["name"] != "AWSManagedRulesAmazonIpReputationList"],
        ),
        blocked_alarm,
        stack=PROD,
    ),
    violates(
        "waf-protections",
        "common rule set only counting",
        but(
            protected_acl,
            rules=[*WAF_RULES[:2], managed("AWSManagedRulesCommonRuleSet", 2, "count"), WAF_RULES[3]],
        ),
        blocked_alarm,
        stack=PROD,
    ),
    violates(
        "waf-protections",
        "known bad inputs from another vendor",
        but(
            protected_acl,
            rules=[
                *WAF_RULES[:3],
                {
                    **WAF_RULES[3],
                    "statement": {
                        "managedRuleGroupStatement": {
                            "name": "AWSManagedRulesKnownBadInputsRuleSet",
                            "vendorName": "Other",
                        }
                    },
                },
            ],
        ),
        blocked_alarm,
        stack=PROD,
    ),
    violates(
        "waf-protections",
        "no rate-based rule",
        but(protected_acl, rules=[WAF_RULES[0], *WAF_RULES[2:]]),
        blocked_alarm,
        stack=PROD,
    ),
    violates(
        "waf-protections",
        "rate rule over everyone (CONSTANT)",
        but(protected_acl, rules=[WAF_RULES[0], rate_rule("CONSTANT"), *WAF_RULES[2:]]),
        blocked_alarm,
        stack=PROD,
    ),
    violates(
        "waf-protections",
        "rate rule only counting",
        but(protected_acl, rules=[WAF_RULES[0], rate_rule(action="count"), *WAF_RULES[2:]]),
        blocked_alarm,
        stack=PROD,
    ),
    passes(
        "waf-protections",
        "rate rule per forwarded IP",
        but(protected_acl, rules=[WAF_RULES[0], rate_rule("FORWARDED_IP"), *WAF_RULES[2:]]),
        blocked_alarm,
        stack=PROD,
    ),
    violates("waf-protections", "no blocked-requests alarm", protected_acl, stack=PROD),
    violates(
        "waf-protections",
        "alarm without an action",
        protected_acl,
        but(blocked_alarm, alarmActions=[]),
        stack=PROD,
    ),
    violates(
        "waf-protections",
        "alarm on another web ACL",
        protected_acl,
        but(blocked_alarm, dimensions={"Region": REGION, "Rule": "ALL", "WebACL": "other"}),
        stack=PROD,
    ),
    violates(
        "waf-protections",
        "alarm on allowed requests",
        protected_acl,
        but(blocked_alarm, metricName="AllowedRequests"),
        stack=PROD,
    ),
]
https_listener = res(
    LISTENER,
    "https",
    {
        "loadBalancerArn": LB_ARN,
        "protocol": "HTTPS",
        "port": 443.0,
        "sslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
        "certificateArn": f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/0f3c9a52-6b7e-4d4e-9f4a-2b1c7d8e9f00",
        "defaultActions": [
            {"type": "fixed-response", "fixedResponse": {"statusCode": "404", "contentType": "text/plain"}}
        ],
    },
)
redirect_listener = res(
    LISTENER,
    "http",
    {
        "loadBalancerArn": LB_ARN,
        "protocol": "HTTP",
        "port": 80.0,
        "arn": f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:listener/app/alb/1/http",
        "defaultActions": [
            {"type": "redirect", "redirect": {"protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}}
        ],
    },
)
forward_listener = but(redirect_listener, defaultActions=[{"type": "forward", "targetGroupArn": "arn:tg"}])
http_rule = res(
    "aws:lb/listenerRule:ListenerRule",
    "files-on-http",
    {
        "listenerArn": redirect_listener.props["arn"],
        "priority": 100.0,
        "actions": [{"type": "forward", "targetGroupArn": "arn:tg"}],
    },
)

ALB_CASES = [
    passes("alb-drop-invalid-headers", "dropped", load_balancer),
    passes(
        "alb-drop-invalid-headers",
        "network load balancer",
        but(load_balancer, loadBalancerType="network", dropInvalidHeaderFields=None),
    ),
    violates("alb-drop-invalid-headers", "forwarded", but(load_balancer, dropInvalidHeaderFields=None)),
    passes("alb-deletion-protection", "protected", load_balancer, stack=PROD),
    violates(
        "alb-deletion-protection",
        "unprotected",
        but(load_balancer, enableDeletionProtection=False),
        stack=PROD,
    ),
    passes("alb-access-logs", "logged", load_balancer, stack=PROD),
    violates("alb-access-logs", "no logs", but(load_balancer, accessLogs=None), stack=PROD),
    violates(
        "alb-access-logs",
        "disabled",
        but(load_balancer, accessLogs={"bucket": "b", "enabled": False}),
        stack=PROD,
    ),
    passes("alb-tls-policy", "TLS 1.2+ policy", https_listener),
    passes(
        "alb-tls-policy", "TLS 1.3 only", but(https_listener, sslPolicy="ELBSecurityPolicy-TLS13-1-3-2021-06")
    ),
    passes("alb-tls-policy", "HTTP listener", forward_listener),
    violates("alb-tls-policy", "2016 policy", but(https_listener, sslPolicy="ELBSecurityPolicy-2016-08")),
    violates("alb-tls-policy", "provider default policy", but(https_listener, sslPolicy=None)),
    violates("alb-tls-policy", "no certificate", but(https_listener, certificateArn=None)),
    passes("alb-http-redirects-to-https", "HTTPS plus redirect", https_listener, redirect_listener),
    passes("alb-http-redirects-to-https", "dev without a certificate", forward_listener),
    violates("alb-http-redirects-to-https", "HTTPS plus forwarding HTTP", https_listener, forward_listener),
    violates("alb-http-redirects-to-https", "production serving HTTP", forward_listener, stack=PROD),
    violates(
        "alb-http-redirects-to-https",
        "path rule on the HTTP listener",
        https_listener,
        redirect_listener,
        http_rule,
    ),
    passes(
        "alb-https-required", "HTTPS listener", load_balancer, https_listener, redirect_listener, stack=PROD
    ),
    violates("alb-https-required", "only HTTP", load_balancer, redirect_listener, stack=PROD),
    violates(
        "alb-https-required",
        "HTTPS on another load balancer",
        load_balancer,
        but(https_listener, loadBalancerArn="arn:other"),
        stack=PROD,
    ),
]

# --- IAM -------------------------------------------------------------------------------------------


def document(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


SEND = {
    "Effect": "Allow",
    "Action": ["sqs:SendMessage"],
    "Resource": f"arn:aws:sqs:{REGION}:{ACCOUNT}:mail-events",
}
REGISTRY_LOGIN = {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}
role_policy = res(
    "aws:iam/rolePolicy:RolePolicy",
    "api-policy",
    {"role": "api-role-id", "policy": document(SEND, REGISTRY_LOGIN)},
)
role = res(
    "aws:iam/role:Role",
    "api-role",
    {
        "assumeRolePolicy": document(
            {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "lambda.amazonaws.com"}}
        ),
        "inlinePolicies": [{"name": "send", "policy": document(SEND)}],
    },
)
attachment = res(
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "execution-managed",
    {
        "role": "execution-id",
        "policyArn": "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy",
    },
)

PASS = {
    "Effect": "Allow",
    "Action": ["iam:PassRole"],
    "Resource": [
        f"arn:aws:iam::{ACCOUNT}:role/migrate-execution",
        f"arn:aws:iam::{ACCOUNT}:role/migrate-task",
    ],
    "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
}
pass_roles = res(
    "aws:iam/rolePolicy:RolePolicy", "runner-policy", {"role": "runner-role-id", "policy": document(PASS)}
)

IAM_CASES = [
    passes("iam-no-wildcard-actions", "named actions", role_policy),
    passes(
        "iam-no-wildcard-actions",
        "a Deny may use s3:*",
        but(role_policy, policy=document(SEND, DENY_INSECURE_TRANSPORT)),
    ),
    passes("iam-no-wildcard-actions", "preview: document unknown", but(role_policy, policy=UNKNOWN)),
    violates(
        "iam-no-wildcard-actions",
        "service wildcard",
        but(role_policy, policy=document({**SEND, "Action": "sqs:*"})),
    ),
    violates(
        "iam-no-wildcard-actions", "everything", but(role_policy, policy=document({**SEND, "Action": "*"}))
    ),
    violates(
        "iam-no-wildcard-actions",
        "NotAction",
        res(
            "aws:iam/policy:Policy",
            "managed",
            {"policy": document({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})},
        ),
    ),
    violates(
        "iam-no-wildcard-actions",
        "role inline policy",
        but(role, inlinePolicies=[{"name": "all", "policy": document({**SEND, "Action": "S3:*"})}]),
    ),
    passes("iam-no-wildcard-resources", "named ARNs, and * for a registry login", role_policy),
    passes("iam-no-wildcard-resources", "role inline policy", role),
    violates(
        "iam-no-wildcard-resources",
        "table reads on *",
        but(role_policy, policy=document({**SEND, "Action": ["dynamodb:GetItem"], "Resource": "*"})),
    ),
    violates(
        "iam-no-wildcard-resources",
        "every queue",
        but(role_policy, policy=document({**SEND, "Resource": "arn:aws:sqs:*:*:*"})),
    ),
    violates(
        "iam-no-wildcard-resources",
        "login and pull on *",
        but(
            role_policy,
            policy=document({**REGISTRY_LOGIN, "Action": ["ecr:GetAuthorizationToken", "ecr:BatchGetImage"]}),
        ),
    ),
    violates(
        "iam-no-wildcard-resources",
        "NotResource",
        but(
            role_policy,
            policy=document({"Effect": "Allow", "Action": "s3:GetObject", "NotResource": "arn:x"}),
        ),
    ),
    passes("iam-no-broad-managed-policies", "ECS task execution policy", attachment),
    violates(
        "iam-no-broad-managed-policies",
        "administrator",
        but(attachment, policyArn="arn:aws:iam::aws:policy/AdministratorAccess"),
    ),
    violates(
        "iam-no-broad-managed-policies",
        "read every object",
        but(attachment, policyArn="arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"),
    ),
    violates(
        "iam-no-broad-managed-policies",
        "role managedPolicyArns",
        but(role, managedPolicyArns=["arn:aws:iam::aws:policy/AmazonSQSFullAccess"]),
    ),
    passes("iam-pass-role-scoped", "no PassRole", role_policy),
    passes("iam-pass-role-scoped", "named roles, to one service", pass_roles),
    passes("iam-pass-role-scoped", "preview: document unknown", but(pass_roles, policy=UNKNOWN)),
    violates("iam-pass-role-scoped", "any role", but(pass_roles, policy=document({**PASS, "Resource": "*"}))),
    violates(
        "iam-pass-role-scoped",
        "every role under a path",
        but(pass_roles, policy=document({**PASS, "Resource": f"arn:aws:iam::{ACCOUNT}:role/migrate-*"})),
    ),
    violates(
        "iam-pass-role-scoped",
        "to any service",
        but(pass_roles, policy=document({k: v for k, v in PASS.items() if k != "Condition"})),
    ),
    violates(
        "iam-pass-role-scoped",
        "a condition on something else",
        but(
            pass_roles,
            policy=document({**PASS, "Condition": {"StringEquals": {"aws:RequestedRegion": REGION}}}),
        ),
    ),
    violates(
        "iam-pass-role-scoped",
        "iam:Pass* counts",
        but(pass_roles, policy=document({**PASS, "Action": "iam:Pass*", "Resource": "*"})),
    ),
    violates(
        "iam-pass-role-scoped",
        "role inline policy",
        but(role, inlinePolicies=[{"name": "pass", "policy": document({**PASS, "Resource": "*"})}]),
    ),
]

# --- CloudWatch Logs -------------------------------------------------------------------------------

log_group = res(
    "aws:cloudwatch/logGroup:LogGroup", "upload-logs", {"name": "/motion/dev/upload", "retentionInDays": 7.0}
)

LOG_KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0f3c9a52-6b7e-4d4e-9f4a-2b1c7d8e9f00"
LOGS_STATEMENT = {
    "Sid": "CloudWatchLogsEncryptsLogGroups",
    "Effect": "Allow",
    "Principal": {"Service": f"logs.{REGION}.amazonaws.com"},
    "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
    "Resource": "*",
    "Condition": {
        "ArnLike": {"kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:*"}
    },
}
ROOT_STATEMENT = {
    "Sid": "AccountAdministers",
    "Effect": "Allow",
    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
    "Action": "kms:*",
    "Resource": "*",
}


def log_key(*statements: dict[str, Any]) -> Resource:
    return res(
        "aws:kms/key:Key",
        "logs-key",
        {"arn": LOG_KEY_ARN, "policy": json.dumps({"Version": "2012-10-17", "Statement": list(statements)})},
    )


encrypted_log_group = but(log_group, kmsKeyId=LOG_KEY_ARN)

LOG_CASES = [
    passes(
        "cloudwatch-log-group-key-policy",
        "logs principal under the encryption context",
        encrypted_log_group,
        log_key(ROOT_STATEMENT, LOGS_STATEMENT),
    ),
    passes("cloudwatch-log-group-key-policy", "no key of ours", log_group, log_key(ROOT_STATEMENT)),
    violates(
        "cloudwatch-log-group-key-policy",
        "key without the logs principal",
        encrypted_log_group,
        log_key(ROOT_STATEMENT),
    ),
    violates(
        "cloudwatch-log-group-key-policy",
        "global logs principal",
        encrypted_log_group,
        log_key(ROOT_STATEMENT, {**LOGS_STATEMENT, "Principal": {"Service": "logs.amazonaws.com"}}),
    ),
    violates(
        "cloudwatch-log-group-key-policy",
        "no encryption context condition",
        encrypted_log_group,
        log_key(ROOT_STATEMENT, {k: v for k, v in LOGS_STATEMENT.items() if k != "Condition"}),
    ),
    violates(
        "cloudwatch-log-group-key-policy",
        "cannot generate data keys",
        encrypted_log_group,
        log_key(ROOT_STATEMENT, {**LOGS_STATEMENT, "Action": ["kms:Decrypt*", "kms:Describe*"]}),
    ),
    passes("cloudwatch-log-retention", "a week in dev", log_group),
    passes(
        "cloudwatch-log-retention", "a year in production", but(log_group, retentionInDays=365.0), stack=PROD
    ),
    violates("cloudwatch-log-retention", "no retention", but(log_group, retentionInDays=None)),
    violates("cloudwatch-log-retention", "never expire", but(log_group, retentionInDays=0.0)),
    violates(
        "cloudwatch-log-retention", "a month in production", but(log_group, retentionInDays=30.0), stack=PROD
    ),
]

# --- stack policies --------------------------------------------------------------------------------

TAGS = {"project": "motion", "stack": "dev", "managed-by": "pulumi"}
aws_provider = res(
    "pulumi:providers:aws", "aws", {"region": REGION, "defaultTags": json.dumps({"tags": TAGS})}
)
tagged_bucket = replace(bucket, provider=aws_provider.urn)
docker_image = res("docker-build:index:Image", "chat-image", {"tags": ["chat:0123456789abcdef"]})
SUBNET = "aws:ec2/subnet:Subnet"


def subnet(tier: str, zone: str) -> Resource:
    return res(
        SUBNET,
        f"{tier}-{zone}",
        {"vpcId": "vpc-id", "availabilityZone": f"{REGION}{zone}", "tags": {"tier": tier}},
        stack=PROD,
    )


subnets = [subnet(tier, zone) for tier in ("public", "private") for zone in "abc"]
nats = [
    res("aws:ec2/natGateway:NatGateway", f"nat-{z}", {"subnetId": f"public-{z}-id"}, stack=PROD)
    for z in "abc"
]
prod_bucket = res(BUCKET, "files", {"bucket": "motion-production-files"}, stack=PROD)

STACK_CASES = [
    passes("tags-default-tags", "tagged provider", aws_provider, tagged_bucket, docker_image),
    passes(
        "tags-default-tags",
        "tags given structured",
        replace(aws_provider, props={"defaultTags": {"tags": TAGS}}),
        tagged_bucket,
    ),
    violates("tags-default-tags", "default provider", aws_provider, bucket),
    violates(
        "tags-default-tags",
        "provider without managed-by",
        but(aws_provider, defaultTags=json.dumps({"tags": {"project": "motion", "stack": "dev"}})),
        tagged_bucket,
    ),
    violates(
        "tags-default-tags",
        "provider without default tags",
        but(aws_provider, defaultTags=None),
        tagged_bucket,
    ),
    passes("production-subnets-multi-az", "two tiers in three AZs", *subnets, stack=PROD),
    violates(
        "production-subnets-multi-az",
        "private tier in one AZ",
        *[s for s in subnets if s.name.startswith("public")],
        subnet("private", "a"),
        stack=PROD,
    ),
    passes("production-nat-gateway-per-az", "one per AZ", *subnets, *nats, stack=PROD),
    passes(
        "production-nat-gateway-per-az",
        "regional NAT gateway",
        *subnets,
        but(nats[0], subnetId=None, availabilityMode="regional"),
        stack=PROD,
    ),
    violates("production-nat-gateway-per-az", "a single NAT", *subnets, nats[0], stack=PROD),
    violates(
        "production-nat-gateway-per-az",
        "two NATs in one AZ",
        *subnets,
        nats[0],
        but(nats[1], subnetId="public-a-id"),
        stack=PROD,
    ),
    passes("policy-config-matches-stack", "production config on production", prod_bucket, stack=PROD),
    passes(
        "policy-config-matches-stack",
        "a personal stack on dev config",
        replace(bucket, urn=urn(BUCKET, "files", "alice")),
    ),
    violates("policy-config-matches-stack", "dev config on production", prod_bucket),
    violates("policy-config-matches-stack", "production config on dev", bucket, stack=PROD),
]

# --- KMS -------------------------------------------------------------------------------------------

KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0123abcd-0000-0000-0000-000000000000"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
ADMIN = {
    "Sid": "AccountAdministers",
    "Effect": "Allow",
    "Principal": {"AWS": ROOT},
    "Action": ["kms:DescribeKey", "kms:PutKeyPolicy", "kms:ScheduleKeyDeletion"],
    "Resource": "*",
}
VIA_DYNAMODB = {
    "Sid": "UseThroughDynamodb",
    "Effect": "Allow",
    "Principal": {"AWS": ROOT},
    "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:CreateGrant"],
    "Resource": "*",
    "Condition": {
        "StringEquals": {"kms:ViaService": f"dynamodb.{REGION}.amazonaws.com", "kms:CallerAccount": ACCOUNT}
    },
}


def kms_key(*statements: dict[str, Any]) -> Resource:
    return res(
        "aws:kms/key:Key",
        "chat-key",
        {
            "enableKeyRotation": True,
            "policy": json.dumps({"Version": "2012-10-17", "Statement": list(statements)}),
        },
    )


def table_under(table_key: Any = KEY_ARN) -> Resource:
    return but(table, serverSideEncryption={"enabled": True, "kmsKeyArn": table_key})


secret = res("aws:secretsmanager/secret:Secret", "chat-redis-auth", {"kmsKeyId": KEY_ARN})
KMS_CASES = [
    passes("kms-customer-managed-keys", "table under a key of ours", table_under(), stack=PROD),
    violates("kms-customer-managed-keys", "table under the AWS managed key", table, stack=PROD),
    violates(
        "kms-customer-managed-keys",
        "table naming alias/aws/dynamodb",
        table_under(f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/aws/dynamodb"),
        stack=PROD,
    ),
    passes(
        "kms-customer-managed-keys",
        "queue under a key of ours",
        but(queue, sqsManagedSseEnabled=None, kmsMasterKeyId=KEY_ARN),
        stack=PROD,
    ),
    violates("kms-customer-managed-keys", "queue under SSE-SQS", queue, stack=PROD),
    passes(
        "kms-customer-managed-keys",
        "topic under a key of ours",
        res("aws:sns/topic:Topic", "mailing-ses-events-topic", {"kmsMasterKeyId": KEY_ARN}),
        stack=PROD,
    ),
    violates(
        "kms-customer-managed-keys",
        "topic unencrypted",
        res("aws:sns/topic:Topic", "mailing-ses-events-topic", {"name": "motion-production-mail-ses-events"}),
        stack=PROD,
    ),
    violates(
        "kms-customer-managed-keys",
        "topic under the AWS managed SNS key",
        res("aws:sns/topic:Topic", "t", {"kmsMasterKeyId": "alias/aws/sns"}),
        stack=PROD,
    ),
    passes("kms-customer-managed-keys", "secret under a key of ours", secret, stack=PROD),
    violates(
        "kms-customer-managed-keys", "secret under aws/secretsmanager", but(secret, kmsKeyId=None), stack=PROD
    ),
    violates(
        "kms-customer-managed-keys",
        "secret naming alias/aws/secretsmanager",
        but(secret, kmsKeyId="alias/aws/secretsmanager"),
        stack=PROD,
    ),
    passes(
        "kms-customer-managed-keys", "cache under a key of ours", but(cache, kmsKeyId=KEY_ARN), stack=PROD
    ),
    violates("kms-customer-managed-keys", "cache under the default key", cache, stack=PROD),
    passes(
        "kms-customer-managed-keys",
        "repository under a key of ours",
        but(repository, encryptionConfigurations=[{"encryptionType": "KMS", "kmsKey": KEY_ARN}]),
        stack=PROD,
    ),
    violates(
        "kms-customer-managed-keys",
        "repository with AES-256",
        but(repository, encryptionConfigurations=[{"encryptionType": "AES256"}]),
        stack=PROD,
    ),
    violates(
        "kms-customer-managed-keys",
        "repository under the AWS managed ECR key",
        but(repository, encryptionConfigurations=[{"encryptionType": "KMS"}]),
        stack=PROD,
    ),
    passes(
        "kms-customer-managed-keys",
        "database: storage, Performance Insights, master secret",
        but(
            database,
            kmsKeyId=KEY_ARN,
            performanceInsightsEnabled=True,
            performanceInsightsKmsKeyId=KEY_ARN,
            masterUserSecretKmsKeyId=KEY_ARN,
        ),
        stack=PROD,
    ),
    violates(
        "kms-customer-managed-keys",
        "database: Performance Insights under the AWS managed key",
        but(database, kmsKeyId=KEY_ARN, performanceInsightsEnabled=True, masterUserSecretKmsKeyId=KEY_ARN),
        stack=PROD,
    ),
    violates(
        "kms-customer-managed-keys",
        "database: master secret under aws/secretsmanager",
        but(database, kmsKeyId=KEY_ARN),
        stack=PROD,
    ),
    violates(
        "kms-customer-managed-keys",
        "database: storage under aws/rds",
        but(database, masterUserSecretKmsKeyId=KEY_ARN),
        stack=PROD,
    ),
    passes(
        "kms-key-policy-least-privilege", "administered, used through a service", kms_key(ADMIN, VIA_DYNAMODB)
    ),
    passes(
        "kms-key-policy-least-privilege",
        "a service principal pinned to the account",
        kms_key(
            ADMIN,
            {
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}},
            },
        ),
    ),
    passes(
        "kms-key-policy-least-privilege",
        "SES publishing one configuration set's events to an encrypted topic",
        kms_key(
            ADMIN,
            {
                "Sid": "SesPublishesEvents",
                "Effect": "Allow",
                "Principal": {"Service": "ses.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {
                        "aws:SourceAccount": ACCOUNT,
                        "aws:SourceArn": f"arn:aws:ses:us-east-1:{ACCOUNT}:configuration-set/motion-dev-mail",
                    }
                },
            },
        ),
    ),
    violates(
        "kms-key-policy-least-privilege",
        "SES may use the key for any account's configuration set",
        kms_key(
            ADMIN,
            {
                "Effect": "Allow",
                "Principal": {"Service": "ses.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
            },
        ),
    ),
    violates(
        "kms-key-policy-least-privilege",
        "the default policy: root may do anything",
        kms_key({**ADMIN, "Action": "kms:*"}, VIA_DYNAMODB),
    ),
    violates(
        "kms-key-policy-least-privilege",
        "kms:Create* includes kms:CreateGrant",
        kms_key({**ADMIN, "Action": [*ADMIN["Action"], "kms:Create*"]}),
    ),
    violates(
        "kms-key-policy-least-privilege",
        "a role decrypts directly",
        kms_key(ADMIN, {**VIA_DYNAMODB, "Condition": None}),
    ),
    violates(
        "kms-key-policy-least-privilege",
        "a condition that does not confine the caller",
        kms_key(ADMIN, {**VIA_DYNAMODB, "Condition": {"Bool": {"aws:SecureTransport": "true"}}}),
    ),
    violates(
        "kms-key-policy-least-privilege",
        "nobody may change the policy again (KMS refuses it)",
        kms_key({**ADMIN, "Action": ["kms:DescribeKey"]}, VIA_DYNAMODB),
    ),
    violates("kms-key-policy-least-privilege", "no policy (KMS's default)", but(kms_key(ADMIN), policy=None)),
    passes(
        "kms-key-policy-least-privilege", "preview: policy not known yet", but(kms_key(ADMIN), policy=UNKNOWN)
    ),
]


def sse(algorithm: str, key: str | None = None, target: str = BUCKET_ID, name: str = "files-sse") -> Resource:
    """A bucket's default encryption: `algorithm` under `key`, for the bucket whose id is `target`."""
    default: dict[str, Any] = {"sseAlgorithm": algorithm}
    if key is not None:
        default["kmsMasterKeyId"] = key
    props = {"bucket": target, "rules": [{"applyServerSideEncryptionByDefault": default}]}
    return replace(encryption, name=name, urn=urn(encryption.type, name), id=f"{name}-id", props=props)


alb_log_bucket = res(BUCKET, "alb-logs", {"bucket": "motion-prod-alb-logs"})
log_group_under = res(
    "aws:cloudwatch/logGroup:LogGroup", "files-logs", {"name": "/motion/files", "kmsKeyId": KEY_ARN}
)
KMS_CASES += [
    passes("kms-customer-managed-keys", "log group under a key of ours", log_group_under, stack=PROD),
    violates(
        "kms-customer-managed-keys",
        "log group under CloudWatch Logs' own encryption",
        but(log_group_under, kmsKeyId=None),
        stack=PROD,
    ),
    passes(
        "kms-customer-managed-keys", "bucket under a key of ours", bucket, sse("aws:kms", KEY_ARN), stack=PROD
    ),
    passes(
        "kms-customer-managed-keys",
        "bucket under DSSE-KMS with a key of ours",
        bucket,
        sse("aws:kms:dsse", KEY_ARN),
        stack=PROD,
    ),
    violates("kms-customer-managed-keys", "bucket under SSE-S3", bucket, sse("AES256"), stack=PROD),
    violates(
        "kms-customer-managed-keys", "bucket under aws/s3 (no key named)", bucket, sse("aws:kms"), stack=PROD
    ),
    violates(
        "kms-customer-managed-keys",
        "bucket naming alias/aws/s3",
        bucket,
        sse("aws:kms", f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/aws/s3"),
        stack=PROD,
    ),
    violates("kms-customer-managed-keys", "bucket without default encryption", bucket, stack=PROD),
    passes(
        "kms-customer-managed-keys",
        "the load balancer's access log bucket on SSE-S3",
        load_balancer,
        alb_log_bucket,
        sse("AES256", target="alb-logs-id", name="alb-logs-sse"),
        stack=PROD,
    ),
    violates(
        "kms-customer-managed-keys",
        "a bucket on SSE-S3 beside the access log bucket",
        load_balancer,
        alb_log_bucket,
        sse("AES256", target="alb-logs-id", name="alb-logs-sse"),
        bucket,
        sse("AES256"),
        stack=PROD,
    ),
    passes(
        "alb-access-log-bucket-sse-s3",
        "access logs into an SSE-S3 bucket",
        load_balancer,
        alb_log_bucket,
        sse("AES256", target="alb-logs-id", name="alb-logs-sse"),
    ),
    violates(
        "alb-access-log-bucket-sse-s3",
        "access logs into an SSE-KMS bucket",
        load_balancer,
        alb_log_bucket,
        sse("aws:kms", KEY_ARN, target="alb-logs-id", name="alb-logs-sse"),
    ),
    violates(
        "alb-access-log-bucket-sse-s3",
        "access logs into a bucket found by its dependency (preview)",
        replace(
            load_balancer,
            props={**load_balancer.props, "accessLogs": {"bucket": UNKNOWN, "enabled": True}},
            property_dependencies={"accessLogs": [alb_log_bucket.urn]},
        ),
        alb_log_bucket,
        sse("aws:kms:dsse", KEY_ARN, target="alb-logs-id", name="alb-logs-sse"),
    ),
    passes(
        "alb-access-log-bucket-sse-s3",
        "another bucket under SSE-KMS",
        load_balancer,
        alb_log_bucket,
        sse("AES256", target="alb-logs-id", name="alb-logs-sse"),
        bucket,
        sse("aws:kms", KEY_ARN),
    ),
]


CASES: list[Case] = [
    *S3_CASES,
    *SQS_CASES,
    *RDS_CASES,
    *ELASTICACHE_CASES,
    *DYNAMODB_CASES,
    *LAMBDA_CASES,
    *ECS_CASES,
    *ECR_CASES,
    *EC2_CASES,
    *ALB_CASES,
    *WAF_CASES,
    *IAM_CASES,
    *LOG_CASES,
    *KMS_CASES,
    *STACK_CASES,
]
