"""Loading the stack's configuration: raw config strings (from the engine or a stack file) in, one
validated, immutable `StackConfig` out, before any resource is registered.

Every key, its type and its default live in `components.config_keys.KEYS`; the typed model in
`components.config_model`; the cross-field checks in `components.config_validation`. This module
applies the per-key checks and raises one `ConfigError` naming every bad key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from components.config_keys import KEYS_BY_NAME, PROJECT
from components.config_model import (
    NAT_STRATEGIES,
    AuthConfig,
    CacheConfig,
    DatabaseConfig,
    FilesConfig,
    FrontendConfig,
    MailConfig,
    NetworkConfig,
    Scaling,
    StackConfig,
)
from components.config_reader import ConfigReader
from components.config_validation import (
    ACM_ARN_PATTERN,
    CONTENT_TYPE_PATTERN,
    DOMAIN_PATTERN,
    EMAIL_PATTERN,
    validate_frontend,
    validate_high_availability,
    validate_mail,
    validate_network,
)

# CloudWatch Logs accepts only these retention values.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)


class ConfigError(ValueError):
    """Stack configuration is invalid; the message names every bad key, the stack and what is allowed."""


def load_config(stack: str, raw: Mapping[str, str], region: str) -> StackConfig:
    """Build and validate the stack's config from raw `motion:*` values (key names without namespace)."""
    r = ConfigReader(stack, raw)
    for unknown in sorted(set(raw) - set(KEYS_BY_NAME)):
        r.errors.append(f"{PROJECT}:{unknown}: unknown key (known keys are listed in Pulumi.yaml)")
    g = r.get
    nat = g("natStrategy")
    r.check("natStrategy", nat in NAT_STRATEGIES, f"{nat!r} is not a NAT strategy")
    network = NetworkConfig(g("azCount"), nat, g("vpcCidr"), g("flowLogs"))
    validate_network(r, network)

    scalings = {}
    for svc in ("upload", "download", "chat"):
        s = Scaling(g(f"{svc}DesiredCount"), g(f"{svc}MinCount"), g(f"{svc}MaxCount"))
        r.check(
            f"{svc}MinCount",
            1 <= s.min <= s.max,
            f"min {s.min} must be at least 1 and not above {svc}MaxCount ({s.max})",
        )
        r.check(
            f"{svc}DesiredCount",
            s.min <= s.desired <= s.max,
            f"desired {s.desired} must lie between {svc}MinCount ({s.min}) and {svc}MaxCount ({s.max})",
        )
        r.check(f"{svc}MaxCount", s.max <= 100, f"{s.max} is too many tasks")
        scalings[svc] = s

    database = DatabaseConfig(
        g("dbInstanceClass"),
        g("dbAllocatedStorageGb"),
        g("dbMaxAllocatedStorageGb"),
        g("dbMultiAz"),
        g("dbDeletionProtection"),
        g("dbBackupRetentionDays"),
        g("dbPerformanceInsights"),
        g("dbEngineVersion"),
    )
    r.check("dbInstanceClass", database.instance_class.startswith("db."), f"{database.instance_class!r}")
    r.check(
        "dbAllocatedStorageGb",
        20 <= database.allocated_storage_gb <= 65536,
        f"{database.allocated_storage_gb}",
    )
    r.check(
        "dbMaxAllocatedStorageGb",
        database.max_allocated_storage_gb == 0
        or database.max_allocated_storage_gb >= database.allocated_storage_gb,
        f"{database.max_allocated_storage_gb} is below dbAllocatedStorageGb ({database.allocated_storage_gb})",
    )
    r.check(
        "dbBackupRetentionDays",
        1 <= database.backup_retention_days <= 35,
        f"{database.backup_retention_days}",
    )
    r.check("dbEngineVersion", database.engine_version.isdigit(), f"{database.engine_version!r}")
    cache = CacheConfig(g("cacheNodeType"), g("cacheReplicas"))
    r.check("cacheNodeType", cache.node_type.startswith("cache."), f"{cache.node_type!r}")
    r.check("cacheReplicas", 0 <= cache.replicas <= 5, f"{cache.replicas}")

    retention = g("logRetentionDays")
    r.check(
        "logRetentionDays",
        retention in LOG_RETENTION_DAYS,
        f"{retention} is not a CloudWatch retention value",
    )
    domain, cert = g("domain"), g("certificateArn")
    r.check("domain", not domain or bool(DOMAIN_PATTERN.match(domain)), f"{domain!r} is not a DNS name")
    r.check("certificateArn", not cert or bool(ACM_ARN_PATTERN.match(cert)), f"{cert!r}")
    r.check(
        "certificateArn",
        not cert or bool(domain),
        "a certificate needs motion:domain to name the host it covers",
    )

    auth = AuthConfig(g("authIssuer"), g("authJwksUrl"), g("authAudience"), g("clerkPublishableKey"))
    for key, value in (("authIssuer", auth.issuer), ("authJwksUrl", auth.jwks_url)):
        r.check(key, value.startswith("https://") and len(value) > len("https://"), f"{value!r}")
    r.check(
        "authAudience", bool(auth.audience), "is required (API Gateway's JWT authorizer needs an audience)"
    )
    r.check(
        "clerkPublishableKey",
        auth.clerk_publishable_key.startswith(("pk_test_", "pk_live_")),
        f"{auth.clerk_publishable_key!r}",
    )

    mail = MailConfig(
        g("sesSenderDomain"),
        g("mailSenderName"),
        g("mailMaxReceiveCount"),
        g("mailBatchSize"),
        g("mailBatchingWindowSeconds"),
        g("mailMaxConcurrency"),
        g("mailerTimeoutSeconds"),
        g("mailApiThrottleRate"),
        g("mailApiThrottleBurst"),
    )
    validate_mail(r, mail)
    files = FilesConfig(g("filesMaxUploadBytes"), g("filesAllowedContentTypes"), g("filesPresignTtlSeconds"))
    r.check("filesMaxUploadBytes", 1 <= files.max_upload_bytes <= 5 * 1024**3, f"{files.max_upload_bytes}")
    r.check(
        "filesAllowedContentTypes",
        bool(files.allowed_content_types)
        and all(CONTENT_TYPE_PATTERN.match(t) for t in files.allowed_content_types),
        f"{list(files.allowed_content_types)}",
    )
    r.check("filesPresignTtlSeconds", 30 <= files.presign_ttl_seconds <= 900, f"{files.presign_ttl_seconds}")

    frontend = FrontendConfig(
        g("vercelProjectName"),
        g("vercelTeamId"),
        g("frontendGitRepository"),
        g("frontendRootDirectory"),
        g("frontendProductionBranch"),
        g("frontendTargets"),
        g("frontendDomains"),
        g("extraCorsOrigins"),
    )
    validate_frontend(r, frontend)
    alarm_email = g("alarmEmail")
    r.check("alarmEmail", bool(EMAIL_PATTERN.match(alarm_email)), f"{alarm_email!r} is not an e-mail address")

    config = StackConfig(
        project=PROJECT,
        stack=stack,
        region=region,
        high_availability=g("highAvailability"),
        network=network,
        database=database,
        cache=cache,
        upload=scalings["upload"],
        download=scalings["download"],
        chat=scalings["chat"],
        log_retention_days=retention,
        domain=domain,
        certificate_arn=cert,
        auth=auth,
        mail=mail,
        files=files,
        frontend=frontend,
        alarm_email=alarm_email,
        container_insights=g("containerInsights"),
        alb_deletion_protection=g("albDeletionProtection"),
        alb_access_logs=g("albAccessLogs"),
        data_protection=g("dataProtection"),
        s3_kms_encryption=g("s3KmsEncryption"),
    )
    validate_high_availability(r, config)
    if not region:
        r.errors.append("aws:region: is required (set it with `pulumi config set aws:region <region>`)")
    if r.errors:
        raise ConfigError(
            f"Invalid configuration for stack '{stack}' ({len(r.errors)} problem(s)):\n  - "
            + "\n  - ".join(r.errors)
        )
    return config


