"""Cross-field checks on the parsed config, and checks of what no single bound says (a CIDR's range, the
items of a list). A key's own bounds are data in components/config/keys.py, enforced as it is read.
Each check records its problem on the reader rather than raising, so one run reports every bad key at
once."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING

from components.config.keys import (
    DOMAIN_PATTERN,
    MAX_AZS,
    MAX_UNWINDOWED_BATCH,
    ORIGIN_PATTERN,
    TIERS,
    VPC_PREFIX_RANGE,
)

if TYPE_CHECKING:
    from components.config.model import FrontendConfig, MailConfig, NetworkConfig, StackConfig
    from components.config.reader import ConfigReader

# The targets the provider accepts for an environment variable (resource_project_environment_variable.go,
# `target`: OneOf("production", "preview", "development")).
VERCEL_TARGETS = ("production", "preview", "development")
LOCAL_HOSTS = ("localhost", "127.0.0.1")


def validate_network(r: ConfigReader, network: NetworkConfig) -> None:
    try:
        cidr = ipaddress.ip_network(network.vpc_cidr)
    except ValueError as err:
        r.fail("vpcCidr", f"{network.vpc_cidr!r} is not a CIDR ({err})")
        return
    if cidr.version != 4 or not cidr.is_private:
        r.fail("vpcCidr", f"{network.vpc_cidr} must be a private IPv4 range")
    # AWS subnets are at most /28; the fixed layout needs SUBNET_NEWBITS more bits than the VPC.
    low, high = VPC_PREFIX_RANGE
    if not low <= cidr.prefixlen <= high:
        needed = len(TIERS) * MAX_AZS
        r.fail("vpcCidr", f"{network.vpc_cidr} cannot hold {needed} subnet slots of at least /28")


def validate_mail(r: ConfigReader, mail: MailConfig) -> None:
    r.check(
        "mailBatchSize",
        mail.batch_size <= MAX_UNWINDOWED_BATCH or mail.batching_window_seconds >= 1,
        f"batches above {MAX_UNWINDOWED_BATCH} need mailBatchingWindowSeconds >= 1",
    )
    r.check(
        "mailQuotaPerDay",
        mail.quota_per_hour <= mail.quota_per_day,
        f"{mail.quota_per_day} (must be at least mailQuotaPerHour, {mail.quota_per_hour})",
    )


def validate_frontend(r: ConfigReader, frontend: FrontendConfig) -> None:
    r.check(
        "frontendRootDirectory",
        ".." not in frontend.root_directory.split("/"),
        f"{frontend.root_directory!r}",
    )
    r.check("frontendProductionBranch", bool(frontend.production_branch.strip()), "must not be empty")
    _validate_targets(r, frontend)
    bad_domains = [d for d in frontend.domains if not DOMAIN_PATTERN.match(d)]
    r.check("frontendDomains", not bad_domains, f"{bad_domains} are not DNS names")
    # Each domain becomes one vercel.ProjectDomain of this project (the provider only requires a
    # string, resource_project_domain.go), and Vercel attaches a domain to one project only.
    repeated = sorted({d for d in frontend.domains if frontend.domains.count(d) > 1})
    r.check("frontendDomains", not repeated, f"{repeated} listed more than once")
    bad_origins = [o for o in frontend.extra_cors_origins if not ORIGIN_PATTERN.match(o)]
    r.check("extraCorsOrigins", not bad_origins, f"{bad_origins} are not origins")
    r.check(
        "frontendDomains",
        bool(frontend.origins),
        "no frontend origin: set frontendDomains or extraCorsOrigins",
    )


def _validate_targets(r: ConfigReader, frontend: FrontendConfig) -> None:
    """The Vercel environments the project deploys, each of which gets every VITE_* variable: a
    target the project builds without them would ship a frontend pointed at nothing."""
    targets = list(frontend.targets)
    bad = [t for t in targets if t not in VERCEL_TARGETS]
    r.check("frontendTargets", bool(targets) and not bad, f"{targets}")
    r.check("frontendTargets", len(set(targets)) == len(targets), f"{targets} lists a target more than once")
    # A project with a Git repository deploys every push to its production branch as a Production
    # deployment (the provider's `git_repository.production_branch`), whatever the targets say.
    r.check(
        "frontendTargets",
        "production" in targets,
        f"{targets}: the project deploys its production branch to production, so it needs the variables",
    )
    # Previews are served on generated *.vercel.app URLs (https://vercel.com/docs/deployments/environments),
    # which no exact CORS origin of this stack can name, so their calls to the backend would be refused.
    r.check(
        "frontendTargets",
        "preview" not in targets,
        f"{targets}: preview deployments live on generated URLs the backend's CORS cannot allow",
    )
    # `development` is what `vercel env pull` / `vercel dev` give a local run, served on localhost.
    local = [o for o in frontend.extra_cors_origins if o.split("://", 1)[-1].split(":")[0] in LOCAL_HOSTS]
    r.check(
        "frontendTargets",
        "development" not in targets or bool(local),
        f"{targets}: development runs on localhost, which extraCorsOrigins does not allow",
    )


def validate_frontend_domains(r: ConfigReader, config: StackConfig) -> None:
    """A frontend domain gets Vercel's A records in dnsRecords; the API host already has its CNAME."""
    r.check(
        "frontendDomains",
        config.domain not in config.frontend.domains,
        f"{config.domain} is the API host (motion:domain), which points at the load balancer",
    )


