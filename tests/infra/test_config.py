"""Stack config: typed, defaulted, validated before any resource exists, with errors that name the key."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from components.config.keys import KEYS, REQUIRED
from components.config.loader import ConfigError, load_config
from stacktools.stack_files import engine_config, read_stack_file, stack_document
from stacktools.stack_schema import StackConfigError
from tests.infra.harness import ROOT, ProgramFailed, run_with


def raw(stack: str) -> dict[str, str]:
    """The stack's `motion:*` values as the engine hands them to the program (strings)."""
    return {k.split(":", 1)[1]: v for k, v in read_stack_file(stack).items() if k.startswith("motion:")}


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


# (stack, overrides as stack-file values, what the CLI says before the program starts (None: it
# passes the CLI's schema check), what our loader says). Every case must fail in the loader too, since
# `pulumi up --skip-config-validation` skips the CLI's check.
BAD_CASES: list[tuple[str, dict[str, Any], str | None, str]] = [
    (
        "dev",
        {"natStrategy": "sometimes"},
        None,
        "motion:natStrategy: 'sometimes' is not a NAT strategy (allowed: none | single | per_az)",
    ),
    ("production", {"azCount": 1}, None, "motion:azCount: high availability needs at least 2 AZs"),
    ("dev", {"azCount": 1}, None, "motion:azCount: 1 AZs"),
    (
        "dev",
        {"uploadMinCount": 3, "uploadMaxCount": 2},
        None,
        "motion:uploadMinCount: min 3 must not be above uploadMaxCount (2)",
    ),
    ("dev", {"vpcCidr": "10.0.0.0/26"}, None, "motion:vpcCidr: 10.0.0.0/26 cannot hold 15 subnet slots"),
    ("dev", {"vpcCidr": "8.8.0.0/16"}, None, "motion:vpcCidr: 8.8.0.0/16 must be a private IPv4 range"),
    ("dev", {"vpcCidr": "not-a-cidr"}, None, "motion:vpcCidr: 'not-a-cidr' is not a CIDR"),
    (
        "dev",
        {"azCount": "two"},
        "Stack 'dev' with configuration key 'azCount' must be of type 'integer'",
        "motion:azCount: 'two' is not a valid integer",
    ),
    (
        "dev",
        {"dbMultiAz": "yes"},  # YAML 1.2 (the CLI's yaml.v3): `yes` is a string, not a boolean
        "Stack 'dev' with configuration key 'dbMultiAz' must be of type 'boolean'",
        "motion:dbMultiAz: 'yes' is not a valid boolean",
    ),
    (
        "dev",
        {"logRetentionDays": 10},
        None,
        "motion:logRetentionDays: 10 is not a CloudWatch retention value",
    ),
    ("dev", {"authJwksUrl": "http://insecure.example/jwks"}, None, "motion:authJwksUrl:"),
    (
        "dev",
        {"frontendDomains": ["not a domain"]},
        None,
        "motion:frontendDomains: ['not a domain'] are not DNS names",
    ),
    ("dev", {"certificateArn": "arn:aws:acm:us-east-1:123:certificate/x"}, None, "motion:certificateArn:"),
    # The CLI validates only the keys Pulumi.yaml declares; an undeclared one reaches the program.
    ("dev", {"nattStrategy": "none"}, None, "motion:nattStrategy: unknown key"),
    (
        "production",
        {"highAvailability": False},
        None,
        "motion:highAvailability: the production stack must set it to true",
    ),
    (
        "production",
        {"natStrategy": "single"},
        None,
        "motion:natStrategy: high availability needs one NAT per AZ",
    ),
    (
        "production",
        {"certificateArn": ""},
        None,
        "motion:certificateArn: high availability serves HTTPS only",
    ),
    (
        "production",
        {"cacheReplicas": 0},
        None,
        "motion:cacheReplicas: high availability needs at least 1 replica",
    ),
    ("dev", {"mailMaxConcurrency": 1}, None, "motion:mailMaxConcurrency: 1 (allowed: 2 to 1000)"),
    (
        "dev",
        {"dbMonitoringIntervalSeconds": 20},
        None,
        "motion:dbMonitoringIntervalSeconds: 20 is not an Enhanced Monitoring interval",
    ),
    (
        "production",
        {"dbMonitoringIntervalSeconds": 0},
        None,
        "motion:dbMonitoringIntervalSeconds: high availability needs Enhanced Monitoring",
    ),
    ("production", {"waf": False}, None, "motion:waf: must be true with high availability"),
    (
        "production",
        {"logsKmsEncryption": False},
        None,
        "motion:logsKmsEncryption: must be true with high availability",
    ),
    ("dev", {"wafRateLimit": 9}, None, "motion:wafRateLimit: 9 (allowed: 10 to 2000000000)"),
    # SES reviews an account at a 5 % bounce rate and a 0.1 % complaint rate: an alarm at or above
    # those would sound only once SES has acted.
    (
        "dev",
        {"mailBounceRateAlarmBasisPoints": 500},
        None,
        "motion:mailBounceRateAlarmBasisPoints: 500 (allowed: 1 to 499)",
    ),
    (
        "production",
        {"mailComplaintRateAlarmBasisPoints": 10},
        None,
        "motion:mailComplaintRateAlarmBasisPoints: 10 (allowed: 1 to 9)",
    ),
    (
        "dev",
        {"mailComplaintRateAlarmBasisPoints": 0.05},
        "Stack 'dev' with configuration key 'mailComplaintRateAlarmBasisPoints' must be of type 'integer'",
        "motion:mailComplaintRateAlarmBasisPoints: '0.05' is not a valid integer (expected a whole number)",
    ),
    (
        "dev",
        {"mailApiReservedConcurrency": 901},
        None,
        "motion:mailApiReservedConcurrency: 901 (allowed: 0 to 900)",
    ),
    (
        "production",
        {"mailApiReservedConcurrency": 0},
        None,
        "motion:mailApiReservedConcurrency: high availability reserves executions for the mail API",
    ),
    (
        "dev",
        {"frontendDomains": [1]},
        "Stack 'dev' with configuration key 'frontendDomains' must be of type 'array<string>'",
        "motion:frontendDomains: '[1]' is not a valid array (expected a list of strings)",
    ),
    # A project must hold at least one largest upload; the files service refuses to start otherwise.
    (
        "production",
        {"filesMaxProjectBytes": 1000, "filesMaxUploadBytes": 1001},
        None,
        "motion:filesMaxProjectBytes: 1000 is less than filesMaxUploadBytes (1001)",
    ),
    (
        "dev",
        {"filesMaxShareDays": 366},
        None,
        "motion:filesMaxShareDays: 366 (allowed: 1 to 365)",
    ),
    (
        "dev",
        {"filesMaxPendingUploadsPerUser": 0},
        None,
        "motion:filesMaxPendingUploadsPerUser: 0 (allowed: 1 to 10000)",
    ),
    (
        "dev",
        {"cacheReplicas": 1.5},
        "Stack 'dev' with configuration key 'cacheReplicas' must be of type 'integer'",
        "motion:cacheReplicas: '1.5' is not a valid integer (expected a whole number)",
    ),
]