PROJECT_DIR = Path(__file__).resolve().parents[1]


def read_stack_file(stack: str) -> dict[str, str]:
    """`Pulumi.<stack>.yaml`'s config exactly as the file holds it (fully qualified keys, string values)."""
    import yaml  # tools only (tests, local backend); the deployed program gets config from the engine

    document = yaml.safe_load((PROJECT_DIR / f"Pulumi.{stack}.yaml").read_text())
    return {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in document["config"].items()
    }


def load_stack_file(stack: str) -> StackConfig:
    """A stack's validated config from its file, for tools that mirror the stack (e.g. `make run`)."""
    raw = read_stack_file(stack)
    namespace = f"{PROJECT}:"
    values = {key[len(namespace) :]: value for key, value in raw.items() if key.startswith(namespace)}
    return load_config(stack, values, raw.get("aws:region", ""))


def load_stack_config() -> StackConfig:
    """The running program's config: every `motion:*` value the engine passed, plus `aws:region`."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    # The engine hands config over in PULUMI_CONFIG; set_all_config (tests) fills CONFIG.
    everything = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    namespace = f"{PROJECT}:"
    raw = {key[len(namespace) :]: value for key, value in everything.items() if key.startswith(namespace)}
    region = pulumi.Config("aws").get("region") or ""
    config = load_config(pulumi.get_stack(), raw, region)
    if not (everything.get("vercel:apiToken") or os.environ.get("VERCEL_API_TOKEN")):
        raise ConfigError(
            f"Invalid configuration for stack '{config.stack}' (1 problem(s)):\n  - vercel:apiToken: is required "
            "(set it with `pulumi config set --secret vercel:apiToken <token>`, or export VERCEL_API_TOKEN)"
        )
    return config
