"""Customer managed KMS keys for a stack's data, each with a key policy that grants every AWS
service exactly what that service's documentation asks for, and no one anything else.

Every key's policy has the same shape:
- the account may administer the key (its IAM policies decide who), but not use it: no statement lets
  a principal of the account encrypt or decrypt with it directly, so ciphertext copied out of a table,
  a snapshot or a bucket cannot be decrypted through KMS by anyone in the account;
- each service that encrypts a resource with the key gets a statement: a service principal (CloudWatch
  Logs, CloudWatch alarms) pinned to this account, or the account's principals *through* the service
  (kms:ViaService and kms:CallerAccount, the shape of AWS's own managed keys' policies), so a role's
  IAM grant of kms:Decrypt on the key works only for requests that service makes on its behalf.
Roles that read or write the data get their kms: actions from `use_statement`, scoped to the key and
to the service, so the IAM side is as narrow as the key side."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws.arns import Place
from components.aws.iam import statement

# What administering a key needs and nothing that encrypts, decrypts or grants: the actions of the
# default key policy's "key administrators" statement (KMS Developer Guide, "Default key policy",
# "Allows key administrators to administer the KMS key"), spelled out instead of as kms:Create*, which
# would include kms:CreateGrant, and a grant to oneself is a way to use the key. This covers what the
# provider calls on a key and its alias (terraform-provider-aws kms key/alias: DescribeKey, GetKeyPolicy,
# GetKeyRotationStatus, ListResourceTags, PutKeyPolicy, EnableKeyRotation, UpdateKeyDescription,
# TagResource, ScheduleKeyDeletion, CreateAlias/UpdateAlias/DeleteAlias). kms:PutKeyPolicy must stay:
# KMS refuses a policy that would not let the caller change it again (CreateKey / PutKeyPolicy,
# BypassPolicyLockoutSafetyCheck: "the key policy must allow the principal that is making the request
# to make a subsequent PutKeyPolicy request").
ADMIN_ACTIONS: tuple[str, ...] = (
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:DeleteAlias",
    "kms:DescribeKey",
    "kms:DisableKey",
    "kms:DisableKeyRotation",
    "kms:EnableKey",
    "kms:EnableKeyRotation",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListAliases",
    "kms:ListGrants",
    "kms:ListKeyPolicies",
    "kms:ListKeyRotations",
    "kms:ListResourceTags",
    "kms:PutKeyPolicy",
    "kms:RevokeGrant",
    "kms:RotateKeyOnDemand",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
)

# What the account's principals may do with a key through each service (the kms:ViaService value is
# "<service>.<region>.amazonaws.com"), as each service documents it for a customer managed key:
# - dynamodb: KMS Developer Guide, "How Amazon DynamoDB uses AWS KMS", key policy statement "Allow
#   access through Amazon DynamoDB for all principals in the account that are authorized to use
#   Amazon DynamoDB";
# - secretsmanager: Secrets Manager User Guide, "Secret encryption and decryption", "Permissions for
#   the KMS key" (the aws/secretsmanager key policy);
# - rds: RDS User Guide, "Authorizing use of a customer managed key" (CreateGrant and ListGrants for
#   the instance, encryption for storage and Performance Insights, "kms:ViaService rds.<region>");
# - elasticache: ElastiCache User Guide, "Using customer managed keys from AWS KMS";
# - ecr: ECR User Guide, "Encryption at rest" (CreateGrant and RetireGrant: ECR adds a grant with the
#   repository as grantee principal when the repository is created, and retires it when deleted);
# - s3: S3 User Guide, "Using server-side encryption with AWS KMS keys (SSE-KMS)", permissions
#   (GenerateDataKey to write, Decrypt to read and to complete multipart uploads).
# The statement AWS writes into its managed keys' policies (aws/dynamodb, aws/secretsmanager,
# aws/elasticache, aws/rds) for the account's principals through the service.
_THROUGH_SERVICE = (
    "kms:CreateGrant",
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:Encrypt",
    "kms:GenerateDataKey*",
    "kms:ReEncrypt*",
)
VIA_SERVICE_ACTIONS: Mapping[str, tuple[str, ...]] = {
    "dynamodb": _THROUGH_SERVICE,
    "secretsmanager": _THROUGH_SERVICE,
    "rds": tuple(sorted((*_THROUGH_SERVICE, "kms:ListGrants"))),
    "elasticache": _THROUGH_SERVICE,
    "ecr": ("kms:CreateGrant", "kms:DescribeKey", "kms:RetireGrant"),
    "s3": ("kms:Decrypt", "kms:GenerateDataKey"),
    # SQS Developer Guide, "Configuring AWS KMS permissions": producers GenerateDataKey and Decrypt,
    # consumers Decrypt.
    "sqs": ("kms:Decrypt", "kms:GenerateDataKey"),
}

# The kms:ViaService names a service's requests carry, where not just its own: "To use kms:ViaService
# with ElastiCache, include both ViaService names in the condition key value:
# elasticache.AWS_region.amazonaws.com and dax.AWS_region.amazonaws.com" (ElastiCache User Guide,
# "At-Rest Encryption in ElastiCache", "Using customer managed keys from AWS KMS").
VIA_SERVICE_NAMES: Mapping[str, tuple[str, ...]] = {"elasticache": ("elasticache", "dax")}


def via_service(service: str, region: pulumi.Input[str]) -> pulumi.Output[str] | list[pulumi.Output[str]]:
    """The kms:ViaService value (StringEquals: any of a list) for requests `service` makes."""
    names = [
        pulumi.Output.concat(n, ".", region, ".amazonaws.com")
        for n in VIA_SERVICE_NAMES.get(service, (service,))
    ]
    return names[0] if len(names) == 1 else names


# What a running service's role needs for the data it touches, per service (granted by IAM, scoped to
# the key and the service): DynamoDB decrypts the table key with the caller's permission when it has
# none cached; Secrets Manager decrypts a secret's data key for GetSecretValue (ECS Developer Guide,
# "Required IAM permissions for Amazon ECS secrets": kms:Decrypt for a customer managed key); S3
# needs GenerateDataKey to write an object and Decrypt to read it; SQS the same for messages.
READ = "read"
WRITE = "write"
ROLE_ACTIONS: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("dynamodb", READ): ("kms:Decrypt", "kms:DescribeKey"),
    ("dynamodb", WRITE): ("kms:Decrypt", "kms:DescribeKey"),
    ("secretsmanager", READ): ("kms:Decrypt",),
    ("s3", READ): ("kms:Decrypt",),
    ("s3", WRITE): ("kms:Decrypt", "kms:GenerateDataKey"),
    ("sqs", READ): ("kms:Decrypt",),
    ("sqs", WRITE): ("kms:Decrypt", "kms:GenerateDataKey"),
}


def _root(account: pulumi.Input[str], partition: pulumi.Input[str]) -> pulumi.Output[str]:
    return pulumi.Output.concat("arn:", partition, ":iam::", account, ":root")


def admin_statement(account: pulumi.Input[str], partition: pulumi.Input[str]) -> dict[str, Any]:
    return {
        # The account's IAM policies decide who administers the key; nobody uses it directly.
        "Sid": "AccountAdministers",
        "Effect": "Allow",
        "Principal": {"AWS": _root(account, partition)},
        "Action": list(ADMIN_ACTIONS),
        "Resource": "*",
    }


def via_service_statement(
    service: str, region: pulumi.Input[str], account: pulumi.Input[str], partition: pulumi.Input[str]
) -> dict[str, Any]:
    return {
        "Sid": f"UseThrough{service.capitalize()}",
        "Effect": "Allow",
        "Principal": {"AWS": _root(account, partition)},
        "Action": list(VIA_SERVICE_ACTIONS[service]),
        "Resource": "*",
        "Condition": {
            "StringEquals": {
                "kms:ViaService": via_service(service, region),
                "kms:CallerAccount": account,
            }
        },
    }


# Service principals that read a key's metadata (no cryptographic use) for the resources under it:
# DynamoDB checks that a table's key is still enabled and accessible (KMS Developer Guide, "How Amazon
# DynamoDB uses AWS KMS", key policy statement "Allow DynamoDB to get information about the CMK").
METADATA_READERS: Mapping[str, str] = {"dynamodb": "dynamodb.amazonaws.com"}


def metadata_statement(service: str) -> dict[str, Any]:
    return {
        "Sid": f"{service.capitalize()}ReadsKeyMetadata",
        "Effect": "Allow",
        "Principal": {"Service": METADATA_READERS[service]},
        "Action": ["kms:Describe*", "kms:Get*", "kms:List*"],
        "Resource": "*",
    }


def key_policy(*statements: dict[str, Any]) -> pulumi.Output[str]:
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


def log_key_statement(
    region: pulumi.Input[str], account: pulumi.Input[str], partition: pulumi.Input[str]
) -> dict[str, Any]:
    """CloudWatch Logs User Guide, "Encrypt log data in CloudWatch Logs using AWS Key Management Service",
    step 2: the regional service principal logs.<region>.amazonaws.com may use the key, only for log
    groups of this account and region (the kms:EncryptionContext:aws:logs:arn condition; CloudWatch
    Logs passes the log group's ARN as that encryption context). Writers (Lambda, ECS, flow logs, API
    Gateway) and readers need nothing from the key: CloudWatch Logs encrypts and decrypts itself."""
    return {
        "Sid": "CloudWatchLogsEncryptsLogGroups",
        "Effect": "Allow",
        "Principal": {"Service": pulumi.Output.concat("logs.", region, ".amazonaws.com")},
        "Action": [
            "kms:Encrypt*",
            "kms:Decrypt*",
            "kms:ReEncrypt*",
            "kms:GenerateDataKey*",
            "kms:Describe*",
        ],
        "Resource": "*",
        "Condition": {
            "ArnLike": {
                "kms:EncryptionContext:aws:logs:arn": pulumi.Output.concat(
                    "arn:", partition, ":logs:", region, ":", account, ":log-group:*"
                )
            }
        },
    }


def alarm_key_statement(account: pulumi.Input[str]) -> dict[str, Any]:
    """SNS Developer Guide, "Configuring AWS KMS permissions" (CloudWatch alarms publishing to an
    encrypted topic): cloudwatch.amazonaws.com may decrypt and generate data keys, for this account's
    alarms only."""
    return {
        "Sid": "CloudWatchPublishesAlarms",
        "Effect": "Allow",
        "Principal": {"Service": "cloudwatch.amazonaws.com"},
        "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
        "Resource": "*",
        "Condition": {"StringEquals": {"aws:SourceAccount": account}},
    }


# Service principals that encrypt with a key themselves, for a resource of this account (not on a
# role's behalf, so no kms:ViaService): each gets the documented actions, pinned by aws:SourceAccount
# and the aws:SourceArn of the one resource that asks (the confused-deputy guard):
# - ses.amazonaws.com publishing a configuration set's events to an encrypted SNS topic (SES Developer
#   Guide, "Setting up an Amazon SNS event destination for event publishing": "kms:GenerateDataKey*"
#   and "kms:Decrypt", conditions aws:SourceAccount and aws:SourceArn of the configuration set);
# - sns.amazonaws.com delivering a topic's messages to an encrypted SQS queue (SNS Developer Guide,
#   "Encryption at rest", "Enable compatibility between encrypted topics and queues": the same two
#   actions, aws:SourceArn the topic).
SERVICE_PRINCIPAL_ACTIONS: Mapping[str, tuple[str, ...]] = {
    "ses.amazonaws.com": ("kms:Decrypt", "kms:GenerateDataKey*"),
    "sns.amazonaws.com": ("kms:Decrypt", "kms:GenerateDataKey*"),
}


@dataclass(frozen=True)
class ServicePrincipalUse:
    """`principal` (SERVICE_PRINCIPAL_ACTIONS) may use the key for the resource `source_arn` of this
    account only; `sid` names the statement."""

    sid: str
    principal: str
    source_arn: pulumi.Input[str]


def service_principal_statement(use: ServicePrincipalUse, account: pulumi.Input[str]) -> dict[str, Any]:
    return {
        "Sid": use.sid,
        "Effect": "Allow",
        "Principal": {"Service": use.principal},
        "Action": list(SERVICE_PRINCIPAL_ACTIONS[use.principal]),
        "Resource": "*",
        "Condition": {"StringEquals": {"aws:SourceAccount": account, "aws:SourceArn": use.source_arn}},
    }


@dataclass(frozen=True)
class DataKeyArgs:
    # Resource names start with it: `<name>-key`, `<name>-key-alias`.
    name: str
    # The key's alias, without `alias/`.
    alias: str
    description: str
    # The AWS services that encrypt the component's data with the key (VIA_SERVICE_ACTIONS).
    services: Sequence[str]
    # A 30-day deletion window (else 7), for stacks that protect their data.
    protected: bool
    # Service principals that encrypt with the key themselves (SERVICE_PRINCIPAL_ACTIONS).
    service_principals: Sequence[ServicePrincipalUse] = ()


class DataKey:
    """A customer managed key for one component's data (`<name>-key`, `alias/<alias>`, rotated yearly),
    created under that component; `services` are the AWS services that encrypt the component's
    resources with it on the account's behalf (VIA_SERVICE_ACTIONS). `arn` is what those resources
    name as their key; `use_statement` is what a role of the component needs to use that data."""

    def __init__(self, args: DataKeyArgs, parent: pulumi.Resource) -> None:
        name, services = args.name, args.services
        unknown = [s for s in services if s not in VIA_SERVICE_ACTIONS]
        unknown += [
            u.principal for u in args.service_principals if u.principal not in SERVICE_PRINCIPAL_ACTIONS
        ]
        if unknown:
            raise ValueError(f"no documented key policy statement for {unknown}")
        self.services = tuple(services)
        ids = Place.of(parent)
        self._region = ids.region
        child = pulumi.ResourceOptions(parent=parent)
        self.key = aws.kms.Key(
            f"{name}-key",
            description=args.description,
            enable_key_rotation=True,
            deletion_window_in_days=30 if args.protected else 7,
            policy=key_policy(
                admin_statement(ids.account, ids.partition),
                *(via_service_statement(s, ids.region, ids.account, ids.partition) for s in self.services),
                *(metadata_statement(s) for s in self.services if s in METADATA_READERS),
                *(service_principal_statement(u, ids.account) for u in args.service_principals),
            ),
            opts=child,
        )
        aws.kms.Alias(
            f"{name}-key-alias", name=f"alias/{args.alias}", target_key_id=self.key.key_id, opts=child
        )
        self.arn: pulumi.Output[str] = self.key.arn

    @classmethod
    def optional(cls, enabled: bool, args: DataKeyArgs, parent: pulumi.Resource) -> DataKey | None:
        """The key when `enabled` (the stack asks for customer managed keys), else None: AWS's keys."""
        return cls(args, parent) if enabled else None

    def use_statement(self, service: str, access: str, sid: str) -> dict[str, Any]:
        """The IAM statement a role needs to `access` (READ or WRITE) data this key protects through
        `service`: the documented actions on this key, only when that service makes the request."""
        if service not in self.services:
            raise ValueError(f"this key is not used through {service}")
        return statement(
            list(ROLE_ACTIONS[(service, access)]),
            [self.arn],
            sid=sid,
            condition={
                "StringEquals": {
                    "kms:ViaService": pulumi.Output.concat(service, ".", self._region, ".amazonaws.com")
                }
            },
        )


