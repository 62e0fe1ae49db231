"""The stack's typed configuration model: `StackConfig` and the immutable sections it is made of.

Only shapes and values derived from them live here, so components can depend on the model without
the loading machinery; `components.config.loader` builds and validates these from raw config strings.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from components.config.keys import MAX_AZS, SUBNET_NEWBITS, TIERS

# NatStrategy and keys.NAT_STRATEGIES spell the same set: one for mypy, one for checking raw values.
NatStrategy = Literal["none", "single", "per_az"]

# Recipients per message: SES accepts at most 50 per e-mail.
MAIL_MAX_RECIPIENTS = 50


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
    monitoring_interval_seconds: int


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
    api_reserved_concurrency: int
    # E-mails (one per recipient) a user may send per clock hour / UTC day (mailer.quota).
    quota_per_hour: int
    quota_per_day: int
    # SES reputation alarm thresholds, in basis points (mailBounceRateAlarmBasisPoints, ...).
    bounce_rate_alarm_basis_points: int
    complaint_rate_alarm_basis_points: int

    @property
    def bounce_rate_alarm(self) -> float:
        """The bounce rate alarm's threshold as SES publishes the metric: a fraction (0.025 = 2.5 %)."""
        return self.bounce_rate_alarm_basis_points / 10_000

    @property
    def complaint_rate_alarm(self) -> float:
        return self.complaint_rate_alarm_basis_points / 10_000

    @property
    def sender_address(self) -> str:
        """`From` of every e-mail: the display name and a no-reply address at the verified domain."""
        return f"{self.sender_name} <no-reply@{self.sender_domain}>"


@dataclass(frozen=True, slots=True)
class FilesConfig:
    max_upload_bytes: int
    allowed_content_types: tuple[str, ...]
    presign_ttl_seconds: int
    # Quotas (app_code/files/README.md, "Limits"): the longest share, the uploads one user may have
    # pending at once, and the bytes one project may hold.
    max_share_days: int
    max_pending_uploads_per_user: int
    max_project_bytes: int


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
class DnsConfig:
    """The Route 53 hosted zone the program publishes every record in (empty: none, the records are
    stack outputs to publish by hand), and the sender domain's DMARC policy."""

    zone_id: str
    zone_name: str
    dmarc_policy: str

    @property
    def managed(self) -> bool:
        return bool(self.zone_id)

    def holds(self, name: str) -> bool:
        """Whether `name` lies in the zone (is its apex or under it)."""
        return bool(self.zone_name) and (name == self.zone_name or name.endswith(f".{self.zone_name}"))


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
    dns: DnsConfig
    auth: AuthConfig
    mail: MailConfig
    files: FilesConfig
    frontend: FrontendConfig
    alarm_email: str
    container_insights: bool
    alb_deletion_protection: bool
    alb_access_logs: bool
    waf: bool
    waf_rate_limit: int
    data_protection: bool
    data_kms_encryption: bool
    logs_kms_encryption: bool

    @property
    def tls(self) -> bool:
        """HTTPS: with a certificate given by ARN, or one the program requests and validates in the zone."""
        return bool(self.certificate_arn) or self.dns.managed

    @property
    def tags(self) -> dict[str, str]:
        return {"project": self.project, "stack": self.stack, "managed-by": "pulumi"}

    @property
    def name_prefix(self) -> str:
        return f"{self.project}-{self.stack}"
