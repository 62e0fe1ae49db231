"""The stack's config keys: every `motion:*` key, its type, its default and what is allowed, in one
table (`KEYS`).

What is allowed is declared once, as data next to the key: a range (`minimum`/`maximum`), a set of
`choices`, a `pattern`; the reader enforces them (components/config/reader.py) and the prose the loader's
errors and `Pulumi.yaml` show (`Key.allowed`) is generated from them, so the three cannot disagree. A
`note` adds what only a cross-field check can tell (components/config/validation.py), in words.

The program receives every value as a string (lists as JSON text, booleans as "true"/"false"), with
`Pulumi.yaml`'s defaults already applied by the CLI. The defaults live here all the same, since
`Pulumi.yaml` is generated from this table (stacktools/pulumi_yaml.py; a test keeps the two in step) and
the loader still needs them where no CLI runs. Under mocks, stacktools/stack_files.py applies them as the
CLI does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

# The Pulumi project: the namespace of every key below (`motion:<key>`) and the `project` of every
# resource name and tag.
PROJECT = "motion"

# Subnet layout: each subnet is the VPC CIDR split by SUBNET_NEWBITS, at a fixed slot per (tier, AZ),
# so adding an AZ later never renumbers the subnets that exist. It lives with the keys because it
# bounds azCount, and components.config.validation checks vpcCidr against it.
SUBNET_NEWBITS = 4
MAX_AZS = 5
# The VPC's prefix: /16 at most (AWS's largest VPC), and small enough that its subnets, SUBNET_NEWBITS
# longer, are still at least /28 (AWS's smallest subnet).
VPC_PREFIX_RANGE = (16, 28 - SUBNET_NEWBITS)
TIERS = ("public", "private", "isolated")
# Lambda keeps 100 executions of the account's concurrency unreserved (PutFunctionConcurrency, Lambda
# API Reference: "as long as you leave at least 100 simultaneous executions unreserved"); with the
# default account quota of 1000 that leaves 900 to reserve. An account with a lower quota rejects less.
MAX_RESERVED_CONCURRENCY = 900
# Tasks one service may run.
# The services whose task counts are settings (<svc>DesiredCount, MinCount, MaxCount).
SCALED_SERVICES = ("upload", "download", "chat")
# Lambda's SQS event source mapping takes batches above 10 only with a batching window (of >= 1 s).
MAX_UNWINDOWED_BATCH = 10
MAX_TASKS = 100
# A rate-based rule's limit (AWS WAF Developer Guide, "Rate-based rule high-level settings": "The lowest
# limit setting allowed is 10"; WAF API Reference, RateBasedStatement Limit: at most 2,000,000,000).
WAF_RATE_LIMIT_RANGE = (10, 2_000_000_000)
REQUIRED: Any = None  # a Key default meaning "no default: the stack must set it"
NAT_STRATEGIES = ("none", "single", "per_az")
# CloudWatch Logs accepts only these retention values.
# fmt: off
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
)
# fmt: on
# CreateDBInstance's MonitoringInterval (RDS API Reference): "Valid Values: 0 | 1 | 5 | 10 | 15 | 30 |
# 60", 0 turning Enhanced Monitoring off.
RDS_MONITORING_INTERVALS = (0, 1, 5, 10, 15, 30, 60)
# The largest upload S3 takes in one POST (5 GiB).
MAX_UPLOAD_BYTES = 5 * 1024**3

DOMAIN_PATTERN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
ORIGIN_PATTERN = re.compile(r"^https?://[a-z0-9.-]+(:\d{1,5})?$")
ACM_ARN_PATTERN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}$")
HTTPS_URL_PATTERN = re.compile(r"^https://.+")
# The Vercel provider's own rule for a project name (vercel/terraform-provider-vercel,
# vercel/resource_project.go, `name`: LengthBetween(1, 52) and `^[a-z0-9\-]{0,100}$`), checked here so
# a bad name fails before any resource is registered, not half-way through `pulumi up`.
VERCEL_PROJECT_NAME_PATTERN = re.compile(r"^[a-z0-9-]{1,52}$")
REPO_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
CONTENT_TYPE_PATTERN = re.compile(r"^[a-z]+/[a-z0-9.+-]+$")


Kind = Literal["string", "integer", "boolean", "array"]


@dataclass(frozen=True, slots=True)
class Key:
    """One config key: its type, default, and what is allowed, as data the reader checks."""

    name: str
    kind: Kind
    default: Any
    description: str
    # A whole number's range, inclusive (either end may be open).
    minimum: int | None = None
    maximum: int | None = None
    # The only values accepted; `choices_prose` names them where listing them would not help.
    choices: tuple[str, ...] | tuple[int, ...] = ()
    choices_prose: str = ""
    # What a string must match, and the words for it; `empty_ok`: "" means "not set" and passes.
    pattern: re.Pattern[str] | None = None
    pattern_prose: str = ""
    empty_ok: bool = False
    # What a failure says before the allowed values (`{value}` is the value), if not just the value.
    problem: str = ""
    # What else is allowed, enforced by a cross-field check (components/config/validation.py).
    note: str = ""

    @property
    def allowed(self) -> str:
        """What is allowed, in words, generated from the bounds (Pulumi.yaml and the loader's errors)."""
        parts = []
        if self.choices:
            parts.append(self.choices_prose or _choices_prose(self.choices))
        if self.minimum is not None and self.maximum is not None:
            parts.append(f"{_number(self.minimum)} to {_number(self.maximum)}")
        elif self.minimum is not None:
            parts.append(f"at least {_number(self.minimum)}")
        elif self.maximum is not None:
            parts.append(f"at most {_number(self.maximum)}")
        if self.pattern is not None:
            parts.append(self.pattern_prose)
        if self.note:
            parts.append(self.note)
        return ", ".join(parts)

    def violation(self, value: Any) -> str | None:
        """The problem with a converted `value` if it breaks a bound of this key, else None."""
        number = isinstance(value, int) and not isinstance(value, bool)
        text = isinstance(value, str) and not (self.empty_ok and value == "")
        broken = (
            (bool(self.choices) and value not in self.choices)
            or (number and self.minimum is not None and value < self.minimum)
            or (number and self.maximum is not None and value > self.maximum)
            or (text and self.pattern is not None and not self.pattern.match(value))
        )
        return self._problem(value) if broken else None

    def _problem(self, value: Any) -> str:
        if self.problem:
            return self.problem.format(value=value)
        return repr(value) if isinstance(value, str) else str(value)


def _number(value: int) -> str:
    """A bound as a reader would write it: whole GiB as GiB (sizes), anything else as digits."""
    gib = 1024**3
    return f"{value // gib} GiB" if value >= gib and value % gib == 0 else str(value)


def _choices_prose(choices: tuple[str, ...] | tuple[int, ...]) -> str:
    if all(isinstance(choice, str) for choice in choices):
        return " | ".join(str(choice) for choice in choices)
    *rest, last = (str(choice) for choice in choices)
    return f"{', '.join(rest)} or {last}" if rest else last


def _k(name: str, kind: Kind, default: Any, description: str, **allowed: Any) -> Key:
    return Key(name, kind, default, description, **allowed)


KEYS: tuple[Key, ...] = (
    _k(
        "highAvailability",
        "boolean",
        False,
        "Multi-AZ, load-balanced production posture; tightens validation",
    ),
    _k(
        "azCount",
        "integer",
        2,
        "Availability zones to span",
        minimum=2,
        maximum=MAX_AZS,
        problem="{value} AZs (the load balancer and the database need at least 2)",
    ),
    _k(
        "natStrategy",
        "string",
        "none",
        "NAT gateways for private subnets",
        choices=NAT_STRATEGIES,
        problem="{value!r} is not a NAT strategy",
    ),
    _k(
        "vpcCidr",
        "string",
        "10.20.0.0/16",
        "VPC IPv4 CIDR",
        note=f"an IPv4 CIDR of /{VPC_PREFIX_RANGE[0]} to /{VPC_PREFIX_RANGE[1]}",
    ),
    _k("flowLogs", "boolean", False, "VPC flow logs to CloudWatch"),
    _k(
        "dbInstanceClass",
        "string",
        "db.t4g.micro",
        "RDS instance class",
        pattern=re.compile(r"^db\."),
        pattern_prose="a db.* class",
    ),
    _k("dbAllocatedStorageGb", "integer", 20, "Initial RDS storage (GiB)", minimum=20, maximum=65536),
    _k(
        "dbMaxAllocatedStorageGb",
        "integer",
        0,
        "Storage autoscaling ceiling (GiB); 0 disables",
        note="0, or at least dbAllocatedStorageGb",
    ),
    _k("dbMultiAz", "boolean", False, "RDS Multi-AZ standby"),
    _k("dbDeletionProtection", "boolean", False, "RDS deletion protection"),
    _k(
        "dbBackupRetentionDays",
        "integer",
        1,
        "RDS automated backup retention (days)",
        minimum=1,
        maximum=35,
    ),
    _k("dbPerformanceInsights", "boolean", False, "RDS Performance Insights"),
    _k(
        "dbMonitoringIntervalSeconds",
        "integer",
        0,
        "RDS Enhanced Monitoring interval (s); 0 disables",
        choices=RDS_MONITORING_INTERVALS,
        problem="{value} is not an Enhanced Monitoring interval",
    ),
    _k(
        "dbEngineVersion",
        "string",
        "17",
        "PostgreSQL major version",
        pattern=re.compile(r"^[0-9]+\Z"),
        pattern_prose="a PostgreSQL major version",
    ),
    _k(
        "cacheNodeType",
        "string",
        "cache.t4g.micro",
        "ElastiCache node type",
        pattern=re.compile(r"^cache\."),
        pattern_prose="a cache.* type",
    ),
    _k("cacheReplicas", "integer", 0, "Redis replicas beside the primary", minimum=0, maximum=5),
    *(
        _k(
            f"{svc}{part}",
            "integer",
            1,
            f"{svc} service {part.lower()} task count",
            minimum=1,
            maximum=MAX_TASKS,
        )
        for svc in SCALED_SERVICES
        for part in ("DesiredCount", "MinCount", "MaxCount")
    ),
    _k(
        "logRetentionDays",
        "integer",
        7,
        "CloudWatch Logs retention (days)",
        choices=LOG_RETENTION_DAYS,
        choices_prose="a CloudWatch retention value",
        problem="{value} is not a CloudWatch retention value",
    ),
    _k(
        "domain",
        "string",
        "",
        "Public API host name (empty: the load balancer's DNS name)",
        pattern=DOMAIN_PATTERN,
        pattern_prose="a DNS name",
        empty_ok=True,
        problem="{value!r} is not a DNS name",
    ),
    _k(
        "certificateArn",
        "string",
        "",
        "ACM certificate ARN for HTTPS (empty: HTTP only)",
        pattern=ACM_ARN_PATTERN,
        pattern_prose="an ACM certificate ARN",
        empty_ok=True,
    ),
    # --- DNS: a Route 53 hosted zone the program publishes every record in (components/dns.py) ---
    # A zone id as Route 53 returns it without the `/hostedzone/` prefix: "Z" and upper-case letters
    # and digits (ResourceId, Route 53 API Reference: at most 32 characters). DMARC's `p` tag takes
    # "none", "quarantine" or "reject" (RFC 7489 section 6.3).
    _k(
        "hostedZoneId",
        "string",
        "",
        "Route 53 hosted zone the program publishes every record in and validates the API's "
        "certificate with (empty: the records are stack outputs to publish by hand)",
        pattern=re.compile(r"^Z[A-Z0-9]{1,31}$"),
        pattern_prose="a Route 53 hosted zone id (Z...)",
        empty_ok=True,
        note="with hostedZoneName, without certificateArn, and domain, sesSenderDomain and "
        "frontendDomains inside the zone",
    ),
    _k(
        "hostedZoneName",
        "string",
        "",
        "DNS name of that hosted zone (e.g. motion.example)",
        pattern=DOMAIN_PATTERN,
        pattern_prose="a DNS name",
        empty_ok=True,
        note="set exactly when hostedZoneId is",
    ),
    _k(
        "dmarcPolicy",
        "string",
        "none",
        "DMARC policy (p=) of the sender domain's _dmarc record",
        choices=("none", "quarantine", "reject"),
    ),
    # --- end of DNS ---
    _k(
        "authIssuer",
        "string",
        REQUIRED,
        "Clerk issuer (iss claim)",
        pattern=HTTPS_URL_PATTERN,
        pattern_prose="an https:// URL",
    ),
    _k(
        "authJwksUrl",
        "string",
        REQUIRED,
        "Clerk JWKS URL",
        pattern=HTTPS_URL_PATTERN,
        pattern_prose="an https:// URL",
    ),
    _k(
        "authAudience",
        "string",
        REQUIRED,
        "Expected token audience (aud claim)",
        pattern=re.compile(r"^.+$", re.DOTALL),
        pattern_prose="a non-empty string",
        problem="is required (API Gateway's JWT authorizer needs an audience)",
    ),
    _k(
        "clerkPublishableKey",
        "string",
        REQUIRED,
        "Clerk publishable key for the frontend",
        pattern=re.compile(r"^pk_(test|live)_"),
        pattern_prose="pk_test_... or pk_live_...",
    ),
    _k(
        "sesSenderDomain",
        "string",
        REQUIRED,
        "Domain Motion sends e-mail from",
        pattern=DOMAIN_PATTERN,
        pattern_prose="a DNS domain name",
        problem="{value!r} is not a domain",
    ),
    _k("mailSenderName", "string", "Motion", "Display name on outgoing e-mail"),
    _k(
        "mailMaxReceiveCount",
        "integer",
        5,
        "Receives before a mail event goes to the dead-letter queue",
        minimum=1,
        maximum=100,
    ),
    _k(
        "mailBatchSize",
        "integer",
        10,
        "SQS records per mailer invocation",
        minimum=1,
        maximum=10_000,
        note=f"above {MAX_UNWINDOWED_BATCH} only with mailBatchingWindowSeconds of at least 1",
    ),
    _k(
        "mailBatchingWindowSeconds",
        "integer",
        1,
        "Seconds the mapping may wait to fill a batch",
        minimum=0,
        maximum=300,
    ),
    _k(
        "mailMaxConcurrency",
        "integer",
        2,
        "Mailer invocations at once (keeps SES within its send rate)",
        minimum=2,
        maximum=1000,
    ),
    _k("mailerTimeoutSeconds", "integer", 30, "Mailer Lambda timeout (s)", minimum=3, maximum=900),
    _k("mailApiThrottleRate", "integer", 50, "Mail API steady requests/s", minimum=1, maximum=10_000),
    _k("mailApiThrottleBurst", "integer", 100, "Mail API burst", minimum=1, maximum=5000),
    _k(
        "mailApiReservedConcurrency",
        "integer",
        0,
        "Executions reserved for the mail API Lambda, also its ceiling; 0 reserves none",
        minimum=0,
        maximum=MAX_RESERVED_CONCURRENCY,
    ),
    _k(
        "mailQuotaPerHour",
        "integer",
        100,
        "E-mails one user may send per clock hour",
        minimum=1,
        maximum=10_000,
    ),
    _k(
        "mailQuotaPerDay",
        "integer",
        300,
        "E-mails one user may send per UTC day",
        minimum=1,
        maximum=100_000,
        note="at least mailQuotaPerHour",
    ),
    # SES's reputation (AWS/SES Reputation.BounceRate and Reputation.ComplaintRate, fractions of the
    # account's representative volume), alarmed before SES acts: SES reviews an account at a 5 % bounce
    # rate and a 0.1 % complaint rate (SES Developer Guide, "Sending review process FAQs"), so each
    # threshold stays below that, in basis points (1 = 0.01 %).
    _k(
        "mailBounceRateAlarmBasisPoints",
        "integer",
        250,
        "SES bounce rate that raises an alarm, in basis points (250 = 2.5 %; SES reviews at 500)",
        minimum=1,
        maximum=500 - 1,
    ),
    _k(
        "mailComplaintRateAlarmBasisPoints",
        "integer",
        5,
        "SES complaint rate that raises an alarm, in basis points (5 = 0.05 %; SES reviews at 10)",
        minimum=1,
        maximum=10 - 1,
    ),
    _k(
        "filesMaxUploadBytes",
        "integer",
        104857600,
        "Largest upload accepted (bytes)",
        minimum=1,
        maximum=MAX_UPLOAD_BYTES,
    ),
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
        note="a non-empty list of type/subtype",
    ),
    _k(
        "filesPresignTtlSeconds",
        "integer",
        300,
        "Lifetime of pre-signed URLs (s)",
        minimum=30,
        maximum=900,
    ),
    # The files service's quotas (app_code/files/README.md, "Limits"); the bounds are the service's
    # own (files_service/settings.py, MAX_MAX_*), so a value the stack accepts the service accepts too.
    _k(
        "filesMaxShareDays",
        "integer",
        30,
        "Longest a file share may last (days)",
        minimum=1,
        maximum=365,
    ),
    _k(
        "filesMaxPendingUploadsPerUser",
        "integer",
        20,
        "Uploads one user may have pending (requested, not completed) at once",
        minimum=1,
        maximum=10_000,
    ),
    _k(
        "filesMaxProjectBytes",
        "integer",
        10 * 1024**3,
        "Bytes one project may hold, pending uploads included (at least filesMaxUploadBytes)",
        minimum=1,
        maximum=1024**5,
    ),
    _k(
        "vercelProjectName",
        "string",
        REQUIRED,
        "Vercel project name (one project per stack)",
        pattern=VERCEL_PROJECT_NAME_PATTERN,
        pattern_prose="lowercase letters, digits and '-', 1 to 52 characters",
    ),
    _k("vercelTeamId", "string", "", "Vercel team id (empty: personal account)"),
    _k(
        "frontendGitRepository",
        "string",
        REQUIRED,
        "Git repository of the frontend app",
        pattern=REPO_PATTERN,
        pattern_prose="owner/name",
    ),
    _k("frontendRootDirectory", "string", "frontend", "Directory of the Vite app in that repository"),
    _k("frontendProductionBranch", "string", "main", "Branch Vercel deploys to production"),
    _k(
        "frontendTargets",
        "array",
        ["production"],
        "Vercel environments the project deploys; every VITE_* variable is set for each",
        note="production, optionally development (needs a localhost origin in extraCorsOrigins)",
    ),
    _k(
        "frontendDomains",
        "array",
        [],
        "Domains attached to the stack's Vercel project (CORS origins derive from them)",
        note="a list of distinct DNS names, not the API host",
    ),
    _k(
        "extraCorsOrigins",
        "array",
        [],
        "Further browser origins, e.g. http://localhost:5173 in dev",
        note="a list of http(s)://host[:port] origins",
    ),
    _k(
        "alarmEmail",
        "string",
        REQUIRED,
        "Where alarms are e-mailed",
        pattern=EMAIL_PATTERN,
        pattern_prose="an e-mail address",
        problem="{value!r} is not an e-mail address",
    ),
    _k("containerInsights", "boolean", False, "ECS Container Insights"),
    _k("albDeletionProtection", "boolean", False, "Load balancer deletion protection"),
    _k("albAccessLogs", "boolean", False, "Load balancer access logs to S3"),
    _k("waf", "boolean", False, "AWS WAF web ACL on the load balancer (managed rules, rate limit, logs)"),
    _k(
        "wafRateLimit",
        "integer",
        2000,
        "Requests per client IP per 5 minutes before WAF blocks it",
        minimum=WAF_RATE_LIMIT_RANGE[0],
        maximum=WAF_RATE_LIMIT_RANGE[1],
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
