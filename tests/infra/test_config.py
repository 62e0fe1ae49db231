"""Stack config: typed, defaulted, validated before any resource exists, with errors that name the key."""

from __future__ import annotations

import pytest
import yaml
from harness import ROOT, ProgramFailed, run_with

from components.config import ConfigError, load_config
from components.config_keys import KEYS, REQUIRED


def raw(stack: str) -> dict[str, str]:
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {k.split(":", 1)[1]: v for k, v in document.items() if k.startswith("motion:")}


def test_both_stacks_load_with_their_differences() -> None:
    dev = load_config("dev", raw("dev"), "us-east-1")
    prod = load_config("production", raw("production"), "us-east-1")
    assert (dev.network.az_count, dev.network.nat_strategy) == (2, "none")
    assert (prod.network.az_count, prod.network.nat_strategy) == (3, "per_az")
    assert not dev.tls and prod.tls
    assert (
        prod.database.multi_az
        and prod.database.deletion_protection
        and prod.database.backup_retention_days >= 7
    )
    assert prod.upload.min >= 2 and prod.chat.min >= 2 and dev.chat == dev.chat.__class__(1, 1, 1)
    assert prod.tags == {"project": "motion", "stack": "production", "managed-by": "pulumi"}


def test_config_is_immutable() -> None:
    config = load_config("dev", raw("dev"), "us-east-1")
    with pytest.raises(AttributeError):
        config.network.az_count = 3  # type: ignore[misc]


def test_pulumi_yaml_schema_matches_the_loader() -> None:
    schema = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    assert set(schema) == {key.name for key in KEYS}
    for key in KEYS:
        entry = schema[key.name]
        assert entry["type"] == key.kind, key.name
        if key.default is REQUIRED:
            assert "default" not in entry, key.name
        else:
            default = list(key.default) if key.kind == "array" else key.default
            assert entry["default"] == default, key.name


BAD_CASES = [
    (
        "dev",
        {"natStrategy": "sometimes"},
        "motion:natStrategy: 'sometimes' is not a NAT strategy (allowed: none | single | per_az)",
    ),
    ("production", {"azCount": "1"}, "motion:azCount: high availability needs at least 2 AZs"),
    ("dev", {"azCount": "1"}, "motion:azCount: 1 AZs"),
    (
        "dev",
        {"uploadMinCount": "3", "uploadMaxCount": "2"},
        "motion:uploadMinCount: min 3 must be at least 1 and not above uploadMaxCount (2)",
    ),
    ("dev", {"vpcCidr": "10.0.0.0/26"}, "motion:vpcCidr: 10.0.0.0/26 cannot hold 15 subnet slots"),
    ("dev", {"vpcCidr": "8.8.0.0/16"}, "motion:vpcCidr: 8.8.0.0/16 must be a private IPv4 range"),
    ("dev", {"vpcCidr": "not-a-cidr"}, "motion:vpcCidr: 'not-a-cidr' is not a CIDR"),
    ("dev", {"azCount": "two"}, "motion:azCount: 'two' is not a valid integer"),
    ("dev", {"dbMultiAz": "yes"}, "motion:dbMultiAz: 'yes' is not a valid boolean"),
    ("dev", {"logRetentionDays": "10"}, "motion:logRetentionDays: 10 is not a CloudWatch retention value"),
    ("dev", {"authJwksUrl": "http://insecure.example/jwks"}, "motion:authJwksUrl:"),
    (
        "dev",
        {"frontendDomains": '["not a domain"]'},
        "motion:frontendDomains: ['not a domain'] are not DNS names",
    ),
    ("dev", {"certificateArn": "arn:aws:acm:us-east-1:123:certificate/x"}, "motion:certificateArn:"),
    ("dev", {"nattStrategy": "none"}, "motion:nattStrategy: unknown key"),
    (
        "production",
        {"highAvailability": "false"},
        "motion:highAvailability: the production stack must set it to true",
    ),
    ("production", {"natStrategy": "single"}, "motion:natStrategy: high availability needs one NAT per AZ"),
    ("production", {"certificateArn": ""}, "motion:certificateArn: high availability serves HTTPS only"),
    (
        "production",
        {"cacheReplicas": "0"},
        "motion:cacheReplicas: high availability needs at least 1 replica",
    ),
    ("dev", {"mailMaxConcurrency": "1"}, "motion:mailMaxConcurrency: 1 (allowed: 2 to 1000)"),
]


@pytest.mark.parametrize(("stack", "overrides", "expected"), BAD_CASES, ids=[str(c[1]) for c in BAD_CASES])
def test_bad_config_fails_before_any_resource_naming_key_stack_and_allowed(
    stack: str, overrides: dict[str, str], expected: str
) -> None:
    with pytest.raises(ProgramFailed) as failed:
        run_with(stack, **overrides)
    assert isinstance(failed.value.error, ConfigError)
    message = str(failed.value.error)
    assert f"Invalid configuration for stack '{stack}'" in message
    assert expected in message
    assert failed.value.registered == [], "config must fail before any resource is registered"


def test_missing_required_keys_are_all_named_at_once() -> None:
    values = raw("dev")
    for key in ("authIssuer", "alarmEmail", "sesSenderDomain"):
        del values[key]
    with pytest.raises(ConfigError) as failed:
        load_config("dev", values, "us-east-1")
    for key in ("authIssuer", "alarmEmail", "sesSenderDomain"):
        assert f"motion:{key}: is required" in str(failed.value)


def test_region_is_required() -> None:
    with pytest.raises(ConfigError, match="aws:region: is required"):
        load_config("dev", raw("dev"), "")


def test_pulumi_yaml_is_generated_from_the_key_table() -> None:
    from devstack.pulumi_yaml import render

    assert (ROOT / "Pulumi.yaml").read_text() == render(), "run `python -m devstack.pulumi_yaml`"