def validate_dns(r: ConfigReader, config: StackConfig) -> None:
    """A hosted zone: named by id and name together, instead of a certificate ARN (the program requests
    and validates the API's certificate in it), and holding every name the stack publishes records
    for, since the program writes them in that zone only."""
    dns = config.dns
    r.check("hostedZoneName", bool(dns.zone_id) == bool(dns.zone_name), "set it exactly when hostedZoneId is")
    if not dns.managed:
        return
    r.check(
        "certificateArn",
        not config.certificate_arn,
        "must be empty with motion:hostedZoneId (the program requests and validates the certificate)",
    )
    r.check("domain", bool(config.domain), "a hosted zone needs the API host name its certificate covers")
    if not dns.zone_name:
        return
    zone = dns.zone_name
    r.check(
        "domain",
        not config.domain or dns.holds(config.domain),
        f"{config.domain} is not in the hosted zone {zone}",
    )
    r.check(
        "sesSenderDomain",
        not config.mail.sender_domain or dns.holds(config.mail.sender_domain),
        f"{config.mail.sender_domain} is not in the hosted zone {zone}",
    )
    outside = [d for d in config.frontend.domains if not dns.holds(d)]
    r.check("frontendDomains", not outside, f"{outside} are not in the hosted zone {zone}")


HA_REQUIREMENTS: tuple[tuple[str, Callable[[StackConfig], bool], str], ...] = (
    ("azCount", lambda c: c.network.az_count >= 2, "high availability needs at least 2 AZs"),
    (
        "natStrategy",
        lambda c: c.network.nat_strategy == "per_az",
        "high availability needs one NAT per AZ (per_az)",
    ),
    (
        "certificateArn",
        lambda c: c.tls,
        "high availability serves HTTPS only: a certificate (or motion:hostedZoneId to request one) is required",
    ),
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
    ("waf", lambda c: c.waf, "must be true with high availability"),
    ("logsKmsEncryption", lambda c: c.logs_kms_encryption, "must be true with high availability"),
    ("dataKmsEncryption", lambda c: c.data_kms_encryption, "must be true with high availability"),
    (
        "dbMonitoringIntervalSeconds",
        lambda c: c.database.monitoring_interval_seconds > 0,
        "high availability needs Enhanced Monitoring (an interval above 0)",
    ),
    (
        "mailApiReservedConcurrency",
        lambda c: c.mail.api_reserved_concurrency > 0,
        "high availability reserves executions for the mail API (above 0)",
    ),
)


def validate_high_availability(r: ConfigReader, config: StackConfig) -> None:
    if config.stack == "production" and not config.high_availability:
        r.fail("highAvailability", "the production stack must set it to true")
    if not config.high_availability:
        return
    for key, ok, problem in HA_REQUIREMENTS:
        if not ok(config):
            r.fail(key, problem)
