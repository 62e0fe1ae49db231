"""IAM (least privilege) and CloudWatch Logs (retention)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator, Sequence
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
    is_unknown,
    number,
    of_type,
    parse_json,
    refers_to,
)

ROLE = "aws:iam/role:Role"
# Resources whose `policy` is an identity policy (what a principal may do).
POLICY_DOCUMENTS = (
    "aws:iam/policy:Policy",
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/userPolicy:UserPolicy",
    "aws:iam/groupPolicy:GroupPolicy",
)
POLICY_ATTACHMENTS = (
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:iam/userPolicyAttachment:UserPolicyAttachment",
    "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
    "aws:iam/policyAttachment:PolicyAttachment",
)
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
KMS_KEY = "aws:kms/key:Key"
# CloudWatch Logs User Guide, "Encrypt log data in CloudWatch Logs using AWS Key Management Service":
# the key policy lets the regional principal logs.<region>.amazonaws.com use the key, conditioned on
# kms:EncryptionContext:aws:logs:arn (the log group's ARN). Without it, associating the key fails.
LOGS_PRINCIPAL = re.compile(r"^logs\.[a-z]{2}(-[a-z]+)+-\d\.amazonaws\.com$")
LOGS_CONTEXT_KEY = "kms:encryptioncontext:aws:logs:arn"
LOGS_KEY_ACTIONS = ("kms:generatedatakey", "kms:decrypt")

# Actions that AWS authorizes only on Resource "*": the service has no resource type to name for
# them (IAM Service Authorization Reference, "Resource types" column empty). Everything else must name
# its resources. Compared in lower case.
RESOURCE_STAR_ACTIONS = frozenset(
    {
        "ecr:getauthorizationtoken",  # the registry login token
        "xray:puttracesegments",
        "xray:puttelemetryrecords",
        "xray:getsamplingrules",
        "xray:getsamplingtargets",
        "xray:getsamplingstatisticsummaries",
        "cloudwatch:putmetricdata",  # scope it with a cloudwatch:namespace condition instead
        "ec2:describenetworkinterfaces",  # Lambda in a VPC
        "ssmmessages:createcontrolchannel",  # ECS Exec
        "ssmmessages:createdatachannel",
        "ssmmessages:opencontrolchannel",
        "ssmmessages:opendatachannel",
        "secretsmanager:getrandompassword",
        "sts:getcalleridentity",
    }
)
_SERVICE_WILDCARD = re.compile(r"^[a-z0-9-]+:\*$")
# AWS managed policies that grant everything, a whole service, or data-plane access to every resource
# of a service (S3 read-only reads every object; the SQS Lambda role reads every queue). The two
# managed policies every Lambda and ECS task uses (AWSLambdaBasicExecutionRole,
# AmazonECSTaskExecutionRolePolicy) are not among them.
_BROAD_MANAGED_POLICY = re.compile(
    r"^arn:aws[a-z-]*:iam::aws:policy/(?:[\w+=,.@-]+/)*"
    r"(?:AdministratorAccess|PowerUserAccess|\w*FullAccess\w*|\w*ReadOnlyAccess\w*"
    r"|AWSLambdaSQSQueueExecutionRole|AWSLambdaDynamoDBExecutionRole|SecretsManagerReadWrite)$"
)
# CloudWatch.16's default: a year of logs in production; any explicit retention elsewhere.
MIN_PRODUCTION_LOG_RETENTION_DAYS = 365


def _documents(resource: Resource) -> Iterator[Any]:
    """The identity policy documents a resource declares; unknown ones (in a preview) are skipped."""
    sources = [resource.get("policy")] if resource.type in POLICY_DOCUMENTS else []
    if resource.type == ROLE:
        inline = resource.get("inlinePolicies")
        sources += [] if is_unknown(inline) else [get_path(p, "policy") for p in as_list(inline)]
    for source in sources:
        document = parse_json(source)
        if isinstance(document, dict):
            yield document


def _allow_statements(resource: Resource) -> Iterator[dict[str, Any]]:
    for document in _documents(resource):
        for statement in as_list(document.get("Statement")):
            if isinstance(statement, dict) and statement.get("Effect") == "Allow":
                yield statement


def _actions(statement: dict[str, Any]) -> list[str]:
    return [a for a in as_list(statement.get("Action")) if isinstance(a, str)]


def _wildcard_actions(resource: Resource, ctx: Context) -> list[str]:
    problems = []
    for statement in _allow_statements(resource):
        if "NotAction" in statement:
            problems.append("an Allow statement uses NotAction, which grants every other action")
        broad = sorted(a for a in _actions(statement) if a == "*" or _SERVICE_WILDCARD.match(a.lower()))
        if broad:
            problems.append(f"allows wildcard actions {', '.join(broad)}: name the actions the role needs")
    return problems


def _is_any_resource(arn: Any) -> bool:
    """ "*", or an ARN whose every part after the service is a wildcard (arn:aws:sqs:*:*:*)."""
    if not isinstance(arn, str):
        return False
    parts = arn.split(":", 5)
    return arn == "*" or (len(parts) == 6 and all(p in ("", "*") for p in parts[3:]) and parts[5] == "*")


def _wildcard_resources(resource: Resource, ctx: Context) -> list[str]:
    problems = []
    for statement in _allow_statements(resource):
        if "NotResource" in statement:
            problems.append("an Allow statement uses NotResource, which grants every other resource")
            continue
        if not any(_is_any_resource(r) for r in as_list(statement.get("Resource"))):
            continue
        unscoped = sorted(a for a in _actions(statement) if a.lower() not in RESOURCE_STAR_ACTIONS)
        if unscoped:
            problems.append(f'allows {", ".join(unscoped)} on Resource "*": name the ARNs')
    return problems


def _broad_managed_policies(resource: Resource, ctx: Context) -> list[str]:
    arns = (
        as_list(resource.get("managedPolicyArns")) if resource.type == ROLE else [resource.get("policyArn")]
    )
    return [
        f"attaches {arn.rsplit('/', 1)[-1]}, which spans every resource of a service: write a policy naming "
        "actions and resources"
        for arn in arns
        if isinstance(arn, str) and _BROAD_MANAGED_POLICY.match(arn)
    ]


def _grants_pass_role(statement: dict[str, Any]) -> bool:
    """Does the statement allow iam:PassRole, by name or by a pattern such as iam:Pass*? ("*" alone is
    iam-no-wildcard-actions' finding.)"""
    return any(a != "*" and fnmatch.fnmatchcase("iam:passrole", a.lower()) for a in _actions(statement))


def _names_passed_to_service(condition: Any) -> bool:
    return isinstance(condition, dict) and any(
        isinstance(keys, dict) and any(str(k).lower() == "iam:passedtoservice" for k in keys)
        for keys in condition.values()
    )


def _pass_role_scoped(resource: Resource, ctx: Context) -> list[str]:
    """iam:PassRole lets a principal hand a role's permissions to a service it controls, so it names
    the roles and the service (IAM User Guide, "Grant a user permissions to pass a role to an AWS
    service": restrict Resource to the roles, and use the iam:PassedToService condition key)."""
    problems = []
    for statement in _allow_statements(resource):
        if not _grants_pass_role(statement):
            continue
        resources = statement.get("Resource")
        if not is_unknown(resources):
            broad = sorted(r for r in as_list(resources) if isinstance(r, str) and ("*" in r or "?" in r))
            if broad or "NotResource" in statement:
                problems.append(
                    f"iam:PassRole on {', '.join(broad) or 'NotResource'}: name the role ARNs it may pass"
                )
        condition = statement.get("Condition")
        if not is_unknown(condition) and not _names_passed_to_service(condition):
            problems.append(
                "iam:PassRole without an iam:PassedToService condition: name the service it passes to"
            )
    return problems


def _log_retention(group: Resource, ctx: Context) -> list[str]:
    value = group.get("retentionInDays")
    if is_unknown(value):
        return []
    days = number(value)
    if days is None or days <= 0:
        return ["log group keeps logs forever: set retentionInDays"]
    if ctx.production and days < MIN_PRODUCTION_LOG_RETENTION_DAYS:
        return [
            f"retentionInDays is {days:g}; production keeps logs at least {MIN_PRODUCTION_LOG_RETENTION_DAYS} days"
        ]
    return []


def _grants_cloudwatch_logs(policy: Any) -> bool:
    for statement in as_list(get_path(policy, "Statement")):
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        services = as_list(get_path(statement, "Principal", "Service"))
        if not any(isinstance(s, str) and LOGS_PRINCIPAL.match(s) for s in services):
            continue
        actions = [a.lower() for a in as_list(statement.get("Action")) if isinstance(a, str)]
        allowed = all(any(fnmatch.fnmatchcase(needed, a) for a in actions) for needed in LOGS_KEY_ACTIONS)
        conditions = statement.get("Condition") or {}
        scoped = any(
            operator in ("ArnLike", "ArnEquals")
            and isinstance(values, dict)
            and any(k.lower() == LOGS_CONTEXT_KEY for k in values)
            for operator, values in conditions.items()
        )
        if allowed and scoped:
            return True
    return False


def _log_group_keys(resources: Sequence[Resource], ctx: Context) -> list[Violation]:
    keys = of_type(resources, KMS_KEY)
    found = []
    for group in of_type(resources, LOG_GROUP):
        for key in keys:
            if not refers_to(group, "kmsKeyId", key):
                continue
            policy = parse_json(key.get("policy"))
            if is_unknown(policy) or _grants_cloudwatch_logs(policy):
                continue
            found.append(
                Violation(
                    group.urn,
                    f"log group '{group.name}' names key '{key.name}', whose policy does not let "
                    "logs.<region>.amazonaws.com use it under kms:EncryptionContext:aws:logs:arn: AWS rejects it",
                )
            )
    return found


RULES: list[Rule] = [
    ResourceRule(
        name="iam-no-wildcard-actions",
        control="FSBP IAM.21",
        description='IAM policies allow no "*" or "service:*" actions, and no NotAction.',
        severity="high",
        remediation="List the actions the principal calls (e.g. sqs:SendMessage), one statement per resource set.",
        resource_types=(*POLICY_DOCUMENTS, ROLE),
        check=_wildcard_actions,
    ),
    ResourceRule(
        name="iam-no-wildcard-resources",
        control="Motion IAM-1",
        description='IAM policies allow Resource "*" only for actions that have no resource to name.',
        severity="high",
        remediation='Name the bucket, table, queue, secret or key ARNs (and `arn/*` for objects); Resource "*" is '
        "kept for actions such as ecr:GetAuthorizationToken and cloudwatch:PutMetricData.",
        resource_types=(*POLICY_DOCUMENTS, ROLE),
        check=_wildcard_resources,
    ),
    ResourceRule(
        name="iam-no-broad-managed-policies",
        control="FSBP IAM.1",
        description="No principal gets an AWS managed policy spanning a service's resources "
        "(AdministratorAccess, PowerUserAccess, *FullAccess, *ReadOnlyAccess, ...).",
        severity="high",
        remediation="Replace the managed policy with an inline or customer managed policy naming actions and ARNs.",
        resource_types=(*POLICY_ATTACHMENTS, ROLE),
        check=_broad_managed_policies,
    ),
    ResourceRule(
        name="iam-pass-role-scoped",
        control="Motion IAM-2",
        description="iam:PassRole names the roles it may pass and, with iam:PassedToService, the service.",
        severity="high",
        remediation="List the role ARNs (no wildcards) and add a StringEquals iam:PassedToService condition "
        "(e.g. ecs-tasks.amazonaws.com).",
        resource_types=(*POLICY_DOCUMENTS, ROLE),
        check=_pass_role_scoped,
    ),
    ResourceRule(
        name="cloudwatch-log-retention",
        control="NIST CloudWatch.16",
        description=f"Every log group has a retention ({MIN_PRODUCTION_LOG_RETENTION_DAYS} days or more in production).",
        severity="medium",
        remediation="Set retention_in_days (config motion:logRetentionDays; production uses 365 or more).",
        resource_types=(LOG_GROUP,),
        check=_log_retention,
    ),
    StackRule(
        name="cloudwatch-log-group-key-policy",
        control="Motion ENC-2",
        description="A log group encrypted with a key of the stack names a key CloudWatch Logs may use, for "
        "this account's log groups only.",
        severity="high",
        remediation="Give the key a statement allowing Service logs.<region>.amazonaws.com kms:Encrypt*, Decrypt*, "
        "ReEncrypt*, GenerateDataKey*, Describe* with ArnLike kms:EncryptionContext:aws:logs:arn "
        "arn:aws:logs:<region>:<account>:log-group:* (components/aws/kms.py).",
        resource_types=(LOG_GROUP, KMS_KEY),
        check=_log_group_keys,
    ),
]
