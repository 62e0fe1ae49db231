"""Every policy rule on resources that pass it and resources that violate it (see policy_cases)."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import replace
from typing import Any

import pytest

from policy.motion_policy.compute import looks_secret
from policy.motion_policy.model import (
    UNKNOWN,
    Context,
    Resource,
    ResourceRule,
    evaluate,
    get_path,
    parse_json,
    refers_to,
)
from policy.motion_policy.rules import RULES, RULES_BY_NAME
from tests.policy.policy_cases import CASES, Case, res

SEVERITIES = {"critical", "high", "medium", "low"}
CONTROL = re.compile(r"^(FSBP|NIST) [A-Za-z0-9]+\.\d+$|^Motion [A-Z]+-\d+$")


def findings(case: Case, stack: str | None = None) -> list[str]:
    rule = RULES_BY_NAME[case.rule]
    return [f.message for f in evaluate([rule], case.resources, Context(stack or case.stack))]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case(case: Case) -> None:
    found = findings(case)
    if case.violates:
        assert found, f"{case.rule} reported nothing for: {case.label}"
    else:
        assert not found, f"{case.rule} reported {found} for: {case.label}"


def test_every_rule_has_a_passing_and_a_violating_case() -> None:
    outcomes: dict[str, set[bool]] = defaultdict(set)
    for case in CASES:
        outcomes[case.rule].add(case.violates)
    assert set(outcomes) <= set(RULES_BY_NAME), (
        f"cases for unknown rules: {set(outcomes) - set(RULES_BY_NAME)}"
    )
    incomplete = sorted(r.name for r in RULES if outcomes[r.name] != {True, False})
    assert not incomplete, f"rules without both a passing and a violating case: {incomplete}"


def test_case_labels_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


def test_production_rules_are_tested_in_production() -> None:
    # A production-only rule is silent in dev, so a dev "passing" case would prove nothing.
    wrong = sorted({c.id for c in CASES if RULES_BY_NAME[c.rule].production_only and c.stack != "production"})
    assert not wrong


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.violates and RULES_BY_NAME[c.rule].production_only], ids=lambda c: c.id
)
def test_production_rules_are_silent_in_dev(case: Case) -> None:
    assert not findings(case, stack="dev")


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_rule_metadata(rule: Any) -> None:
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", rule.name)
    assert CONTROL.match(rule.control), rule.control
    assert rule.severity in SEVERITIES
    assert rule.description.endswith(".") and len(rule.remediation) > 20
    if isinstance(rule, ResourceRule):
        assert rule.resource_types, "a resource rule must name the types it checks"


def _all_unknown(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _all_unknown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_all_unknown(v) for v in value]
    return UNKNOWN


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_rules_survive_a_preview_where_nothing_is_known(case: Case) -> None:
    # In a first preview almost every value can be unknown; a rule that branches on one without
    # asking is_unknown() would raise (UNKNOWN refuses bool()) and fail the whole preview.
    unknown = [replace(r, props=_all_unknown(dict(r.props))) for r in case.resources]
    for stack in ("dev", "production"):
        evaluate(RULES, unknown, Context(stack))


DOCUMENT_KEYS = ("policy", "containerDefinitions")
DOCUMENT_RULES = (
    "s3-tls-only",
    "iam-no-wildcard-actions",
    "iam-no-wildcard-resources",
    "ecs-readonly-root-filesystem",
    "ecs-non-privileged",
    "ecs-logging",
    "ecs-no-secrets-in-environment",
)


@pytest.mark.parametrize(
    "case",
    [
        c
        for c in CASES
        if c.violates
        and c.rule in DOCUMENT_RULES
        and any(k in r.props for r in c.resources for k in DOCUMENT_KEYS)
    ],
    ids=lambda c: c.id,
)
def test_a_json_document_unknown_in_a_preview_is_not_judged(case: Case) -> None:
    # A document that embeds another resource's output is one unknown string in a preview; the rule
    # must wait for the update (which runs the pack again) instead of guessing.
    hidden = [
        replace(r, props={k: UNKNOWN if k in DOCUMENT_KEYS else v for k, v in r.props.items()})
        for r in case.resources
    ]
    assert not evaluate([RULES_BY_NAME[case.rule]], hidden, Context(case.stack))


# --- the model's helpers -----------------------------------------------------------------------------


BUCKET = res("aws:s3/bucket:Bucket", "files", {"bucket": "motion-files", "arn": "arn:aws:s3:::motion-files"})


@pytest.mark.parametrize(
    ("value", "deps", "expected"),
    [
        ("files-id", {}, True),  # under mocks: the target's id
        ("motion-files", {}, True),  # its name
        ("arn:aws:s3:::motion-files", {}, True),  # its ARN
        (["other-id", "files-id"], {}, True),  # one of a list
        (UNKNOWN, {"bucket": [BUCKET.urn]}, True),  # in a preview: the recorded dependency
        (UNKNOWN, {"bucket": ["urn:pulumi:dev::motion::aws:s3/bucket:Bucket::logs"]}, False),
        ("logs-id", {}, False),
        (None, {}, False),
    ],
)
def test_refers_to(value: Any, deps: dict[str, list[str]], expected: bool) -> None:
    setting = replace(
        res("aws:s3/bucketPolicy:BucketPolicy", "p", {"bucket": value}), property_dependencies=deps
    )
    assert refers_to(setting, "bucket", BUCKET) is expected


def test_unknown_has_no_truth_value() -> None:
    with pytest.raises(TypeError):
        bool(UNKNOWN)


def test_get_path_and_parse_json() -> None:
    props = {"a": {"b": [{"c": 1.0}]}, "u": UNKNOWN}
    assert get_path(props, "a", "b", 0, "c") == 1.0
    assert get_path(props, "a", "missing", "c") is None
    assert get_path(props, "u", "anything") is UNKNOWN
    assert parse_json('{"x": 1}') == {"x": 1}
    assert parse_json(UNKNOWN) is UNKNOWN
    assert parse_json("not json") is UNKNOWN
    assert parse_json(None) is None


@pytest.mark.parametrize(
    ("name", "value", "secret"),
    [
        ("DATABASE_PASSWORD", "x", True),
        ("REDIS_AUTH_TOKEN", "x", True),
        ("AWS_SECRET_ACCESS_KEY", "x", True),
        ("STRIPE_API_KEY", "x", True),
        ("jwt-signing-key", "x", True),
        ("DATABASE_URL", "postgres://motion:hunter2@db:5432/motion", True),
        ("DATABASE_URL", "postgres://db:5432/motion", False),
        ("DATABASE_SECRET_ARN", "arn:aws:secretsmanager:x", False),
        ("AUTH_TOKEN_TTL", "300", False),
        ("PASSWORD_FILE", "/run/secrets/db", False),
        ("CLERK_PUBLISHABLE_KEY", "pk_test_abc", False),
        ("AUTH_JWKS_URL", "https://clerk.example/.well-known/jwks.json", False),
        ("PASSTHROUGH_HEADERS", "x", False),
        ("CACHE_KEY_PREFIX", "chat:", False),
    ],
)
def test_looks_secret(name: str, value: str, secret: bool) -> None:
    assert looks_secret(name, value) is secret


def test_a_resource_rule_ignores_other_types() -> None:
    rule = RULES_BY_NAME["rds-encrypted"]
    assert isinstance(rule, ResourceRule)
    other: Resource = res("aws:s3/bucket:Bucket", "b", {"storageEncrypted": False})
    assert rule.evaluate(other, Context()) == []
