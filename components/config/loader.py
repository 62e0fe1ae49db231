"""Loading the stack's configuration: raw config strings (from the engine or a stack file) in, one
validated, immutable `StackConfig` out, before any resource is registered.

Every key, its type and its default live in `components.config.keys.KEYS`; the typed model in
`components.config.model`; the cross-field checks in `components.config.validation`. This module
applies the per-key checks and raises one `ConfigError` naming every bad key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from components.config.keys import (
    CONTENT_TYPE_PATTERN,
    KEYS_BY_NAME,
    PROJECT,
    PROVIDER_SECRETS,
    SCALED_SERVICES,
)
from components.config.model import (
    AuthConfig,
    CacheConfig,
    DatabaseConfig,
    DnsConfig,
    FilesConfig,
    FrontendConfig,
    MailConfig,
    NetworkConfig,
    Scaling,
    StackConfig,
)
from components.config.reader import ConfigReader
from components.config.validation import (
    validate_dns,
    validate_frontend,
    validate_frontend_domains,
    validate_high_availability,
    validate_mail,
    validate_network,
)


class ConfigError(ValueError):
    """Stack configuration is invalid; the message names every bad key, the stack and what is allowed."""


def load_config(stack: str, raw: Mapping[str, str], region: str) -> StackConfig:
    """Build and validate the stack's config from raw `motion:*` values (key names without namespace).

    Each value is checked against its key's bounds as it is read (ConfigReader.get), each section
    then on its own; every problem is collected, then raised at once.
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
    domain, cert = _domain_and_certificate(r)
    dns = DnsConfig(g("hostedZoneId"), g("hostedZoneName"), g("dmarcPolicy"))
    auth = _auth(r)
    mail = _mail(r)
    files = _files(r)
    frontend = _frontend(r)
    alarm_email = g("alarmEmail")
    waf_rate_limit = g("wafRateLimit")

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
        dns=dns,
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
    validate_dns(r, config)
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
    network = NetworkConfig(r.get("azCount"), r.get("natStrategy"), r.get("vpcCidr"), r.get("flowLogs"))
    validate_network(r, network)
    return network


def _scaling(r: ConfigReader, svc: str) -> Scaling:
    s = Scaling(r.get(f"{svc}DesiredCount"), r.get(f"{svc}MinCount"), r.get(f"{svc}MaxCount"))
    # Each count's own bounds are the key table's (the reader enforces them); these relate them.
    r.check(f"{svc}MinCount", s.min <= s.max, f"min {s.min} must not be above {svc}MaxCount ({s.max})")
    r.check(
        f"{svc}DesiredCount",
        s.min <= s.desired <= s.max,
        f"desired {s.desired} must lie between {svc}MinCount ({s.min}) and {svc}MaxCount ({s.max})",
    )
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
    r.check(
        "dbMaxAllocatedStorageGb",
        db.max_allocated_storage_gb == 0 or db.max_allocated_storage_gb >= db.allocated_storage_gb,
        f"{db.max_allocated_storage_gb} is below dbAllocatedStorageGb ({db.allocated_storage_gb})",
    )
    return db


def _cache(r: ConfigReader) -> CacheConfig:
    return CacheConfig(r.get("cacheNodeType"), r.get("cacheReplicas"))


def _domain_and_certificate(r: ConfigReader) -> tuple[str, str]:
    domain, cert = r.get("domain"), r.get("certificateArn")
    r.check(
        "certificateArn",
        not cert or bool(domain),
        "a certificate needs motion:domain to name the host it covers",
    )
    return domain, cert


def _auth(r: ConfigReader) -> AuthConfig:
    return AuthConfig(
        r.get("authIssuer"), r.get("authJwksUrl"), r.get("authAudience"), r.get("clerkPublishableKey")
    )


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
        r.get("mailBounceRateAlarmBasisPoints"),
        r.get("mailComplaintRateAlarmBasisPoints"),
    )
    validate_mail(r, mail)
    return mail


def _files(r: ConfigReader) -> FilesConfig:
    files = FilesConfig(
        r.get("filesMaxUploadBytes"),
        r.get("filesAllowedContentTypes"),
        r.get("filesPresignTtlSeconds"),
        r.get("filesMaxShareDays"),
        r.get("filesMaxPendingUploadsPerUser"),
        r.get("filesMaxProjectBytes"),
    )
    # The service refuses to start otherwise (files_service/settings.py): one upload must fit.
    r.check(
        "filesMaxProjectBytes",
        files.max_project_bytes >= files.max_upload_bytes,
        f"{files.max_project_bytes} is less than filesMaxUploadBytes ({files.max_upload_bytes})",
    )
    r.check(
        "filesAllowedContentTypes",
        bool(files.allowed_content_types)
        and all(CONTENT_TYPE_PATTERN.match(t) for t in files.allowed_content_types),
        f"{list(files.allowed_content_types)}",
    )
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