def _document(stack: str, overrides: dict[str, Any]) -> dict[str, Any]:
    return {**stack_document(stack), **{f"motion:{k}": v for k, v in overrides.items()}}


@pytest.mark.parametrize(
    ("stack", "overrides", "cli_error", "expected"), BAD_CASES, ids=[str(c[1]) for c in BAD_CASES]
)
def test_bad_config_fails_before_any_resource_naming_key_stack_and_allowed(
    stack: str, overrides: dict[str, Any], cli_error: str | None, expected: str
) -> None:
    if cli_error is None:
        engine_config(stack, _document(stack, overrides))  # passes `pulumi up`'s own check
    else:
        with pytest.raises(StackConfigError) as rejected:
            engine_config(stack, _document(stack, overrides))
        assert str(rejected.value) == cli_error
    with pytest.raises(ProgramFailed) as failed:
        run_with(stack, skip_config_validation=True, **overrides)
    assert isinstance(failed.value.error, ConfigError)
    message = str(failed.value.error)
    assert f"Invalid configuration for stack '{stack}'" in message
    assert expected in message
    assert failed.value.registered == [], "config must fail before any resource is registered"


def test_run_with_applies_the_cli_check_unless_skipped() -> None:
    with pytest.raises(StackConfigError, match="'azCount' must be of type 'integer'"):
        run_with("dev", azCount="two")


