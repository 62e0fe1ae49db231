"""The CrossGuard adapter: every rule becomes a mandatory policy, and the policies report what the rules
find when fed the objects pulumi_policy builds from the engine's messages (proxied props with
unknown-value sentinels, provider and dependency objects)."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_BOOLEAN_VALUE, UNKNOWN_STRING_VALUE, unknown_checking_proxy

from policy.motion_policy import pack
from policy.motion_policy.model import STACKS, UNKNOWN, Context, Resource, ResourceRule
from policy.motion_policy.rules import RULES, RULES_BY_NAME
from tests.policy.policy_cases import CASES, Case, aws_provider, res, tagged_bucket

POLICY_DIR = Path(__file__).resolve().parents[2] / "policy"
POLICIES = {p.name: p for p in pack.build_policies()}


def engine_value(value: Any) -> Any:
    """How the engine encodes a value: unknowns as pulumi_policy's sentinel strings."""
    if value is UNKNOWN:
        return UNKNOWN_STRING_VALUE
    if isinstance(value, dict):
        return {k: engine_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [engine_value(v) for v in value]
    return value


def options(parent: str | None = None) -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], parent)


def provider_of(resource: Resource, resources: tuple[Resource, ...]) -> PolicyProviderResource | None:
    found = next((r for r in resources if r.urn == resource.provider), None)
    if found is None:
        return None
    return PolicyProviderResource(
        found.type, unknown_checking_proxy(engine_value(dict(found.props))), found.urn, found.name
    )


def policy_resources(resources: tuple[Resource, ...]) -> list[PolicyResource]:
    # A stack policy sees outputs, which (for bridged providers) include the resource's id.
    built = {
        r.urn: PolicyResource(
            r.type,
            unknown_checking_proxy(engine_value({"id": r.id, **r.props})),
            r.urn,
            r.name,
            options(r.parent),
            provider_of(r, resources),
            None,
            [],
            {},
        )
        for r in resources
    }
    for r in resources:
        built[r.urn].property_dependencies = {
            prop: [built[u] for u in urns if u in built] for prop, urns in r.property_dependencies.items()
        }
    return list(built.values())


class Reporter:
    """Stands in for CrossGuard's report_violation callback."""

    def __init__(self) -> None:
        self.reported: list[tuple[str, str | None]] = []

    def __call__(self, message: str, urn: str | None = None) -> None:
        self.reported.append((message, urn))


def run_policy(name: str, resources: tuple[Resource, ...], stack: str) -> list[tuple[str, str | None]]:
    """What the adapted policy reports to CrossGuard for these resources."""
    report = Reporter()
    policy = POLICIES[name]
    config = {"stack": stack}
    if isinstance(policy, ResourceValidationPolicy):
        for r in resources:
            args = ResourceValidationArgs(
                r.type,
                unknown_checking_proxy(engine_value(dict(r.props))),
                r.urn,
                r.name,
                options(r.parent),
                provider_of(r, resources),
                config,
            )
            policy.validate(args, report)
    else:
        assert isinstance(policy, StackValidationPolicy)
        policy.validate(StackValidationArgs(policy_resources(resources), config), report)
    return report.reported


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_the_adapted_policy_reports_what_the_rule_finds(case: Case) -> None:
    reported = run_policy(case.rule, case.resources, case.stack)
    assert bool(reported) == case.violates, reported
    if isinstance(RULES_BY_NAME[case.rule], ResourceRule):
        assert all(urn is None for _, urn in reported)  # CrossGuard attaches the resource itself


def test_every_rule_becomes_one_mandatory_policy() -> None:
    policies = pack.build_policies()
    assert [p.name for p in policies] == [r.name for r in RULES]
    for rule, policy in zip(RULES, policies, strict=True):
        expected = ResourceValidationPolicy if isinstance(rule, ResourceRule) else StackValidationPolicy
        assert isinstance(policy, expected)
        assert policy.enforcement_level is EnforcementLevel.MANDATORY
        assert policy.severity == Severity(rule.severity)
        assert policy.remediation_steps == rule.remediation
        assert rule.control in policy.description
        assert policy.framework is not None and policy.framework.reference == rule.control.split(" ", 1)[1]
        assert policy.config_schema is not None and "stack" in policy.config_schema.properties
        if rule.control.startswith(("FSBP", "NIST")):
            assert policy.url and policy.url.startswith("https://docs.aws.amazon.com/securityhub/")


