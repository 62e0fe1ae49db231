"""Small helpers for IAM documents whose ARNs are still Outputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi


def statement(
    actions: Sequence[str],
    resources: Sequence[pulumi.Input[str]],
    sid: str | None = None,
    effect: str = "Allow",
    condition: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One policy statement; actions and resources are always named (never "*" for data-plane actions)."""
    stmt: dict[str, Any] = {"Effect": effect, "Action": sorted(actions), "Resource": list(resources)}
    if sid:
        stmt["Sid"] = sid
    if condition:
        stmt["Condition"] = condition
    return stmt


def policy_document(*statements: dict[str, Any]) -> pulumi.Output[str]:
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


def assume_role_policy(
    service: str,
    source_account: pulumi.Input[str] | None = None,
    source_arn: pulumi.Input[str] | None = None,
) -> pulumi.Output[str]:
    """Trust policy for an AWS service principal, pinned to our account (and to the calling resources'
    ARN pattern) when given, against the confused deputy."""
    stmt: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    }
    condition: dict[str, Any] = {}
    if source_account is not None:
        condition["StringEquals"] = {"aws:SourceAccount": source_account}
    if source_arn is not None:
        condition["ArnLike"] = {"aws:SourceArn": source_arn}
    if condition:
        stmt["Condition"] = condition
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": [stmt]})