@pytest.mark.parametrize(
    ("overrides", "cli_error"),
    [
        # The old stack-file form: a JSON string is a string, never an array.
        (
            {"frontendDomains": '["dev.motion.example"]'},
            "Stack 'dev' with configuration key 'frontendDomains' must be of type 'array<string>'",
        ),
        ({"azCount": "2.0"}, "Stack 'dev' with configuration key 'azCount' must be of type 'integer'"),
        ({"flowLogs": "True"}, "Stack 'dev' with configuration key 'flowLogs' must be of type 'boolean'"),
        ({"natStrategy": 3}, None),  # a YAML int is the string "3" to the CLI, so a valid string
        ({"azCount": "3", "flowLogs": "true"}, None),  # quoted forms validate as the native ones
    ],
)
def test_the_cli_check_on_stack_file_values(overrides: dict[str, Any], cli_error: str | None) -> None:
    document = _document("dev", overrides)
    if cli_error is None:
        engine_config("dev", document)
    else:
        with pytest.raises(StackConfigError) as rejected:
            engine_config("dev", document)
        assert str(rejected.value) == cli_error


def test_the_cli_names_every_missing_required_key() -> None:
    document = stack_document("dev")
    for key in ("authIssuer", "alarmEmail", "sesSenderDomain"):
        del document[f"motion:{key}"]
    with pytest.raises(StackConfigError) as rejected:
        engine_config("dev", document)
    assert str(rejected.value) == (
        "Stack 'dev' is missing configuration values 'alarmEmail', 'authIssuer' and 'sesSenderDomain'"
    )


def test_committed_stack_files_pass_the_cli_and_hold_native_yaml() -> None:
    for stack in ("dev", "production"):
        document = stack_document(stack)
        engine_config(stack, document)  # raises with the CLI's message if not
        kinds = {key.name: key.kind for key in KEYS}
        python_type = {"string": str, "integer": int, "boolean": bool, "array": list}
        for key, value in document.items():
            if key.startswith("motion:"):
                assert type(value) is python_type[kinds[key[len("motion:") :]]], (stack, key, value)


def test_the_program_gets_strings_with_defaults_applied_as_the_engine_passes_them() -> None:
    dev = read_stack_file("dev")
    assert all(isinstance(v, str) for v in dev.values())
    assert dev["motion:highAvailability"] == "false" and dev["motion:azCount"] == "2"
    assert dev["motion:frontendDomains"] == '["dev.motion.example"]'
    # Not in Pulumi.dev.yaml: the CLI sets Pulumi.yaml's default (createConfigValue).
    assert dev["motion:filesAllowedContentTypes"].startswith('["application/pdf","image/png",')
    assert dev["motion:mailSenderName"] == "Motion" and dev["motion:dbMaxAllocatedStorageGb"] == "0"
    assert set(dev) == {f"motion:{k.name}" for k in KEYS if k.default is not REQUIRED} | {
        k for k in stack_document("dev")
    }


def test_the_loader_reads_every_key_kind_in_the_engine_form() -> None:
    prod = load_config("production", raw("production"), "us-east-1")
    assert prod.high_availability is True and prod.network.flow_logs is True  # boolean "true"
    assert prod.network.az_count == 3 and prod.database.allocated_storage_gb == 100  # integer "3"
    assert prod.frontend.domains == ("app.motion.example", "motion.example")  # array, compact JSON
    assert prod.frontend.extra_cors_origins == ()  # array default "[]"
    assert prod.network.nat_strategy == "per_az"  # string as is


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
    from stacktools.pulumi_yaml import render

    assert (ROOT / "Pulumi.yaml").read_text() == render(), "run `python -m stacktools.pulumi_yaml`"
