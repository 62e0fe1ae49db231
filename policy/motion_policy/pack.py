"""Adapts the rules to CrossGuard: the only module of the package that imports pulumi_policy.

The engine hands policies proxies that raise on unknown values; `plain` turns them into ordinary
dicts and lists with the model's `UNKNOWN`, so the rules never see a proxy.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyComplianceFramework,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import (
    UNKNOWN_ARCHIVE_VALUE,
    UNKNOWN_ARRAY_VALUE,
    UNKNOWN_ASSET_VALUE,
    UNKNOWN_BOOLEAN_VALUE,
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_OBJECT_VALUE,
    UNKNOWN_STRING_VALUE,
    UnknownValueError,
)

from .model import STACKS, UNKNOWN, Context, Resource, ResourceRule, Rule, StackRule
from .rules import RULES

PACK_NAME = "motion-aws"
POLICY_DIR = Path(__file__).resolve().parent.parent

_SENTINELS = frozenset(
    {
        UNKNOWN_ARCHIVE_VALUE,
        UNKNOWN_ARRAY_VALUE,
        UNKNOWN_ASSET_VALUE,
        UNKNOWN_BOOLEAN_VALUE,
        UNKNOWN_NUMBER_VALUE,
        UNKNOWN_OBJECT_VALUE,
        UNKNOWN_STRING_VALUE,
    }
)
# Every policy takes the stack from its config; CrossGuard configures policies one by one, so the
# per-stack config files name each policy (see `pack_config`).
CONFIG_SCHEMA = PolicyConfigSchema(
    properties={
        "stack": {
            "type": "string",
            "enum": list(STACKS),
            "default": "dev",
            "description": "The stack being checked; production-only rules run when it is 'production'.",
        }
    }
)
_SEVERITIES = {s.value: s for s in Severity}
_FRAMEWORKS = {
    "FSBP": ("AWS Foundational Security Best Practices", "1.0.0"),
    "NIST": ("NIST SP 800-53 Rev. 5 (AWS Security Hub)", "5"),
    "Motion": ("Motion architecture", "1"),
}


def plain(value: Any) -> Any:
    """A deep copy of engine-provided props with unknown values replaced by the model's UNKNOWN."""
    if isinstance(value, str):
        return UNKNOWN if value in _SENTINELS else value
    if isinstance(value, Mapping):
        return {key: _item(value, key) for key in value}
    if isinstance(value, Sequence):
        return [_item(value, index) for index in range(len(value))]
    return value


def _item(container: Any, key: Any) -> Any:
    try:
        return plain(container[key])
    except UnknownValueError:
        return UNKNOWN


def context_from(config: Mapping[str, Any] | None) -> Context:
    stack = (config or {}).get("stack", "dev")
    if stack not in STACKS:
        raise ValueError(f"policy config 'stack' must be one of {', '.join(STACKS)}, not {stack!r}")
    return Context(stack=stack)


def resource_from_args(args: ResourceValidationArgs) -> Resource:
    return Resource(
        type=args.resource_type,
        name=args.name,
        urn=args.urn,
        props=plain(args.props),
        parent=args.opts.parent if args.opts else None,
        provider=args.provider.urn if args.provider else None,
    )


def resources_from_stack(resources: Iterable[PolicyResource]) -> list[Resource]:
    """The stack's resources, plus the providers they use (which the engine may not list itself)."""
    converted: list[Resource] = []
    providers: dict[str, Resource] = {}
    for r in resources:
        props = plain(r.props)
        converted.append(
            Resource(
                type=r.resource_type,
                name=r.name,
                urn=r.urn,
                props=props,
                parent=r.parent.urn if r.parent else (r.opts.parent if r.opts else None),
                provider=r.provider.urn if r.provider else None,
                id=_known_string(props.get("id")),
                property_dependencies={
                    k: [d.urn for d in deps] for k, deps in r.property_dependencies.items()
                },
            )
        )
        if r.provider and r.provider.urn not in providers:
            p = r.provider
            providers[p.urn] = Resource(type=p.resource_type, name=p.name, urn=p.urn, props=plain(p.props))
    listed = {r.urn for r in converted}
    return converted + [p for urn, p in providers.items() if urn not in listed]


def _known_string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _framework(control: str) -> PolicyComplianceFramework:
    prefix, _, reference = control.partition(" ")
    name, version = _FRAMEWORKS[prefix]
    return PolicyComplianceFramework(name=name, version=version, reference=reference)


def _url(control: str) -> str | None:
    """Security Hub's page for an AWS control ("FSBP S3.8" -> .../s3-controls.html#s3-8)."""
    prefix, _, reference = control.partition(" ")
    if prefix not in ("FSBP", "NIST"):
        return None
    service, _, number = reference.partition(".")
    return f"https://docs.aws.amazon.com/securityhub/latest/userguide/{service.lower()}-controls.html#{service.lower()}-{number}"


def _common(rule: Rule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "description": f"{rule.description} [{rule.control}]",
        "enforcement_level": EnforcementLevel.MANDATORY,
        "config_schema": CONFIG_SCHEMA,
        "severity": _SEVERITIES[rule.severity],
        "framework": _framework(rule.control),
        "remediation_steps": rule.remediation,
        "url": _url(rule.control),
        "tags": [rule.control.partition(" ")[0].lower()] + (["production"] if rule.production_only else []),
    }


def resource_policy(rule: ResourceRule) -> ResourceValidationPolicy:
    wanted = frozenset(rule.resource_types)

    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if args.resource_type not in wanted:
            return
        for message in rule.evaluate(resource_from_args(args), context_from(args.get_config())):
            report(message, None)

    return ResourceValidationPolicy(validate=validate, **_common(rule))


def stack_policy(rule: StackRule) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        resources = resources_from_stack(args.resources)
        for violation in rule.evaluate(resources, context_from(args.get_config())):
            report(violation.message, violation.urn)

    return StackValidationPolicy(validate=validate, **_common(rule))


def build_policies(rules: Sequence[Rule] = RULES) -> list[Policy]:
    return [resource_policy(r) if isinstance(r, ResourceRule) else stack_policy(r) for r in rules]


def pack_config(stack: str, rules: Sequence[Rule] = RULES) -> dict[str, dict[str, str]]:
    """The --policy-pack-config document for a stack: every policy told which stack it checks."""
    return {rule.name: {"stack": stack} for rule in rules}


def config_path(stack: str) -> Path:
    return POLICY_DIR / f"config.{stack}.json"


def render_config(stack: str) -> str:
    return json.dumps(pack_config(stack), indent=2) + "\n"


if __name__ == "__main__":
    # Regenerate the per-stack config files after adding or renaming a rule.
    for name in STACKS:
        config_path(name).write_text(render_config(name))