def use_statements(key: DataKey | None, uses: Sequence[tuple[str, str]], sid: str) -> list[dict[str, Any]]:
    """`key.use_statement` for each (service, access), or nothing when the data keeps AWS's keys."""
    if key is None:
        return []
    return [key.use_statement(service, access, f"{sid}{service.capitalize()}") for service, access in uses]


def alarm_key_policy(parent: pulumi.Resource) -> pulumi.Output[str]:
    """The alarm topic key's policy: administered by the account, used by CloudWatch alarms."""
    ids = Place.of(parent)
    return key_policy(admin_statement(ids.account, ids.partition), alarm_key_statement(ids.account))


class LogKey(pulumi.ComponentResource):
    """The stack's key for its CloudWatch log groups (`alias/<prefix>-logs`); `arn` is what a log group
    names as its kms_key_id."""

    def __init__(self, name: str, name_prefix: str, protected: bool, opts: pulumi.ResourceOptions) -> None:
        super().__init__("motion:kms:LogKey", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ids = Place.of(self)
        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"{name_prefix} CloudWatch log groups",
            enable_key_rotation=True,
            deletion_window_in_days=30 if protected else 7,
            policy=key_policy(
                admin_statement(ids.account, ids.partition),
                log_key_statement(ids.region, ids.account, ids.partition),
            ),
            opts=child,
        )
        aws.kms.Alias(
            f"{name}-alias", name=f"alias/{name_prefix}-logs", target_key_id=self.key.key_id, opts=child
        )
        self.arn = self.key.arn
        self.register_outputs({"arn": self.arn})
