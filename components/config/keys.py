"""The stack's config keys: every `motion:*` key, its type, its default and what is allowed, in one
table (`KEYS`).

The program receives every value as a string (lists as JSON text, booleans as "true"/"false"), with
`Pulumi.yaml`'s defaults already applied by the CLI. The defaults live here all the same, since
`Pulumi.yaml` is generated from this table (stacktools/pulumi_yaml.py; a test keeps the two in step) and
the loader still needs them where no CLI runs. Under mocks, stacktools/stack_files.py applies them as the
CLI does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

# The Pulumi project: the namespace of every key below (`motion:<key>`) and the `project` of every
# resource name and tag.
PROJECT = "motion"

# Subnet layout: each subnet is the VPC CIDR split by SUBNET_NEWBITS, at a fixed slot per (tier, AZ),
# so adding an AZ later never renumbers the subnets that exist. It lives with the keys because it
# bounds azCount, and config_validation checks vpcCidr against it.
SUBNET_NEWBITS = 4
MAX_AZS = 5
TIERS = ("public", "private", "isolated")
# Lambda keeps 100 executions of the account's concurrency unreserved (PutFunctionConcurrency, Lambda
# API Reference: "as long as you leave at least 100 simultaneous executions unreserved"); with the
# default account quota of 1000 that leaves 900 to reserve. An account with a lower quota rejects less.
MAX_RESERVED_CONCURRENCY = 900
# A rate-based rule's limit (AWS WAF Developer Guide, "Rate-based rule high-level settings": "The lowest
# limit setting allowed is 10"; WAF API Reference, RateBasedStatement Limit: at most 2,000,000,000).
WAF_RATE_LIMIT_RANGE = (10, 2_000_000_000)
REQUIRED: Any = None  # a Key default meaning "no default: the stack must set it"


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
    _k(
        "dbMonitoringIntervalSeconds",
        "integer",
        0,
        "RDS Enhanced Monitoring interval (s); 0 disables",
        "0, 1, 5, 10, 15, 30 or 60",
    ),
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
    _k(
        "mailApiReservedConcurrency",
        "integer",
        0,
        "Executions reserved for the mail API Lambda, also its ceiling; 0 reserves none",
        f"0 to {MAX_RESERVED_CONCURRENCY}",
    ),
    _k("mailQuotaPerHour", "integer", 100, "E-mails one user may send per clock hour", "1 to 10000"),
    _k(
        "mailQuotaPerDay",
        "integer",
        300,
        "E-mails one user may send per UTC day",
        "1 to 100000, at least mailQuotaPerHour",
    ),
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
        "Vercel project name (one project per stack)",
        "lowercase letters, digits and '-', 1 to 52 characters",
    ),
    _k("vercelTeamId", "string", "", "Vercel team id (empty: personal account)"),
    _k("frontendGitRepository", "string", REQUIRED, "Git repository of the frontend app", "owner/name"),
    _k("frontendRootDirectory", "string", "frontend", "Directory of the Vite app in that repository"),
    _k("frontendProductionBranch", "string", "main", "Branch Vercel deploys to production"),
    _k(
        "frontendTargets",
        "array",
        ["production"],
        "Vercel environments the project deploys; every VITE_* variable is set for each",
        "production, optionally development (needs a localhost origin in extraCorsOrigins)",
    ),
    _k(
        "frontendDomains",
        "array",
        [],
        "Domains attached to the stack's Vercel project (CORS origins derive from them)",
        "a list of distinct DNS names, not the API host",
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
    _k("waf", "boolean", False, "AWS WAF web ACL on the load balancer (managed rules, rate limit, logs)"),
    _k(
        "wafRateLimit",
        "integer",
        2000,
        "Requests per client IP per 5 minutes before WAF blocks it",
        f"{WAF_RATE_LIMIT_RANGE[0]} to {WAF_RATE_LIMIT_RANGE[1]}",
    ),
    _k("dataProtection", "boolean", False, "PITR and deletion protection on tables, S3 versioning"),
    _k(
        "logsKmsEncryption",
        "boolean",
        False,
        "CloudWatch log groups encrypted with a customer managed KMS key of the stack",
    ),
    _k(
        "dataKmsEncryption",
        "boolean",
        False,
        "Customer managed KMS keys, one per service, for its tables, secrets, image repository, cache, "
        "database and Performance Insights, and file storage (SSE-KMS with a bucket key)",
    ),
)
KEYS_BY_NAME = {key.name: key for key in KEYS}

# Secrets of other packages' providers the program needs, each with the environment variable the
# provider reads instead (CI passes the repository secret of that name): the loader insists on one
# of the two, `make preflight` reports a missing one, and the workflows' test checks CI passes it.
PROVIDER_SECRETS: dict[str, str] = {"vercel:apiToken": "VERCEL_API_TOKEN"}
