"""One Lambda function with its own log group, role and inline policy: the pieces every function needs,
wired so the function starts with logging and permissions already in place."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pulumi
import pulumi_aws as aws

from components.aws.iam import assume_role_policy, policy_document, statement
from components.aws.lambda_archive import ARCHITECTURE, RUNTIME


def code_archive(root: Path, files: Sequence[Path]) -> pulumi.AssetArchive:
    """A function's code from an explicit, sorted file list (components/aws/lambda_archive.py), so previews
    only change when the code does."""
    return pulumi.AssetArchive({p.as_posix(): pulumi.FileAsset(str(root / p)) for p in files})


def lambda_function(
    parent: pulumi.Resource,
    name: str,
    function: str,
    handler: str,
    code: pulumi.AssetArchive,
    *,
    layers: Sequence[pulumi.Input[str]],
    name_prefix: str,
    log_retention_days: int,
    timeout: int,
    environment: dict[str, pulumi.Input[str]] | None,
    statements: list[dict[str, object]],
    reserved_concurrency: int = 0,
    log_kms_key_arn: pulumi.Input[str] | None = None,
) -> aws.lambda_.Function:
    """`<name_prefix>-<function>`; its children are named `<name>-<function>[-logs|-role|-policy]`.

    `reserved_concurrency` above 0 reserves that many executions for the function, which is also its
    ceiling; 0 leaves it on the account's unreserved pool (the provider's default, -1: an explicit 0
    would throttle every invocation)."""
    child = pulumi.ResourceOptions(parent=parent)
    full_name = f"{name_prefix}-{function}"
    # Created before the function, so Lambda never creates an unmanaged group without retention.
    log_group = aws.cloudwatch.LogGroup(
        f"{name}-{function}-logs",
        name=f"/aws/lambda/{full_name}",
        retention_in_days=log_retention_days,
        kms_key_id=log_kms_key_arn,
        opts=child,
    )
    role = aws.iam.Role(
        f"{name}-{function}-role",
        assume_role_policy=assume_role_policy("lambda.amazonaws.com"),
        opts=child,
    )
    logs = statement(
        ["logs:CreateLogStream", "logs:PutLogEvents"],
        [pulumi.Output.concat(log_group.arn, ":*")],
        sid="WriteLogs",
    )
    policy = aws.iam.RolePolicy(
        f"{name}-{function}-policy", role=role.id, policy=policy_document(logs, *statements), opts=child
    )
    return aws.lambda_.Function(
        f"{name}-{function}",
        name=full_name,
        runtime=RUNTIME,
        architectures=[ARCHITECTURE],
        layers=list(layers),
        handler=handler,
        code=code,
        role=role.arn,
        timeout=timeout,
        memory_size=256,
        reserved_concurrent_executions=reserved_concurrency or None,
        # None: a function configured by its events alone has no environment block at all.
        environment=aws.lambda_.FunctionEnvironmentArgs(variables=environment) if environment else None,
        logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="JSON", log_group=log_group.name),
        tracing_config=aws.lambda_.FunctionTracingConfigArgs(mode="PassThrough"),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[log_group, policy]),
    )