def test_unknown_values_reach_the_rules_as_unknown() -> None:
    proxied = unknown_checking_proxy(
        {"a": UNKNOWN_STRING_VALUE, "b": [1.0, UNKNOWN_BOOLEAN_VALUE], "c": {"d": "x"}}
    )
    assert pack.plain(proxied) == {"a": UNKNOWN, "b": [1.0, UNKNOWN], "c": {"d": "x"}}


def test_the_production_config_turns_production_rules_on() -> None:
    unprotected = res(
        "aws:rds/instance:Instance", "db", {"storageEncrypted": True, "deletionProtection": False}
    )
    assert not run_policy("rds-deletion-protection", (unprotected,), "dev")
    assert run_policy("rds-deletion-protection", (unprotected,), "production")


def test_a_bad_stack_in_the_config_is_an_error() -> None:
    assert pack.context_from(None) == Context("dev")
    with pytest.raises(ValueError, match="stack"):
        pack.context_from({"stack": "prod"})


def test_stack_policies_see_the_providers_the_engine_attaches() -> None:
    # The engine may hand a stack policy the resources without their provider; the provider then
    # only comes as the resources' `provider`, and the tag policy must still see its default tags.
    assert not run_policy("tags-default-tags", (aws_provider, tagged_bucket), "dev")
    listed = policy_resources((aws_provider, tagged_bucket))
    only_bucket = [r for r in listed if r.urn == tagged_bucket.urn]
    resources = pack.resources_from_stack(only_bucket)
    assert [r.type for r in resources] == ["aws:s3/bucket:Bucket", "pulumi:providers:aws"]
    report = Reporter()
    policy = POLICIES["tags-default-tags"]
    assert isinstance(policy, StackValidationPolicy)
    policy.validate(StackValidationArgs(only_bucket, {"stack": "dev"}), report)
    assert not report.reported


@pytest.mark.parametrize("stack", STACKS)
def test_the_config_files_name_every_policy(stack: str) -> None:
    path = pack.config_path(stack)
    assert path.read_text() == pack.render_config(stack), (
        f"{path.name} is stale: regenerate it with `cd policy && ../.venv/bin/python -m motion_policy.pack`"
    )
    assert set(json.loads(path.read_text())) == set(RULES_BY_NAME)


def test_main_only_builds_the_pack() -> None:
    tree = ast.parse((POLICY_DIR / "__main__.py").read_text())
    statements = [s for s in tree.body if not isinstance(s, ast.Import | ast.ImportFrom)]
    docstring = [s for s in statements if isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)]
    rest = [s for s in statements if s not in docstring]
    assert len(rest) == 1 and isinstance(rest[0], ast.Expr) and isinstance(rest[0].value, ast.Call)
    call = rest[0].value
    assert isinstance(call.func, ast.Name) and call.func.id == "PolicyPack"
    keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
    assert keywords["enforcement_level"] == "EnforcementLevel.MANDATORY"
    assert keywords["name"] == "PACK_NAME" and pack.PACK_NAME == "motion-aws"


def test_the_pack_project_files() -> None:
    project = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python"
    assert project["runtime"]["options"]["virtualenv"]
    requirements = (POLICY_DIR / "requirements.in").read_text().lower()
    assert "pulumi-policy" in requirements and "\npulumi>=" in "\n" + requirements
    readme = (POLICY_DIR / "README.md").read_text()
    assert "--policy-pack-config" in readme
    missing = [r.name for r in RULES if f"`{r.name}`" not in readme]
    assert not missing, f"policy/README.md does not list {missing}"
