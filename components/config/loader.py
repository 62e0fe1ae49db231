"""Loading the stack's configuration: raw config strings (from the engine or a stack file) in, one
validated, immutable `StackConfig` out, before any resource is registered.

Every key, its type and its default live in `components.config.keys.KEYS`; the typed model in
`components.config.model`; the cross-field checks in `components.config.validation`. This module
applies the per-key checks and raises one `ConfigError` naming every bad key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from components.config.keys import KEYS_BY_NAME, PROJECT, PROVIDER_SECRETS, WAF_RATE_LIMIT_RANGE
from components.config.model import (
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
from components.config.reader import ConfigReader
from components.config.validation import (
    ACM_ARN_PATTERN,
    CONTENT_TYPE_PATTERN,
    DOMAIN_PATTERN,
    EMAIL_PATTERN,
    validate_frontend,
    validate_frontend_domains,
    validate_high_availability,
    validate_mail,
    validate_network,
)

# CloudWatch Logs accepts only these retention values.
# fmt: off
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
)
# fmt: on
SCALED_SERVICES = ("upload", "download", "chat")
# CreateDBInstance's MonitoringInterval (RDS API Reference): "Valid Values: 0 | 1 | 5 | 10 | 15 | 30 |
# 60", 0 turning Enhanced Monitoring off.
RDS_MONITORING_INTERVALS = (0, 1, 5, 10, 15, 30, 60)


class ConfigError(ValueError):
    """Stack configuration is invalid; the message names every bad key, the stack and what is allowed."""


def load_config(stack: str, raw: Mapping[str, str], region: str) -> StackConfig:
    """Build and validate the stack's config from raw `motion:*` values (key names without namespace).

    Each section is read and checked on its own; every problem is collected, then raised at once.
    """
    r = ConfigReader(stack, raw)
    for unknown in sorted(set(raw) - set(KEYS_BY_NAME)):
        r.errors.append(f"{PROJECT}:{unknown}: unknown key (known keys are listed in Pulumi.yaml)")
    g = r.get
    network = _network(r)
    scalings = {svc: _scaling(r, svc) for svc in SCALED_SERVICES}
    database = _database(r)
    cache = _cache(r)
    retention = g("logRetentionDays")
    r.check(
        "logRetentionDays",
        retention in LOG_RETENTION_DAYS,
        f"{retention} is not a CloudWatch retention value",
    )
    domain, cert = _domain_and_certificate(r)
    auth = _auth(r)
    mail = _mail(r)
    files = _files(r)
    frontend = _frontend(r)
    alarm_email = g("alarmEmail")
    waf_rate_limit = g("wafRateLimit")
    low, high = WAF_RATE_LIMIT_RANGE
    r.check("wafRateLimit", low <= waf_rate_limit <= high, f"{waf_rate_limit}")
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
        waf=g("waf"),
        waf_rate_limit=waf_rate_limit,
        data_protection=g("dataProtection"),
        data_kms_encryption=g("dataKmsEncryption"),
        logs_kms_encryption=g("logsKmsEncryption"),
    )
    validate_frontend_domains(r, config)
    validate_high_availability(r, config)
    if not region:
        r.errors.append("aws:region: is required (set it with `pulumi config set aws:region <region>`)")
    if r.errors:
        raise ConfigError(
            f"Invalid configuration for stack '{stack}' ({len(r.errors)} problem(s)):\n  - "
            + "\n  - ".join(r.errors)
        )
    return config


def _network(r: ConfigReader) -> NetworkConfig:
    nat = r.get("natStrategy")
    r.check("natStrategy", nat in NAT_STRATEGIES, f"{nat!r} is not a NAT strategy")
    network = NetworkConfig(r.get("azCount"), nat, r.get("vpcCidr"), r.get("flowLogs"))
    validate_network(r, network)
    return network


def _scaling(r: ConfigReader, svc: str) -> Scaling:
    s = Scaling(r.get(f"{svc}DesiredCount"), r.get(f"{svc}MinCount"), r.get(f"{svc}MaxCount"))
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
    return s


def _database(r: ConfigReader) -> DatabaseConfig:
    db = DatabaseConfig(
        r.get("dbInstanceClass"),
        r.get("dbAllocatedStorageGb"),
        r.get("dbMaxAllocatedStorageGb"),
        r.get("dbMultiAz"),
        r.get("dbDeletionProtection"),
        r.get("dbBackupRetentionDays"),
        r.get("dbPerformanceInsights"),
        r.get("dbEngineVersion"),
        r.get("dbMonitoringIntervalSeconds"),
    )
    r.check("dbInstanceClass", db.instance_class.startswith("db."), f"{db.instance_class!r}")
    r.check("dbAllocatedStorageGb", 20 <= db.allocated_storage_gb <= 65536, f"{db.allocated_storage_gb}")
    r.check(
        "dbMaxAllocatedStorageGb",
        db.max_allocated_storage_gb == 0 or db.max_allocated_storage_gb >= db.allocated_storage_gb,
        f"{db.max_allocated_storage_gb} is below dbAllocatedStorageGb ({db.allocated_storage_gb})",
    )
    r.check("dbBackupRetentionDays", 1 <= db.backup_retention_days <= 35, f"{db.backup_retention_days}")
    r.check("dbEngineVersion", db.engine_version.isdigit(), f"{db.engine_version!r}")
    r.check(
        "dbMonitoringIntervalSeconds",
        db.monitoring_interval_seconds in RDS_MONITORING_INTERVALS,
        f"{db.monitoring_interval_seconds} is not an Enhanced Monitoring interval",
    )
    return db


def _cache(r: ConfigReader) -> CacheConfig:
    cache = CacheConfig(r.get("cacheNodeType"), r.get("cacheReplicas"))
    r.check("cacheNodeType", cache.node_type.startswith("cache."), f"{cache.node_type!r}")
    r.check("cacheReplicas", 0 <= cache.replicas <= 5, f"{cache.replicas}")
    return cache


def _domain_and_certificate(r: ConfigReader) -> tuple[str, str]:
    domain, cert = r.get("domain"), r.get("certificateArn")
    r.check("domain", not domain or bool(DOMAIN_PATTERN.match(domain)), f"{domain!r} is not a DNS name")
    r.check("certificateArn", not cert or bool(ACM_ARN_PATTERN.match(cert)), f"{cert!r}")
    r.check(
        "certificateArn",
        not cert or bool(domain),
        "a certificate needs motion:domain to name the host it covers",
    )
    return domain, cert


def _auth(r: ConfigReader) -> AuthConfig:
    auth = AuthConfig(
        r.get("authIssuer"), r.get("authJwksUrl"), r.get("authAudience"), r.get("clerkPublishableKey")
    )
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
    return auth


def _mail(r: ConfigReader) -> MailConfig:
    mail = MailConfig(
        r.get("sesSenderDomain"),
        r.get("mailSenderName"),
        r.get("mailMaxReceiveCount"),
        r.get("mailBatchSize"),
        r.get("mailBatchingWindowSeconds"),
        r.get("mailMaxConcurrency"),
        r.get("mailerTimeoutSeconds"),
        r.get("mailApiThrottleRate"),
        r.get("mailApiThrottleBurst"),
        r.get("mailApiReservedConcurrency"),
        r.get("mailQuotaPerHour"),
        r.get("mailQuotaPerDay"),
    )
    validate_mail(r, mail)
    return mail


def _files(r: ConfigReader) -> FilesConfig:
    files = FilesConfig(
        r.get("filesMaxUploadBytes"), r.get("filesAllowedContentTypes"), r.get("filesPresignTtlSeconds")
    )
    r.check("filesMaxUploadBytes", 1 <= files.max_upload_bytes <= 5 * 1024**3, f"{files.max_upload_bytes}")
    r.check(
        "filesAllowedContentTypes",
        bool(files.allowed_content_types)
        and all(CONTENT_TYPE_PATTERN.match(t) for t in files.allowed_content_types),
        f"{list(files.allowed_content_types)}",
    )
    r.check("filesPresignTtlSeconds", 30 <= files.presign_ttl_seconds <= 900, f"{files.presign_ttl_seconds}")
    return files


def _frontend(r: ConfigReader) -> FrontendConfig:
    frontend = FrontendConfig(
        r.get("vercelProjectName"),
        r.get("vercelTeamId"),
        r.get("frontendGitRepository"),
        r.get("frontendRootDirectory"),
        r.get("frontendProductionBranch"),
        r.get("frontendTargets"),
        r.get("frontendDomains"),
        r.get("extraCorsOrigins"),
    )
    validate_frontend(r, frontend)
    return frontend


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
    missing = [
        f"{key}: is required (set it with `pulumi config set --secret {key} <token>`, or export {variable})"
        for key, variable in PROVIDER_SECRETS.items()
        if not (everything.get(key) or os.environ.get(variable))
    ]
    if missing:
        raise ConfigError(
            f"Invalid configuration for stack '{config.stack}' ({len(missing)} problem(s)):\n  - "
            + "\n  - ".join(missing)
        )
    return config
