"""The resource model the rules read, and the helpers every rule shares.

A `Resource` carries the input properties exactly as the Pulumi engine hands them to CrossGuard:
camelCase keys, numbers as floats, secrets unwrapped, JSON-typed inputs (IAM policies, container
definitions, provider default tags) as JSON strings. A value that is not known yet (an output of a
resource that a preview has not created) is the `UNKNOWN` sentinel.

Rules only report what they can prove from known values. An unknown value is given the benefit of
the doubt: CrossGuard runs the same rules again during `pulumi up`, when every input is resolved,
so nothing that is unknown in a preview escapes the check.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple


class _Unknown:
    """A value the engine cannot know before the update runs."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"

    def __bool__(self) -> bool:
        # Truthiness would silently decide an unknown either way; rules must ask `is_unknown`.
        raise TypeError("an unknown value has no truth value; test it with is_unknown()")


UNKNOWN: Final = _Unknown()

Severity = Literal["critical", "high", "medium", "low"]
PRODUCTION = "production"
STACKS: Final = ("dev", PRODUCTION)


def is_unknown(value: object) -> bool:
    return value is UNKNOWN


@dataclass(frozen=True, eq=False)
class Resource:
    """One resource as a policy sees it. `provider`, `parent` and dependencies are URNs."""

    type: str
    name: str
    urn: str
    props: Mapping[str, Any]
    parent: str | None = None
    provider: str | None = None
    # The physical id, when known: under mocks, and for resources that already exist.
    id: str | None = None
    property_dependencies: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def get(self, *path: str | int) -> Any:
        return get_path(self.props, *path)

    @property
    def identities(self) -> frozenset[str]:
        """The known strings another resource may use to reference this one (id, ARN, URL, name)."""
        values: list[Any] = [self.id]
        values += [self.props.get(key) for key in ("id", "arn", "url", "name", "bucket")]
        return frozenset(v for v in values if isinstance(v, str) and v)


def get_path(value: Any, *path: str | int) -> Any:
    """Walk nested dicts and lists; None when something on the way is missing, UNKNOWN when unknown."""
    for step in path:
        if is_unknown(value):
            return UNKNOWN
        if isinstance(step, int):
            if not isinstance(value, Sequence) or isinstance(value, str) or step >= len(value):
                return None
            value = value[step]
        else:
            if not isinstance(value, Mapping):
                return None
            value = value.get(step)
    return value


def refers_to(source: Resource, prop: str, target: Resource) -> bool:
    """Does `source.props[prop]` reference `target`?

    In a real preview the referencing value is unknown for a resource that is not created yet, but
    the engine records the property's dependencies, so the target's URN is found there. Under mocks
    no dependencies are recorded, but values are known: the property holds the target's id (or ARN,
    URL or name), so it is compared with the target's identities. A list-valued property (an ALB's
    `securityGroups`) refers to each of its elements.
    """
    if target.urn in source.property_dependencies.get(prop, ()):
        return True
    value = source.props.get(prop)
    candidates = value if isinstance(value, list | tuple) else [value]
    identities = target.identities
    return any(isinstance(c, str) and c in identities for c in candidates)


def referrers(
    target: Resource, resources: Iterable[Resource], types: Iterable[str], prop: str
) -> list[Resource]:
    """The resources of `types` whose `prop` references `target`."""
    wanted = frozenset(types)
    return [r for r in resources if r.type in wanted and refers_to(r, prop, target)]


def of_type(resources: Iterable[Resource], *types: str) -> list[Resource]:
    wanted = frozenset(types)
    return [r for r in resources if r.type in wanted]


def parse_json(value: Any) -> Any:
    """A JSON-typed input: parsed if it is a string, as-is if already structured, UNKNOWN otherwise.

    A JSON document that embeds an output of another resource is one unknown string during a
    preview, so its contents cannot be checked until the update.
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            # AWS rejects a malformed document itself; there is nothing for a policy to judge.
            return UNKNOWN
    if is_unknown(value) or not isinstance(value, Mapping | list):
        return UNKNOWN
    return value


def as_list(value: Any) -> list[Any]:
    """IAM-style "one or many": a scalar becomes a one-element list, a missing value an empty one."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def as_bool(value: Any) -> bool | None:
    """A boolean input, or None when missing or unknown.

    The provider (and so AWS) also accepts "true" and "false" strings for boolean inputs, and a few
    pulumi-aws properties were strings in earlier major versions, so programs do send them.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def is_true(value: Any) -> bool:
    """True, or not known yet (see the module docstring)."""
    return as_bool(value) is True or is_unknown(value)


def is_set(value: Any) -> bool:
    """Present and non-empty, or not known yet."""
    return is_unknown(value) or value not in (None, "", [], {})


def number(value: Any) -> float | None:
    """A numeric input (the engine sends floats; mocks may keep ints); None when missing or unknown."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass(frozen=True)
class Context:
    """What a rule knows about where it runs: the stack, from the policy pack's config."""

    stack: str = "dev"

    @property
    def production(self) -> bool:
        return self.stack == PRODUCTION


class Violation(NamedTuple):
    """A stack rule's finding, attached to the resource at fault (None: the stack as a whole)."""

    urn: str | None
    message: str


ResourceCheck = Callable[[Resource, Context], list[str]]
StackCheck = Callable[[Sequence[Resource], Context], list[Violation]]


@dataclass(frozen=True)
class ResourceRule:
    """A check of one resource at a time, for resources of `resource_types`."""

    name: str
    control: str
    description: str
    severity: Severity
    remediation: str
    resource_types: tuple[str, ...]
    check: ResourceCheck
    production_only: bool = False

    def evaluate(self, resource: Resource, ctx: Context) -> list[str]:
        if resource.type not in self.resource_types or (self.production_only and not ctx.production):
            return []
        return self.check(resource, ctx)


@dataclass(frozen=True)
class StackRule:
    """A check that needs several resources at once (a bucket and its settings, a VPC and its logs).

    `resource_types` names the resources the rule is about, for documentation and coverage tests.
    """

    name: str
    control: str
    description: str
    severity: Severity
    remediation: str
    resource_types: tuple[str, ...]
    check: StackCheck
    production_only: bool = False

    def evaluate(self, resources: Sequence[Resource], ctx: Context) -> list[Violation]:
        if self.production_only and not ctx.production:
            return []
        return self.check(resources, ctx)


Rule = ResourceRule | StackRule


class Finding(NamedTuple):
    rule: str
    urn: str | None
    message: str


def evaluate(rules: Iterable[Rule], resources: Sequence[Resource], ctx: Context) -> list[Finding]:
    """Every violation of `rules` in `resources`, as CrossGuard would report them."""
    findings: list[Finding] = []
    for rule in rules:
        if isinstance(rule, ResourceRule):
            for resource in resources:
                findings += [Finding(rule.name, resource.urn, m) for m in rule.evaluate(resource, ctx)]
        else:
            findings += [Finding(rule.name, v.urn, v.message) for v in rule.evaluate(resources, ctx)]
    return findings
