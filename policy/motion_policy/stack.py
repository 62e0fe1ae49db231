"""Stack-wide policies: tagging, production multi-AZ, and the policy config matching the stack."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from .model import (
    STACKS,
    Context,
    Resource,
    Rule,
    StackRule,
    Violation,
    get_path,
    is_unknown,
    of_type,
    parse_json,
    refers_to,
)

AWS_PROVIDER = "pulumi:providers:aws"
SUBNET = "aws:ec2/subnet:Subnet"
NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
REQUIRED_TAGS = ("project", "stack", "managed-by")
MIN_AZS = 2


def _missing_tags(provider: Resource) -> list[str]:
    # The provider's defaultTags reach the engine as a JSON string ({"tags": {...}}), like every
    # object-typed provider input; a program that passes a dict (or a test) gives it structured.
    tags = get_path(parse_json(provider.get("defaultTags")), "tags")
    if is_unknown(tags):
        return []
    tags = tags if isinstance(tags, dict) else {}
    return [
        k
        for k in REQUIRED_TAGS
        if not (is_unknown(tags.get(k)) or (isinstance(tags.get(k), str) and tags[k]))
    ]


def _tagged(resources: Sequence[Resource], ctx: Context) -> list[Violation]:
    """AWS resources get their tags from the provider's defaultTags, which do not appear in the
    resources' own inputs; so check that every AWS resource is created by an aws provider of this
    stack, and that each such provider carries the required default tags."""
    providers = {p.urn: p for p in of_type(resources, AWS_PROVIDER)}
    users: Counter[str] = Counter()
    found: list[Violation] = []
    for resource in resources:
        if not resource.type.startswith("aws:"):
            continue
        if resource.provider in providers:
            users[resource.provider] += 1
        else:
            found.append(
                Violation(
                    resource.urn,
                    f"'{resource.name}' is created by no aws provider of this stack, so its "
                    "default tags cannot be verified: create it through the stack's tagged provider",
                )
            )
    for urn, count in sorted(users.items()):
        missing = _missing_tags(providers[urn])
        if missing:
            found.append(
                Violation(
                    urn,
                    f"aws provider '{providers[urn].name}' (used by {count} resources) lacks default "
                    f"tags {', '.join(missing)}",
                )
            )
    return found


def _az(subnet: Resource) -> Any:
    az = subnet.get("availabilityZone")
    return az if az is not None else subnet.get("availabilityZoneId")


def _subnets_multi_az(resources: Sequence[Resource], ctx: Context) -> list[Violation]:
    # Subnets are grouped by their `tier` tag (public / private / isolated); untagged ones form one
    # group, which is weaker, so the network component tags every subnet with its tier.
    tiers: dict[str, list[Resource]] = defaultdict(list)
    for subnet in of_type(resources, SUBNET):
        tier = get_path(subnet.props, "tags", "tier")
        tiers[tier if isinstance(tier, str) else "(untagged)"].append(subnet)
    found: list[Violation] = []
    for tier, subnets in sorted(tiers.items()):
        azs = [_az(s) for s in subnets]
        if any(is_unknown(az) for az in azs):
            continue
        spread = {az for az in azs if isinstance(az, str)}
        if len(spread) < MIN_AZS:
            found.append(
                Violation(
                    subnets[0].urn,
                    f"{tier} subnets span {len(spread)} availability zone(s); production needs "
                    f"at least {MIN_AZS}",
                )
            )
    return found


def _nat_per_az(resources: Sequence[Resource], ctx: Context) -> list[Violation]:
    nats = of_type(resources, NAT_GATEWAY)
    if not nats or any(nat.get("availabilityMode") == "regional" for nat in nats):
        return []  # no NAT (public tasks) is ECS.2's concern; a regional NAT gateway spans every AZ
    subnets = of_type(resources, SUBNET)
    all_azs = {az for az in map(_az, subnets) if isinstance(az, str)}
    covered: set[str] = set()
    unresolved = 0
    for nat in nats:
        home = next((s for s in subnets if refers_to(nat, "subnetId", s)), None)
        az = _az(home) if home else None
        if isinstance(az, str):
            covered.add(az)
        else:
            unresolved += 1  # its zone is not known yet; count it for one of the uncovered zones
    missing = sorted(all_azs - covered)
    if len(missing) > unresolved:
        return [
            Violation(
                None,
                f"no NAT gateway in {', '.join(missing)}: an AZ outage would cut the other AZs' "
                "egress, so production runs one NAT gateway per AZ",
            )
        ]
    return []


def _stack_of(urn: str) -> str | None:
    head = urn.split("::", 1)[0]
    return head[len("urn:pulumi:") :] if head.startswith("urn:pulumi:") else None


def _config_matches_stack(resources: Sequence[Resource], ctx: Context) -> list[Violation]:
    # Production-only rules are silent under the default (dev) config, so a production preview that
    # forgot its --policy-pack-config would pass them all unchecked.
    stacks = sorted({s for s in (_stack_of(r.urn) for r in resources) if s in STACKS and s != ctx.stack})
    return [
        Violation(
            None,
            f"the policy pack runs with stack '{ctx.stack}' config on stack '{s}': pass "
            f"--policy-pack-config policy/config.{s}.json",
        )
        for s in stacks
    ]


RULES: list[Rule] = [
    StackRule(
        name="tags-default-tags",
        control="Motion TAG-1",
        description=f"Every AWS resource is created by an aws provider whose default tags include {', '.join(REQUIRED_TAGS)}.",
        severity="low",
        remediation='Create one aws.Provider with default_tags={"tags": {"project": ..., "stack": ..., '
        '"managed-by": "pulumi"}} and pass it to every component (opts providers / provider).',
        resource_types=(AWS_PROVIDER,),
        check=_tagged,
    ),
    StackRule(
        name="production-subnets-multi-az",
        control="Motion REL-4",
        description=f"In production, every subnet tier spans at least {MIN_AZS} availability zones.",
        severity="high",
        remediation="Set motion:azCount to 3 in production; the network creates one subnet per tier and AZ.",
        resource_types=(SUBNET,),
        check=_subnets_multi_az,
        production_only=True,
    ),
    StackRule(
        name="production-nat-gateway-per-az",
        control="Motion REL-5",
        description="In production, every AZ with subnets has its own NAT gateway.",
        severity="medium",
        remediation='Set motion:natStrategy to "per_az" in production.',
        resource_types=(NAT_GATEWAY,),
        check=_nat_per_az,
        production_only=True,
    ),
    StackRule(
        name="policy-config-matches-stack",
        control="Motion GOV-1",
        description="The policy pack runs with the config of the stack it checks.",
        severity="critical",
        remediation="Run `pulumi preview -s <stack> --policy-pack policy --policy-pack-config "
        "policy/config.<stack>.json`.",
        resource_types=(),
        check=_config_matches_stack,
    ),
]
