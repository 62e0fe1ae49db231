"""The stack's typed configuration: one immutable object, loaded with explicit defaults, validated
before any resource is registered.

Pulumi config values are strings (arrays arrive as JSON), and `Pulumi.yaml` defaults are not applied
under mocks, so every key, its type and its default live here, in `KEYS`. `Pulumi.yaml` documents the
same keys for the CLI; a test keeps the two in step.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

PROJECT = "motion"
NAT_STRATEGIES = ("none", "single", "per_az")
# Subnet layout: each subnet is the VPC CIDR split by SUBNET_NEWBITS, at a fixed slot per (tier, AZ),
# so adding an AZ later never renumbers the subnets that exist.
SUBNET_NEWBITS = 4
MAX_AZS = 5
TIERS = ("public", "private", "isolated")
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

# Recipients per message: SES accepts at most 50 per e-mail.
MAIL_MAX_RECIPIENTS = 50
REQUIRED: Any = None  # a Key default meaning "no default: the stack must set it"

NatStrategy = Literal["none", "single", "per_az"]


class ConfigError(ValueError):
    """Stack configuration is invalid; the message names every bad key, the stack and what is allowed."""


@dataclass(frozen=True, slots=True)
class Scaling:
    desired: int
    min: int
    max: int


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    az_count: int
    nat_strategy: NatStrategy
    vpc_cidr: str
    flow_logs: bool

    def subnet_cidr(self, tier: str, az_index: int) -> str:
        network = ipaddress.ip_network(self.vpc_cidr)
        slot = TIERS.index(tier) * MAX_AZS + az_index
        return str(list(network.subnets(new_prefix=network.prefixlen + SUBNET_NEWBITS))[slot])


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    instance_class: str
    allocated_storage_gb: int
    max_allocated_storage_gb: int
    multi_az: bool
    deletion_protection: bool
    backup_retention_days: int
    performance_insights: bool
    engine_version: str


@dataclass(frozen=True, slots=True)
class CacheConfig:
    node_type: str
    replicas: int


@dataclass(frozen=True, slots=True)
class AuthConfig:
    issuer: str
    jwks_url: str
    audience: str
    clerk_publishable_key: str


@dataclass(frozen=True, slots=True)
class MailConfig:
    sender_domain: str
    sender_name: str
    max_receive_count: int
    batch_size: int
    batching_window_seconds: int
    max_concurrency: int
    mailer_timeout_seconds: int
    api_throttle_rate: int
    api_throttle_burst: int

    @property
    def sender_address(self) -> str:
        """`From` of every e-mail: the display name and a no-reply address at the verified domain."""
        return f"{self.sender_name} <no-reply@{self.sender_domain}>"


@dataclass(frozen=True, slots=True)
class FilesConfig:
    max_upload_bytes: int
    allowed_content_types: tuple[str, ...]
    presign_ttl_seconds: int


@dataclass(frozen=True, slots=True)
class FrontendConfig:
    vercel_project_name: str
    vercel_team_id: str
    git_repository: str
    root_directory: str
    production_branch: str
    targets: tuple[str, ...]
    domains: tuple[str, ...]
    extra_cors_origins: tuple[str, ...]

    @property
    def origins(self) -> tuple[str, ...]:
        """Browser origins allowed by the bucket's and the services' CORS rules."""
        return tuple(f"https://{d}" for d in self.domains) + self.extra_cors_origins


@dataclass(frozen=True, slots=True)
class StackConfig:
    project: str
    stack: str
    region: str
    high_availability: bool
    network: NetworkConfig
    database: DatabaseConfig
    cache: CacheConfig
    upload: Scaling
    download: Scaling
    chat: Scaling
    log_retention_days: int
    domain: str
    certificate_arn: str
    auth: AuthConfig
    mail: MailConfig
    files: FilesConfig
    frontend: FrontendConfig
    alarm_email: str
    container_insights: bool
    alb_deletion_protection: bool
    alb_access_logs: bool
    data_protection: bool
    s3_kms_encryption: bool

    @property
    def tls(self) -> bool:
        return bool(self.certificate_arn)

    @property
    def tags(self) -> dict[str, str]:
        return {"project": self.project, "stack": self.stack, "managed-by": "pulumi"}

    @property
    def name_prefix(self) -> str:
        return f"{self.project}-{self.stack}"


# --- parsing -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Key:
    """One config key: its type, default and what is allowed (for the error message)."""

    name: str
    kind: Literal["string", "integer", "boolean", "array"]
    default: Any
    description: str
    allowed: str = ""


def _k(
    name: str,
    kind: Literal["string", "integer", "boolean", "array"],
    default: Any,
    description: str,
    allowed: str = "",
) -> Key:
    return Key(name, kind, default, description, allowed)


KEYS: tuple[Key, ...] = (
    _k(
        "highAvailability",
        "boolean",
        False,
        "Multi-AZ, load-balanced production posture; tightens validation",
    ),
    _k("azCount", "integer", 2, "Availability zones to span", f"2 to {MAX_AZS}"),
    _k("natStrategy", "string", "none", "NAT gateways for private subnets", "none | single | per_az"),
    _k("vpcCidr", "string", "10.20.0.0/16", "VPC IPv4 CIDR", "an IPv4 CIDR of /16 to /24"),
    _k("flowLogs", "boolean", False, "VPC flow logs to CloudWatch"),
    _k("dbInstanceClass", "string", "db.t4g.micro", "RDS instance class", "a db.* class"),
    _k("dbAllocatedStorageGb", "integer", 20, "Initial RDS storage (GiB)", "20 to 65536"),
    _k(
        "dbMaxAllocatedStorageGb",
        "integer",
        0,
        "Storage autoscaling ceiling (GiB); 0 disables",
        "0, or at least dbAllocatedStorageGb",
    ),
    _k("dbMultiAz", "boolean", False, "RDS Multi-AZ standby"),
    _k("dbDeletionProtection", "boolean", False, "RDS deletion protection"),
    _k("dbBackupRetentionDays", "integer", 1, "RDS automated backup retention (days)", "1 to 35"),
    _k("dbPerformanceInsights", "boolean", False, "RDS Performance Insights"),
    _k("dbEngineVersion", "string", "17", "PostgreSQL major version", "a PostgreSQL major version"),
    _k("cacheNodeType", "string", "cache.t4g.micro", "ElastiCache node type", "a cache.* type"),
    _k("cacheReplicas", "integer", 0, "Redis replicas beside the primary", "0 to 5"),
    *(
        _k(f"{svc}{part}", "integer", 1, f"{svc} service {part.lower()} task count", "1 to 100")
        for svc in ("upload", "download", "chat")
        for part in ("DesiredCount", "MinCount", "MaxCount")
    ),
    _k("logRetentionDays", "integer", 7, "CloudWatch Logs retention (days)", "a CloudWatch retention value"),
    _k("domain", "string", "", "Public API host name (empty: the load balancer's DNS name)"),
    _k(
        "certificateArn",
        "string",
        "",
        "ACM certificate ARN for HTTPS (empty: HTTP only)",
        "an ACM certificate ARN",
    ),
    _k("authIssuer", "string", REQUIRED, "Clerk issuer (iss claim)", "an https:// URL"),
    _k("authJwksUrl", "string", REQUIRED, "Clerk JWKS URL", "an https:// URL"),
    _k("authAudience", "string", REQUIRED, "Expected token audience (aud claim)", "a non-empty string"),
    _k(
        "clerkPublishableKey",
        "string",
        REQUIRED,
        "Clerk publishable key for the frontend",
        "pk_test_... or pk_live_...",
    ),
    _k("sesSenderDomain", "string", REQUIRED, "Domain Motion sends e-mail from", "a DNS domain name"),
    _k("mailSenderName", "string", "Motion", "Display name on outgoing e-mail"),
    _k(
        "mailMaxReceiveCount",
        "integer",
        5,
        "Receives before a mail event goes to the dead-letter queue",
        "1 to 100",
    ),
    _k("mailBatchSize", "integer", 10, "SQS records per mailer invocation", "1 to 10000"),
    _k("mailBatchingWindowSeconds", "integer", 1, "Seconds the mapping may wait to fill a batch", "0 to 300"),
    _k(
        "mailMaxConcurrency",
        "integer",
        2,
        "Mailer invocations at once (keeps SES within its send rate)",
        "2 to 1000",
    ),
    _k("mailerTimeoutSeconds", "integer", 30, "Mailer Lambda timeout (s)", "3 to 900"),
    _k("mailApiThrottleRate", "integer", 50, "Mail API steady requests/s", "1 to 10000"),
    _k("mailApiThrottleBurst", "integer", 100, "Mail API burst", "1 to 5000"),
    _k("filesMaxUploadBytes", "integer", 104857600, "Largest upload accepted (bytes)", "1 to 5 GiB"),
    _k(
        "filesAllowedContentTypes",
        "array",
        [
            "application/pdf",
            "image/png",
            "image/jpeg",
            "image/gif",
            "image/webp",
            "text/plain",
            "text/csv",
            "application/zip",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ],
        "Content types accepted for upload",
        "a non-empty list of type/subtype",
    ),
    _k("filesPresignTtlSeconds", "integer", 300, "Lifetime of pre-signed URLs (s)", "30 to 900"),
    _k(
        "vercelProjectName",
        "string",
        REQUIRED,
        "Vercel project name",
        "lowercase letters, digits, '-', max 100",
    ),
    _k("vercelTeamId", "string", "", "Vercel team id (empty: personal account)"),
    _k("frontendGitRepository", "string", REQUIRED, "Git repository of the frontend app", "owner/name"),
    _k("frontendRootDirectory", "string", "frontend", "Directory of the Vite app in that repository"),
    _k("frontendProductionBranch", "string", "main", "Branch Vercel deploys to production"),
    _k(
        "frontendTargets",
        "array",
        ["preview", "development"],
        "Vercel environments this stack's variables apply to",
        "a list of production | preview | development",
    ),
    _k(
        "frontendDomains",
        "array",
        [],
        "Domains the frontend is served on (CORS origins derive from them)",
        "a list of DNS names",
    ),
    _k(
        "extraCorsOrigins",
        "array",
        [],
        "Further browser origins, e.g. http://localhost:5173 in dev",
        "a list of http(s)://host[:port] origins",
    ),
    _k("alarmEmail", "string", REQUIRED, "Where alarms are e-mailed", "an e-mail address"),
    _k("containerInsights", "boolean", False, "ECS Container Insights"),
    _k("albDeletionProtection", "boolean", False, "Load balancer deletion protection"),
    _k("albAccessLogs", "boolean", False, "Load balancer access logs to S3"),
    _k("dataProtection", "boolean", False, "PITR and deletion protection on tables, S3 versioning"),
    _k("s3KmsEncryption", "boolean", False, "SSE-KMS (with a bucket key) instead of SSE-S3 for file storage"),
)
KEYS_BY_NAME = {key.name: key for key in KEYS}

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ORIGIN = re.compile(r"^https?://[a-z0-9.-]+(:\d{1,5})?$")
_ACM_ARN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}$")
_VERCEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_CONTENT_TYPE = re.compile(r"^[a-z]+/[a-z0-9.+-]+$")


class _Reader:
    """Typed access to raw config strings; records problems instead of stopping at the first."""

    def __init__(self, stack: str, raw: Mapping[str, str]) -> None:
        self.stack = stack
        self.raw = raw
        self.errors: list[str] = []

    def fail(self, key: str, problem: str) -> None:
        allowed = KEYS_BY_NAME[key].allowed if key in KEYS_BY_NAME else ""
        hint = f" (allowed: {allowed})" if allowed else ""
        self.errors.append(f"{PROJECT}:{key}: {problem}{hint}")

    def get(self, name: str) -> Any:
        key = KEYS_BY_NAME[name]
        if name not in self.raw:
            if key.default is REQUIRED:
                self.fail(name, "is required")
                return ""
            return tuple(key.default) if key.kind == "array" else key.default
        text = self.raw[name]
        try:
            return _convert(key, text)
        except ValueError as err:
            self.fail(name, f"{text!r} is not a valid {key.kind} ({err})")
            return tuple(key.default or ()) if key.kind == "array" else key.default

    def check(self, name: str, ok: bool, problem: str) -> None:
        if not ok:
            self.fail(name, problem)


def _convert(key: Key, text: str | Any) -> Any:
    if not isinstance(text, str):  # already typed (tests may pass Python values)
        text = json.dumps(text)
    if key.kind == "string":
        return text
    if key.kind == "boolean":
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise ValueError("expected true or false")
    if key.kind == "integer":
        value = float(text)
        if not value.is_integer():
            raise ValueError("expected a whole number")
        return int(value)
    parsed = json.loads(text)
    if not isinstance(parsed, list) or not all(isinstance(item, str) for item in parsed):
        raise ValueError("expected a list of strings")
    return tuple(parsed)


def load_config(stack: str, raw: Mapping[str, str], region: str) -> StackConfig:
    """Build and validate the stack's config from raw `motion:*` values (key names without namespace)."""
    r = _Reader(stack, raw)
    for unknown in sorted(set(raw) - set(KEYS_BY_NAME)):
        r.errors.append(f"{PROJECT}:{unknown}: unknown key (known keys are listed in Pulumi.yaml)")
    g = r.get
    nat = g("natStrategy")
    r.check("natStrategy", nat in NAT_STRATEGIES, f"{nat!r} is not a NAT strategy")
    network = NetworkConfig(g("azCount"), nat, g("vpcCidr"), g("flowLogs"))
    _validate_network(r, network)

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
    r.check("domain", not domain or bool(_DOMAIN.match(domain)), f"{domain!r} is not a DNS name")
    r.check("certificateArn", not cert or bool(_ACM_ARN.match(cert)), f"{cert!r}")
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
    _validate_mail(r, mail)
    files = FilesConfig(g("filesMaxUploadBytes"), g("filesAllowedContentTypes"), g("filesPresignTtlSeconds"))
    r.check("filesMaxUploadBytes", 1 <= files.max_upload_bytes <= 5 * 1024**3, f"{files.max_upload_bytes}")
    r.check(
        "filesAllowedContentTypes",
        bool(files.allowed_content_types)
        and all(_CONTENT_TYPE.match(t) for t in files.allowed_content_types),
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
    _validate_frontend(r, frontend)
    alarm_email = g("alarmEmail")
    r.check("alarmEmail", bool(_EMAIL.match(alarm_email)), f"{alarm_email!r} is not an e-mail address")

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
    _validate_high_availability(r, config)
    if not region:
        r.errors.append("aws:region: is required (set it with `pulumi config set aws:region <region>`)")
    if r.errors:
        raise ConfigError(
            f"Invalid configuration for stack '{stack}' ({len(r.errors)} problem(s)):\n  - "
            + "\n  - ".join(r.errors)
        )
    return config


def _validate_network(r: _Reader, network: NetworkConfig) -> None:
    r.check(
        "azCount",
        2 <= network.az_count <= MAX_AZS,
        f"{network.az_count} AZs (the load balancer and the database need at least 2)",
    )
    try:
        cidr = ipaddress.ip_network(network.vpc_cidr)
    except ValueError as err:
        r.fail("vpcCidr", f"{network.vpc_cidr!r} is not a CIDR ({err})")
        return
    if cidr.version != 4 or not cidr.is_private:
        r.fail("vpcCidr", f"{network.vpc_cidr} must be a private IPv4 range")
    # AWS subnets are at most /28; the fixed layout needs SUBNET_NEWBITS more bits than the VPC.
    if not 16 <= cidr.prefixlen <= 28 - SUBNET_NEWBITS:
        needed = len(TIERS) * MAX_AZS
        r.fail("vpcCidr", f"{network.vpc_cidr} cannot hold {needed} subnet slots of at least /28")


def _validate_mail(r: _Reader, mail: MailConfig) -> None:
    r.check(
        "sesSenderDomain", bool(_DOMAIN.match(mail.sender_domain)), f"{mail.sender_domain!r} is not a domain"
    )
    r.check("mailMaxReceiveCount", 1 <= mail.max_receive_count <= 100, f"{mail.max_receive_count}")
    r.check("mailBatchSize", 1 <= mail.batch_size <= 10_000, f"{mail.batch_size}")
    r.check(
        "mailBatchSize",
        mail.batch_size <= 10 or mail.batching_window_seconds >= 1,
        "batches above 10 need mailBatchingWindowSeconds >= 1",
    )
    r.check(
        "mailBatchingWindowSeconds",
        0 <= mail.batching_window_seconds <= 300,
        f"{mail.batching_window_seconds}",
    )
    r.check("mailMaxConcurrency", 2 <= mail.max_concurrency <= 1000, f"{mail.max_concurrency}")
    r.check("mailerTimeoutSeconds", 3 <= mail.mailer_timeout_seconds <= 900, f"{mail.mailer_timeout_seconds}")
    r.check("mailApiThrottleRate", 1 <= mail.api_throttle_rate <= 10_000, f"{mail.api_throttle_rate}")
    r.check("mailApiThrottleBurst", 1 <= mail.api_throttle_burst <= 5_000, f"{mail.api_throttle_burst}")


def _validate_frontend(r: _Reader, frontend: FrontendConfig) -> None:
    r.check(
        "vercelProjectName",
        bool(_VERCEL_NAME.match(frontend.vercel_project_name)),
        f"{frontend.vercel_project_name!r}",
    )
    r.check(
        "frontendGitRepository", bool(_REPO.match(frontend.git_repository)), f"{frontend.git_repository!r}"
    )
    r.check(
        "frontendRootDirectory",
        ".." not in frontend.root_directory.split("/"),
        f"{frontend.root_directory!r}",
    )
    r.check("frontendProductionBranch", bool(frontend.production_branch.strip()), "must not be empty")
    bad_targets = [t for t in frontend.targets if t not in ("production", "preview", "development")]
    r.check("frontendTargets", bool(frontend.targets) and not bad_targets, f"{list(frontend.targets)}")
    bad_domains = [d for d in frontend.domains if not _DOMAIN.match(d)]
    r.check("frontendDomains", not bad_domains, f"{bad_domains} are not DNS names")
    bad_origins = [o for o in frontend.extra_cors_origins if not _ORIGIN.match(o)]
    r.check("extraCorsOrigins", not bad_origins, f"{bad_origins} are not origins")
    r.check(
        "frontendDomains",
        bool(frontend.origins),
        "no frontend origin: set frontendDomains or extraCorsOrigins",
    )


_HA_REQUIREMENTS: tuple[tuple[str, Callable[[StackConfig], bool], str], ...] = (
    ("azCount", lambda c: c.network.az_count >= 2, "high availability needs at least 2 AZs"),
    (
        "natStrategy",
        lambda c: c.network.nat_strategy == "per_az",
        "high availability needs one NAT per AZ (per_az)",
    ),
    ("certificateArn", lambda c: c.tls, "high availability serves HTTPS only: a certificate is required"),
    ("dbMultiAz", lambda c: c.database.multi_az, "high availability needs a Multi-AZ database"),
    ("dbDeletionProtection", lambda c: c.database.deletion_protection, "must be true with high availability"),
    (
        "dbBackupRetentionDays",
        lambda c: c.database.backup_retention_days >= 7,
        "must be at least 7 with high availability",
    ),
    (
        "cacheReplicas",
        lambda c: c.cache.replicas >= 1,
        "high availability needs at least 1 replica for failover",
    ),
    ("uploadMinCount", lambda c: c.upload.min >= 2, "must be at least 2 with high availability"),
    ("downloadMinCount", lambda c: c.download.min >= 2, "must be at least 2 with high availability"),
    ("chatMinCount", lambda c: c.chat.min >= 2, "must be at least 2 with high availability"),
    ("flowLogs", lambda c: c.network.flow_logs, "must be true with high availability"),
    ("dataProtection", lambda c: c.data_protection, "must be true with high availability"),
    ("albDeletionProtection", lambda c: c.alb_deletion_protection, "must be true with high availability"),
    ("albAccessLogs", lambda c: c.alb_access_logs, "must be true with high availability"),
)


def _validate_high_availability(r: _Reader, config: StackConfig) -> None:
    if config.stack == "production" and not config.high_availability:
        r.fail("highAvailability", "the production stack must set it to true")
    if not config.high_availability:
        return
    for key, ok, problem in _HA_REQUIREMENTS:
        if not ok(config):
            r.fail(key, problem)


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
