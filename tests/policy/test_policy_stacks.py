"""Every policy rule over every resource of both stacks, taken from the program under mocks: the program
must not violate any of them. A violation is fixed in the component, never by weakening a rule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from policy.motion_policy.model import STACKS, Context, Finding, Resource, ResourceRule, evaluate, refers_to
from policy.motion_policy.rules import RULES
from stacktools.mocked_program import computed_outputs
from tests.infra.harness import RecordedResource, StackRun, run_stack, run_with


def provider_urn(reference: str | None) -> str | None:
    """The engine names a resource's provider as "<provider URN>::<provider id>"."""
    if not reference:
        return None
    parts = reference.split("::")
    return "::".join(parts[:4]) if len(parts) > 4 else reference


def as_inputs(recorded: RecordedResource) -> Resource:
    """What a resource policy sees: the resource's inputs."""
    return Resource(
        type=recorded.type,
        name=recorded.name,
        urn=recorded.urn,
        props=recorded.inputs,
        parent=recorded.parent,
        provider=provider_urn(recorded.provider),
        id=recorded.id,
    )


def as_state(recorded: RecordedResource, region: str) -> Resource:
    """What a stack policy sees: the outputs, i.e. the inputs plus what the (mocked) cloud computed."""
    outputs = {**recorded.inputs, **computed_outputs(recorded.type, recorded.name, recorded.inputs, region)}
    return Resource(
        type=recorded.type,
        name=recorded.name,
        urn=recorded.urn,
        props=outputs,
        parent=recorded.parent,
        provider=provider_urn(recorded.provider),
        id=recorded.id,
    )


def check(run: StackRun) -> list[Finding]:
    ctx = Context(run.stack)
    region = getattr(run.config, "region", "us-east-1")
    inputs = [as_inputs(r) for r in run.resources]
    state = [as_state(r, region) for r in run.resources]
    resource_rules = [r for r in RULES if isinstance(r, ResourceRule)]
    stack_rules = [r for r in RULES if not isinstance(r, ResourceRule)]
    return evaluate(resource_rules, inputs, ctx) + evaluate(stack_rules, state, ctx)


def describe(findings: Sequence[Finding]) -> str:
    return "\n".join(f"  [{f.rule}] {f.urn or '(stack)'}\n      {f.message}" for f in findings)


@pytest.mark.parametrize("stack", STACKS)
def test_the_stack_violates_no_policy(stack: str) -> None:
    findings = check(run_stack(stack))
    assert not findings, f"{len(findings)} policy violation(s) in stack {stack}:\n{describe(findings)}"


# Both stacks with a Route 53 hosted zone (components/dns.py): the certificate and records it adds.
ZONED: dict[str, dict[str, Any]] = {
    "dev": {
        "hostedZoneId": "Z0123456789ABCDEFGHIJ",
        "hostedZoneName": "motion.example",
        "domain": "api.dev.motion.example",
    },
    "production": {
        "hostedZoneId": "Z0123456789ABCDEFGHIJ",
        "hostedZoneName": "motion.example",
        "certificateArn": "",
    },
}


@pytest.mark.parametrize("stack", STACKS)
def test_the_stack_with_a_hosted_zone_violates_no_policy(stack: str) -> None:
    run = run_with(stack, **ZONED[stack])
    assert run.of_type("aws:acm/certificateValidation:CertificateValidation")
    findings = check(run)
    assert not findings, f"{len(findings)} policy violation(s) in stack {stack}:\n{describe(findings)}"


def test_every_rule_has_something_to_check() -> None:
    # A rule whose resource types the program never creates passes vacuously: a renamed type token
    # or a component that moved to another resource type would silently switch the check off.
    types = {r.type for stack in STACKS for r in run_stack(stack).resources}
    idle = sorted(rule.name for rule in RULES if rule.resource_types and not types & set(rule.resource_types))
    assert not idle, f"rules that match no resource of either stack: {idle}"


def test_the_pairing_finds_each_buckets_settings() -> None:
    # The S3 rules pair settings with buckets by reference; make sure that is what makes them pass
    # (a bucket paired with nothing would be reported, so this guards the harness assumptions too).
    run = run_stack("production")
    region = getattr(run.config, "region", "us-east-1")
    state = [as_state(r, region) for r in run.resources]
    buckets = [r for r in state if r.type == "aws:s3/bucket:Bucket"]
    settings = [r for r in state if r.type == "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"]
    assert buckets and len(settings) == len(buckets)
    assert all(sum(refers_to(s, "bucket", b) for b in buckets) == 1 for s in settings)
