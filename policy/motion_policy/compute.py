"""Compute: Lambda, ECS (Fargate) and ECR."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .model import (
    Context,
    Resource,
    ResourceRule,
    Rule,
    StackRule,
    Violation,
    as_bool,
    as_list,
    get_path,
    is_set,
    is_true,
    is_unknown,
    number,
    of_type,
    parse_json,
    referrers,
)

FUNCTION = "aws:lambda/function:Function"
PERMISSION = "aws:lambda/permission:Permission"
FUNCTION_URL = "aws:lambda/functionUrl:FunctionUrl"
EVENT_SOURCE_MAPPING = "aws:lambda/eventSourceMapping:EventSourceMapping"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
ECS_SERVICE = "aws:ecs/service:Service"
ECS_CLUSTER = "aws:ecs/cluster:Cluster"
NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
REPOSITORY = "aws:ecr/repository:Repository"
ECR_LIFECYCLE_POLICY = "aws:ecr/lifecyclePolicy:LifecyclePolicy"

# Runtimes AWS supports (not deprecated) as of November 2026, all on Amazon Linux 2023. Review this
# list when AWS publishes deprecation dates (docs: "Lambda runtimes", "Runtime deprecation policy").
SUPPORTED_LAMBDA_RUNTIMES = frozenset(
    {
        "python3.12", "python3.13", "python3.14",
        "nodejs22.x", "nodejs24.x",
        "java21", "java25",
        "dotnet10",
        "ruby3.3", "ruby3.4",
        "provided.al2023",
    }
)  # fmt: skip
CONTAINER_INSIGHTS_ON = frozenset({"enabled", "enhanced"})
MIN_PRODUCTION_TASKS = 2

# --- secrets in environment variables ---------------------------------------------------------------
# A variable is taken for a secret when a word of its name (split at "_", "-", ".") names a secret, or
# KEY follows a word that makes it a key (API_KEY, not PUBLISHABLE_KEY: Clerk's publishable key is
# public). Names ending in a word that makes them a pointer or a setting (DB_SECRET_ARN,
# AUTH_TOKEN_TTL, PASSWORD_FILE) are not secrets: that is how a service should find its secret. A
# value with credentials in a URL (postgres://user:pass@host) is a secret whatever its name.
SECRET_WORDS = frozenset(
    {"PASSWORD", "PASSWD", "PASS", "PWD", "SECRET", "SECRETS", "TOKEN", "CREDENTIAL", "CREDENTIALS", "APIKEY"}
)
KEY_QUALIFIERS = frozenset({"API", "ACCESS", "PRIVATE", "SECRET", "SIGNING", "ENCRYPTION", "MASTER", "HMAC"})
POINTER_SUFFIXES = frozenset(
    {"ARN", "URL", "URI", "ID", "NAME", "FILE", "PATH", "HEADER", "TTL", "SECONDS", "ENDPOINT", "ISSUER"}
)
_CREDENTIALS_IN_URL = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


def looks_secret(name: str, value: Any = None) -> bool:
    if isinstance(value, str) and _CREDENTIALS_IN_URL.search(value):
        return True
    words = [w for w in re.split(r"[^A-Z0-9]+", name.upper()) if w]
    if not words or words[-1] in POINTER_SUFFIXES:
        return False
    if SECRET_WORDS & set(words):
        return True
    return any(word == "KEY" and i > 0 and words[i - 1] in KEY_QUALIFIERS for i, word in enumerate(words))


def _secret_env_names(variables: Any) -> list[str]:
    """Names of secret-looking variables in an ECS `environment` list or a Lambda `variables` map."""
    if isinstance(variables, dict):
        pairs = list(variables.items())
    else:
        pairs = [(get_path(e, "name"), get_path(e, "value")) for e in as_list(variables)]
    return sorted(n for n, v in pairs if isinstance(n, str) and looks_secret(n, v))


# --- Lambda -----------------------------------------------------------------------------------------


def _lambda_runtime(function: Resource, ctx: Context) -> list[str]:
    if function.get("packageType") == "Image":
        return []  # a container image brings its own runtime; ECR scanning covers it
    runtime = function.get("runtime")
    if is_unknown(runtime) or runtime in SUPPORTED_LAMBDA_RUNTIMES:
        return []
    return [
        f"runtime {runtime!r} is deprecated or unknown; use one of {', '.join(sorted(SUPPORTED_LAMBDA_RUNTIMES))}"
    ]


def _sqs_partial_batch(mapping: Resource, ctx: Context) -> list[str]:
    """Without ReportBatchItemFailures a handler's failed record fails the whole batch: Lambda makes
    every record visible again, and the ones already handled run again (Lambda Developer Guide,
    "Handling errors for an SQS event source in Lambda", "Implementing partial batch responses")."""
    source = mapping.get("eventSourceArn")
    if is_unknown(source) or not (
        isinstance(source, str) and source.startswith("arn:aws") and ":sqs:" in source
    ):
        return []
    types = mapping.get("functionResponseTypes")
    if is_unknown(types) or "ReportBatchItemFailures" in [str(t) for t in as_list(types)]:
        return []
    return [
        f"the mapping from {source} does not report batch item failures: set "
        'functionResponseTypes ["ReportBatchItemFailures"] and return batchItemFailures'
    ]


def _lambda_public_invoke(resource: Resource, ctx: Context) -> list[str]:
    if resource.type == FUNCTION_URL:
        if resource.get("authorizationType") == "NONE":
            return ['function URL has authorizationType "NONE": anyone on the internet can invoke it']
        return []
    principal = resource.get("principal")
    if principal == "*":
        return ['permission grants invoke to Principal "*"']
    if resource.get("functionUrlAuthType") == "NONE":
        return ['permission opens a function URL with auth type "NONE"']
    scoped = is_set(resource.get("sourceArn")) or is_set(resource.get("sourceAccount"))
    if isinstance(principal, str) and principal.endswith(".amazonaws.com") and not scoped:
        # Without a source, any account's API, bucket or topic of that service could invoke the function.
        return [f"permission for service {principal} names no sourceArn (or sourceAccount)"]
    return []


def _lambda_log_group(function: Resource, ctx: Context) -> list[str]:
    if is_set(function.get("loggingConfig", "logGroup")):
        return []
    return [
        "function logs to an implicit /aws/lambda log group that never expires: create a LogGroup "
        "with a retention and set loggingConfig.logGroup to its name"
    ]


def _lambda_env_secrets(function: Resource, ctx: Context) -> list[str]:
    variables = function.get("environment", "variables")
    if is_unknown(variables):
        return []
    return [
        f"environment variable {n} looks like a secret: pass its Secrets Manager ARN and read it at runtime"
        for n in _secret_env_names(variables)
    ]


# --- ECS --------------------------------------------------------------------------------------------


def _containers(task: Resource) -> list[dict[str, Any]]:
    """The task's container definitions.

    `containerDefinitions` is one JSON string. In a preview it is unknown as soon as any part of it
    is (an image digest, a log group name), and then nothing can be checked until the update.
    """
    parsed = parse_json(task.get("containerDefinitions"))
    if is_unknown(parsed):
        return []
    return [c for c in as_list(parsed) if isinstance(c, dict)]


def _label(container: dict[str, Any]) -> str:
    return f"container '{container.get('name', '?')}'"


def _ecs_readonly_root(task: Resource, ctx: Context) -> list[str]:
    return [
        f"{_label(c)} has a writable root filesystem: set readonlyRootFilesystem true "
        "(mount a volume for scratch space)"
        for c in _containers(task)
        if c.get("readonlyRootFilesystem") is not True
    ]


def _ecs_non_privileged(task: Resource, ctx: Context) -> list[str]:
    return [f"{_label(c)} runs privileged" for c in _containers(task) if c.get("privileged") is True]


def _ecs_logging(task: Resource, ctx: Context) -> list[str]:
    problems = []
    for c in _containers(task):
        driver = get_path(c, "logConfiguration", "logDriver")
        options = get_path(c, "logConfiguration", "options")
        options = options if isinstance(options, dict) else {}
        if not driver:
            problems.append(f"{_label(c)} has no logConfiguration")
        elif driver == "awslogs" and not options.get("awslogs-group"):
            problems.append(f"{_label(c)} logs to awslogs without an awslogs-group")
        elif driver == "awslogs" and str(options.get("awslogs-create-group", "")).lower() == "true":
            problems.append(
                f"{_label(c)} lets awslogs create its log group (no retention): use a managed LogGroup"
            )
    return problems


def _ecs_env_secrets(task: Resource, ctx: Context) -> list[str]:
    return [
        f"{_label(c)} passes {name} as a plain environment variable: use the container's secrets (valueFrom)"
        for c in _containers(task)
        for name in _secret_env_names(c.get("environment"))
    ]


def _ecs_container_insights(cluster: Resource, ctx: Context) -> list[str]:
    settings = cluster.get("settings")
    if is_unknown(settings):
        return []
    for setting in as_list(settings):
        value = get_path(setting, "value")
        if get_path(setting, "name") == "containerInsights" and (
            is_unknown(value) or value in CONTAINER_INSIGHTS_ON
        ):
            return []
    return ['Container Insights is off: add settings [{"name": "containerInsights", "value": "enabled"}]']


def _ecs_redundant(service: Resource, ctx: Context) -> list[str]:
    value = service.get("desiredCount")
    count = number(value)
    if is_unknown(value) or (count is not None and count >= MIN_PRODUCTION_TASKS):
        return []
    shown = "unset" if count is None else f"{count:g}"
    return [f"desiredCount is {shown}; production runs at least {MIN_PRODUCTION_TASKS} tasks across AZs"]


def _api_reserved_concurrency(resources: Sequence[Resource], ctx: Context) -> list[Violation]:
    # A function API Gateway invokes scales with its callers: without reserved concurrency a flood of
    # requests takes the account's whole pool (every other function throttles), and other functions'
    # bursts can starve it. Reserved concurrency is both its share and its ceiling (PutFunctionConcurrency).
    found: list[Violation] = []
    for function in of_type(resources, FUNCTION):
        invoked_by_api = any(
            p.get("principal") == "apigateway.amazonaws.com"
            for p in referrers(function, resources, (PERMISSION,), "function")
        )
        if not invoked_by_api:
            continue
        value = function.get("reservedConcurrentExecutions")
        reserved = number(value)
        if is_unknown(value) or (reserved is not None and reserved >= 1):
            continue
        shown = "unset" if reserved is None else f"{reserved:g}"
        found.append(
            Violation(
                function.urn,
                f"function '{function.name}' is invoked by API Gateway with reservedConcurrentExecutions "
                f"{shown}: reserve at least 1",
            )
        )
    return found


def _ecs_public_ip(resources: Sequence[Resource], ctx: Context) -> list[Violation]:
    # Without NAT (dev), tasks in public subnets need a public IP to reach AWS APIs; their security
    # group admits only the ALB. Once the stack has NAT gateways, a public IP is pure exposure.
    if not of_type(resources, NAT_GATEWAY):
        return []
    return [
        Violation(s.urn, f"service '{s.name}' assigns public IPs although the stack has NAT gateways")
        for s in of_type(resources, ECS_SERVICE)
        if as_bool(s.get("networkConfiguration", "assignPublicIp")) is True
    ]


# --- ECR --------------------------------------------------------------------------------------------


def _ecr_scan_on_push(repo: Resource, ctx: Context) -> list[str]:
    if is_true(repo.get("imageScanningConfiguration", "scanOnPush")):
        return []
    return ["images are not scanned on push: set imageScanningConfiguration.scanOnPush true"]


def _ecr_immutable(repo: Resource, ctx: Context) -> list[str]:
    mutability = repo.get("imageTagMutability")
    if is_unknown(mutability) or (isinstance(mutability, str) and mutability.startswith("IMMUTABLE")):
        return []
    return ['image tags are mutable: set imageTagMutability "IMMUTABLE" and tag images by content']


def _ecr_lifecycle(resources: Sequence[Resource], ctx: Context) -> list[Violation]:
    return [
        Violation(repo.urn, f"repository '{repo.name}' has no lifecycle policy")
        for repo in of_type(resources, REPOSITORY)
        if not referrers(repo, resources, (ECR_LIFECYCLE_POLICY,), "repository")
    ]


RULES: list[Rule] = [
    ResourceRule(
        name="lambda-supported-runtime",
        control="FSBP Lambda.2",
        description="Lambda functions use a runtime AWS still supports.",
        severity="medium",
        remediation="Set runtime to a supported version (Python: python3.13).",
        resource_types=(FUNCTION,),
        check=_lambda_runtime,
    ),
    ResourceRule(
        name="lambda-no-public-invoke",
        control="FSBP Lambda.1",
        description="Nobody outside the named source can invoke a Lambda function.",
        severity="critical",
        remediation="Grant lambda:InvokeFunction to the service principal with source_arn set to the calling "
        "resource (e.g. the API's execution ARN + '/*/*'); never to '*'; give function URLs AWS_IAM auth.",
        resource_types=(PERMISSION, FUNCTION_URL),
        check=_lambda_public_invoke,
    ),
    ResourceRule(
        name="lambda-sqs-partial-batch-responses",
        control="Motion REL-7",
        description="Lambda event source mappings from SQS report batch item failures, so one failed record "
        "does not send a whole batch round again.",
        severity="medium",
        remediation='Set function_response_types=["ReportBatchItemFailures"] on the mapping and have the handler '
        'return {"batchItemFailures": [{"itemIdentifier": <messageId>}, ...]}.',
        resource_types=(EVENT_SOURCE_MAPPING,),
        check=_sqs_partial_batch,
    ),
    ResourceRule(
        name="lambda-managed-log-group",
        control="NIST CloudWatch.16",
        description="Lambda functions log to a log group the stack manages (and so gives a retention).",
        severity="low",
        remediation="Create aws.cloudwatch.LogGroup with retention_in_days and set "
        'logging_config={"log_format": "JSON", "log_group": log_group.name}.',
        resource_types=(FUNCTION,),
        check=_lambda_log_group,
    ),
    ResourceRule(
        name="lambda-no-secrets-in-environment",
        control="Motion SEC-2",
        description="Lambda environment variables carry no secrets (they are readable with lambda:GetFunction).",
        severity="high",
        remediation="Store the secret in Secrets Manager, pass its ARN (…_SECRET_ARN) and read it at runtime.",
        resource_types=(FUNCTION,),
        check=_lambda_env_secrets,
    ),
    StackRule(
        name="lambda-api-reserved-concurrency",
        control="Motion REL-6",
        description="In production, Lambda functions behind API Gateway have reserved concurrency.",
        severity="medium",
        remediation="Set reserved_concurrent_executions on the function (config motion:mailApiReservedConcurrency).",
        resource_types=(FUNCTION, PERMISSION),
        check=_api_reserved_concurrency,
        production_only=True,
    ),
    ResourceRule(
        name="ecs-readonly-root-filesystem",
        control="FSBP ECS.5",
        description="ECS containers have a read-only root filesystem.",
        severity="high",
        remediation='Set "readonlyRootFilesystem": true in every container definition; mount a task volume '
        "(e.g. at /tmp) where the service must write.",
        resource_types=(TASK_DEFINITION,),
        check=_ecs_readonly_root,
    ),
    ResourceRule(
        name="ecs-non-privileged",
        control="FSBP ECS.4",
        description="ECS containers do not run privileged.",
        severity="high",
        remediation='Remove "privileged": true from the container definition.',
        resource_types=(TASK_DEFINITION,),
        check=_ecs_non_privileged,
    ),
    ResourceRule(
        name="ecs-logging",
        control="FSBP ECS.9",
        description="ECS containers send their logs to a managed log group.",
        severity="high",
        remediation='Set "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": log_group.name, '
        '"awslogs-region": region, "awslogs-stream-prefix": service}} without awslogs-create-group.',
        resource_types=(TASK_DEFINITION,),
        check=_ecs_logging,
    ),
    ResourceRule(
        name="ecs-no-secrets-in-environment",
        control="FSBP ECS.8",
        description="ECS containers receive secrets through `secrets`, never as plain environment variables.",
        severity="high",
        remediation='Move the value to Secrets Manager and list it under "secrets": [{"name": ..., '
        '"valueFrom": secret ARN}]; the execution role needs secretsmanager:GetSecretValue on that ARN.',
        resource_types=(TASK_DEFINITION,),
        check=_ecs_env_secrets,
    ),
    ResourceRule(
        name="ecs-container-insights",
        control="FSBP ECS.12",
        description="In production, ECS clusters have Container Insights on.",
        severity="medium",
        remediation='Set settings=[{"name": "containerInsights", "value": "enabled"}] (config motion:containerInsights).',
        resource_types=(ECS_CLUSTER,),
        check=_ecs_container_insights,
        production_only=True,
    ),
    ResourceRule(
        name="ecs-service-redundancy",
        control="Motion REL-3",
        description=f"In production, every ECS service runs at least {MIN_PRODUCTION_TASKS} tasks.",
        severity="medium",
        remediation="Set desired_count (and the autoscaling minimum) to 2 or more "
        "(config motion:<service>DesiredCount / MinCount).",
        resource_types=(ECS_SERVICE,),
        check=_ecs_redundant,
        production_only=True,
    ),
    StackRule(
        name="ecs-no-public-ip-behind-nat",
        control="FSBP ECS.2",
        description="ECS services get no public IP when the stack has NAT gateways for egress.",
        severity="high",
        remediation='Set network_configuration={"assign_public_ip": False, "subnets": private subnets}.',
        resource_types=(ECS_SERVICE,),
        check=_ecs_public_ip,
    ),
    ResourceRule(
        name="ecr-scan-on-push",
        control="FSBP ECR.1",
        description="ECR repositories scan images on push.",
        severity="high",
        remediation='Set image_scanning_configuration={"scan_on_push": True}.',
        resource_types=(REPOSITORY,),
        check=_ecr_scan_on_push,
    ),
    ResourceRule(
        name="ecr-immutable-tags",
        control="FSBP ECR.2",
        description="ECR repositories have immutable tags, so a deployed tag always means the same image.",
        severity="medium",
        remediation='Set image_tag_mutability="IMMUTABLE" and push each build under a unique tag (its digest).',
        resource_types=(REPOSITORY,),
        check=_ecr_immutable,
    ),
    StackRule(
        name="ecr-lifecycle-policy",
        control="FSBP ECR.3",
        description="ECR repositories have a lifecycle policy.",
        severity="medium",
        remediation="Add aws.ecr.LifecyclePolicy(repository=repo.name) that expires untagged and old images.",
        resource_types=(REPOSITORY,),
        check=_ecr_lifecycle,
    ),
]
