"""Data stores: SQS, RDS, ElastiCache, DynamoDB."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .model import (
    Context,
    Resource,
    ResourceRule,
    Rule,
    StackRule,
    Violation,
    as_bool,
    as_list,
    get_path,
    is_set,
    is_true,
    is_unknown,
    number,
    of_type,
    parse_json,
    referrers,
    refers_to,
)

QUEUE = "aws:sqs/queue:Queue"
REDRIVE_POLICY = "aws:sqs/redrivePolicy:RedrivePolicy"
REDRIVE_ALLOW_POLICY = "aws:sqs/redriveAllowPolicy:RedriveAllowPolicy"
DB_INSTANCE = "aws:rds/instance:Instance"
REPLICATION_GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"
TABLE = "aws:dynamodb/table:Table"

# Engine defaults and the names every scanner tries first (RDS.25 flags the engine defaults).
DEFAULT_ADMIN_USERNAMES = frozenset(
    {
        "admin",
        "administrator",
        "postgres",
        "root",
        "master",
        "masteruser",
        "sa",
        "dbadmin",
        "rdsadmin",
        "user",
    }
)
# The log types a PostgreSQL instance must export so errors and slow queries survive the instance.
POSTGRES_LOG_EXPORTS = frozenset({"postgresql"})
# The engines the AWS Config rule behind FSBP RDS.10 (rds-instance-iam-authentication-enabled) checks:
# the ones that support IAM database authentication.
IAM_AUTH_ENGINES = frozenset({"mysql", "postgres", "aurora", "aurora-mysql", "aurora-postgresql"})
MIN_BACKUP_RETENTION_DAYS = 7
# CreateDBInstance's MonitoringInterval (RDS API Reference), 0 (off) left out.
RDS_MONITORING_INTERVALS = frozenset({1.0, 5.0, 10.0, 15.0, 30.0, 60.0})


# --- SQS -------------------------------------------------------------------------------------------


def _sqs_encrypted(queue: Resource, ctx: Context) -> list[str]:
    if is_true(queue.get("sqsManagedSseEnabled")) or is_set(queue.get("kmsMasterKeyId")):
        return []
    return ["queue is not encrypted at rest: set sqsManagedSseEnabled true or a kmsMasterKeyId"]


def _redrive_targets(source: Resource, prop: str, queue: Resource) -> bool:
    """Does the redrive policy in `source.props[prop]` send dead letters to `queue`?"""
    if refers_to(source, prop, queue):
        return True
    target = get_path(parse_json(source.get(prop)), "deadLetterTargetArn")
    return isinstance(target, str) and target in queue.identities


def _redrive_problem(document: Any) -> str | None:
    policy = parse_json(document)
    if is_unknown(policy):
        return None
    if not isinstance(policy, dict) or "deadLetterTargetArn" not in policy:
        return "redrive policy names no deadLetterTargetArn"
    try:
        # The console writes maxReceiveCount as a string, programs as a number; both are valid.
        raw: Any = policy.get("maxReceiveCount")
        count = float(raw)
    except (TypeError, ValueError):
        return "redrive policy has no numeric maxReceiveCount"
    return None if count >= 1 else "redrive policy's maxReceiveCount must be at least 1"


def _allows_redrive(document: Any) -> bool:
    """A redrive allow policy other than "denyAll" says: this queue receives dead letters."""
    policy = parse_json(document)
    if is_unknown(policy):
        return True
    return isinstance(policy, dict) and policy.get("redrivePermission") in ("allowAll", "byQueue")


def _is_dead_letter_queue(queue: Resource, resources: Sequence[Resource]) -> bool:
    """Another queue redrives to it, or it declares itself a redrive target (inline or as a resource)."""
    if _allows_redrive(queue.get("redriveAllowPolicy")):
        return True
    if any(
        _allows_redrive(r.get("redriveAllowPolicy"))
        for r in referrers(queue, resources, (REDRIVE_ALLOW_POLICY,), "queueUrl")
    ):
        return True
    sources = [q for q in of_type(resources, QUEUE) if q is not queue] + of_type(resources, REDRIVE_POLICY)
    return any(_redrive_targets(source, "redrivePolicy", queue) for source in sources)


def _dead_letter_queues(resources: Sequence[Resource], ctx: Context) -> list[Violation]:
    redrives = of_type(resources, REDRIVE_POLICY)
    found: list[Violation] = []
    for queue in of_type(resources, QUEUE):
        if _is_dead_letter_queue(queue, resources):
            continue
        documents = [queue.get("redrivePolicy")] if is_set(queue.get("redrivePolicy")) else []
        documents += [r.get("redrivePolicy") for r in redrives if refers_to(r, "queueUrl", queue)]
        if not documents:
            found.append(
                Violation(queue.urn, f"queue '{queue.name}' has no dead-letter queue (redrivePolicy)")
            )
            continue
        problems = [p for p in map(_redrive_problem, documents) if p]
        if len(problems) == len(documents):
            found.append(Violation(queue.urn, f"queue '{queue.name}': {problems[0]}"))
    return found


# --- RDS -------------------------------------------------------------------------------------------


def _is_replica(db: Resource) -> bool:
    return is_set(db.get("replicateSourceDb")) or is_set(db.get("snapshotIdentifier"))


def _rds_private(db: Resource, ctx: Context) -> list[str]:
    # The provider's default is private, so only an explicit true makes the instance public.
    if as_bool(db.get("publiclyAccessible")) is True:
        return ["database is publicly accessible: set publiclyAccessible false"]
    return []


def _rds_encrypted(db: Resource, ctx: Context) -> list[str]:
    return (
        [] if is_true(db.get("storageEncrypted")) else ["storage is not encrypted: set storageEncrypted true"]
    )


def _rds_multi_az(db: Resource, ctx: Context) -> list[str]:
    return [] if is_true(db.get("multiAz")) else ["production database is single-AZ: set multiAz true"]


def _rds_deletion_protection(db: Resource, ctx: Context) -> list[str]:
    if is_true(db.get("deletionProtection")):
        return []
    return ["production database has no deletion protection: set deletionProtection true"]


def _rds_backups(db: Resource, ctx: Context) -> list[str]:
    value = db.get("backupRetentionPeriod")
    days = number(value)
    if is_unknown(value) or (days is not None and days >= MIN_BACKUP_RETENTION_DAYS):
        return []
    shown = "unset" if days is None else f"{days:g} days"
    return [f"backupRetentionPeriod is {shown}; production keeps at least {MIN_BACKUP_RETENTION_DAYS} days"]


def _rds_minor_upgrades(db: Resource, ctx: Context) -> list[str]:
    # Enabled by default; only an explicit false switches security patches off.
    if as_bool(db.get("autoMinorVersionUpgrade")) is False:
        return ["automatic minor version upgrades are off: set autoMinorVersionUpgrade true"]
    return []


def _rds_log_exports(db: Resource, ctx: Context) -> list[str]:
    exports = db.get("enabledCloudwatchLogsExports")
    if is_unknown(exports):
        return []
    names = {e for e in as_list(exports) if isinstance(e, str)}
    if not names:
        return ["no logs are exported to CloudWatch: set enabledCloudwatchLogsExports"]
    engine = db.get("engine")
    if isinstance(engine, str) and engine.startswith("postgres") and not names >= POSTGRES_LOG_EXPORTS:
        return ['a PostgreSQL instance must export "postgresql" logs']
    return []


def _rds_admin_username(db: Resource, ctx: Context) -> list[str]:
    if _is_replica(db):
        return []
    username = db.get("username")
    if is_unknown(username):
        return []
    if not isinstance(username, str) or not username:
        return ["no master username set: choose a custom one"]
    if username.lower() in DEFAULT_ADMIN_USERNAMES:
        return [f"master username '{username}' is a well-known default: choose a custom one"]
    return []


def _rds_iam_authentication(db: Resource, ctx: Context) -> list[str]:
    engine = db.get("engine")
    if isinstance(engine, str) and engine not in IAM_AUTH_ENGINES:
        return []
    if is_true(db.get("iamDatabaseAuthenticationEnabled")):
        return []
    return [
        "IAM database authentication is off, so every client needs a password (and a copy that goes "
        "stale when it rotates): set iamDatabaseAuthenticationEnabled true"
    ]


def _rds_enhanced_monitoring(db: Resource, ctx: Context) -> list[str]:
    # The AWS Config rule behind FSBP RDS.6 (rds-enhanced-monitoring-enabled) is NON_COMPLIANT when
    # monitoringInterval is 0; CreateDBInstance needs a MonitoringRoleArn for any other interval.
    interval, role = db.get("monitoringInterval"), db.get("monitoringRoleArn")
    if is_unknown(interval):
        return []
    seconds = number(interval)
    if seconds not in RDS_MONITORING_INTERVALS:
        shown = "unset" if seconds is None else f"{seconds:g}"
        return [f"monitoringInterval is {shown}: set it to one of 1, 5, 10, 15, 30, 60 (Enhanced Monitoring)"]
    if not is_set(role):
        return [
            "Enhanced Monitoring needs a monitoringRoleArn (a role trusted by monitoring.rds.amazonaws.com)"
        ]
    return []


def _rds_managed_password(db: Resource, ctx: Context) -> list[str]:
    if _is_replica(db):
        return []
    problems = []
    if not is_true(db.get("manageMasterUserPassword")):
        problems.append(
            "the master password is not managed by RDS in Secrets Manager: set manageMasterUserPassword true"
        )
    if is_set(db.get("password")):
        problems.append("a master password is set in the program, so it is stored in the Pulumi state")
    return problems


# --- ElastiCache -----------------------------------------------------------------------------------


def _cache_at_rest(group: Resource, ctx: Context) -> list[str]:
    if is_true(group.get("atRestEncryptionEnabled")):
        return []
    return ["cache is not encrypted at rest: set atRestEncryptionEnabled true"]


def _cache_in_transit(group: Resource, ctx: Context) -> list[str]:
    if not is_true(group.get("transitEncryptionEnabled")):
        return ["cache accepts plaintext connections: set transitEncryptionEnabled true"]
    if group.get("transitEncryptionMode") == "preferred":
        return ['transitEncryptionMode "preferred" still accepts plaintext: use "required"']
    return []


def _cache_auth(group: Resource, ctx: Context) -> list[str]:
    if (
        is_set(group.get("authToken"))
        or is_set(group.get("authTokenWo"))
        or is_set(group.get("userGroupIds"))
    ):
        return []
    return ["clients connect without authenticating: set authToken (from a secret) or userGroupIds"]


def _cache_failover(group: Resource, ctx: Context) -> list[str]:
    if is_true(group.get("automaticFailoverEnabled")):
        return []
    return ["production cache has no automatic failover: set automaticFailoverEnabled true"]


def _cache_multi_az(group: Resource, ctx: Context) -> list[str]:
    problems = []
    if not is_true(group.get("multiAzEnabled")):
        problems.append("production cache is not Multi-AZ: set multiAzEnabled true")
    clusters = number(group.get("numCacheClusters"))
    if clusters is not None and clusters < 2:
        problems.append(f"numCacheClusters is {clusters:g}: a replica in another AZ needs at least 2")
    return problems


# --- DynamoDB --------------------------------------------------------------------------------------


def _table_kms(table: Resource, ctx: Context) -> list[str]:
    if is_true(table.get("serverSideEncryption", "enabled")):
        return []
    return [
        "table uses the AWS-owned key: set serverSideEncryption.enabled true (KMS, auditable in CloudTrail)"
    ]


def _table_pitr(table: Resource, ctx: Context) -> list[str]:
    if is_true(table.get("pointInTimeRecovery", "enabled")):
        return []
    return ["production table has no point-in-time recovery: set pointInTimeRecovery.enabled true"]


def _table_deletion_protection(table: Resource, ctx: Context) -> list[str]:
    if is_true(table.get("deletionProtectionEnabled")):
        return []
    return ["production table has no deletion protection: set deletionProtectionEnabled true"]


RULES: list[Rule] = [
    ResourceRule(
        name="sqs-encryption",
        control="FSBP SQS.1",
        description="SQS queues are encrypted at rest.",
        severity="medium",
        remediation="Set sqs_managed_sse_enabled=True on the queue (or kms_master_key_id for a customer key).",
        resource_types=(QUEUE,),
        check=_sqs_encrypted,
    ),
    StackRule(
        name="sqs-dead-letter-queue",
        control="Motion REL-1",
        description="Every SQS queue that is not itself a dead-letter queue redrives failing messages to one.",
        severity="medium",
        remediation="Create a dead-letter queue and set the source queue's redrive_policy to "
        'json {"deadLetterTargetArn": dlq.arn, "maxReceiveCount": N}; give the DLQ a redrive_allow_policy.',
        resource_types=(QUEUE,),
        check=_dead_letter_queues,
    ),
    ResourceRule(
        name="rds-not-public",
        control="FSBP RDS.2",
        description="RDS instances are not publicly accessible.",
        severity="critical",
        remediation="Set publicly_accessible=False and place the instance in the isolated subnets.",
        resource_types=(DB_INSTANCE,),
        check=_rds_private,
    ),
    ResourceRule(
        name="rds-encrypted",
        control="FSBP RDS.3",
        description="RDS instances encrypt their storage.",
        severity="medium",
        remediation="Set storage_encrypted=True (encryption cannot be added later without a snapshot restore).",
        resource_types=(DB_INSTANCE,),
        check=_rds_encrypted,
    ),
    ResourceRule(
        name="rds-multi-az",
        control="FSBP RDS.5",
        description="In production, RDS instances run a Multi-AZ standby.",
        severity="medium",
        remediation="Set multi_az=True (config motion:dbMultiAz).",
        resource_types=(DB_INSTANCE,),
        check=_rds_multi_az,
        production_only=True,
    ),
    ResourceRule(
        name="rds-deletion-protection",
        control="FSBP RDS.8",
        description="In production, RDS instances have deletion protection.",
        severity="low",
        remediation="Set deletion_protection=True (config motion:dbDeletionProtection).",
        resource_types=(DB_INSTANCE,),
        check=_rds_deletion_protection,
        production_only=True,
    ),
    ResourceRule(
        name="rds-backups",
        control="FSBP RDS.11",
        description=f"In production, RDS keeps automated backups for at least {MIN_BACKUP_RETENTION_DAYS} days.",
        severity="medium",
        remediation=f"Set backup_retention_period to {MIN_BACKUP_RETENTION_DAYS} or more "
        "(config motion:dbBackupRetentionDays).",
        resource_types=(DB_INSTANCE,),
        check=_rds_backups,
        production_only=True,
    ),
    ResourceRule(
        name="rds-minor-version-upgrades",
        control="FSBP RDS.13",
        description="RDS instances receive automatic minor version upgrades (security patches).",
        severity="high",
        remediation="Leave auto_minor_version_upgrade unset or set it to True.",
        resource_types=(DB_INSTANCE,),
        check=_rds_minor_upgrades,
    ),
    ResourceRule(
        name="rds-log-exports",
        control="FSBP RDS.9",
        description="RDS instances publish their logs to CloudWatch Logs.",
        severity="medium",
        remediation='Set enabled_cloudwatch_logs_exports=["postgresql", "upgrade"] for PostgreSQL.',
        resource_types=(DB_INSTANCE,),
        check=_rds_log_exports,
    ),
    ResourceRule(
        name="rds-custom-admin-username",
        control="FSBP RDS.25",
        description="RDS instances use a custom master username, not an engine default.",
        severity="medium",
        remediation="Set username to a project-specific name (not admin, postgres, root, master, ...).",
        resource_types=(DB_INSTANCE,),
        check=_rds_admin_username,
    ),
    ResourceRule(
        name="rds-managed-master-password",
        control="Motion SEC-1",
        description="The RDS master password is generated and rotated by RDS in Secrets Manager, never in the program.",
        severity="high",
        remediation="Set manage_master_user_password=True and remove password; services read the secret by ARN.",
        resource_types=(DB_INSTANCE,),
        check=_rds_managed_password,
    ),
    ResourceRule(
        name="rds-iam-authentication",
        control="FSBP RDS.10",
        description="RDS instances accept IAM database authentication, so applications log in without a password.",
        severity="medium",
        remediation="Set iam_database_authentication_enabled=True and grant rds-db:connect on the app role's "
        "dbuser ARN; only the migration step keeps the master secret.",
        resource_types=(DB_INSTANCE,),
        check=_rds_iam_authentication,
    ),
    ResourceRule(
        name="rds-enhanced-monitoring",
        control="FSBP RDS.6",
        description="In production, RDS instances have Enhanced Monitoring (OS metrics) on.",
        severity="low",
        remediation="Set monitoring_interval (config motion:dbMonitoringIntervalSeconds) and monitoring_role_arn "
        "to a role trusted by monitoring.rds.amazonaws.com with AmazonRDSEnhancedMonitoringRole.",
        resource_types=(DB_INSTANCE,),
        check=_rds_enhanced_monitoring,
        production_only=True,
    ),
    ResourceRule(
        name="elasticache-encryption-at-rest",
        control="FSBP ElastiCache.4",
        description="ElastiCache replication groups are encrypted at rest.",
        severity="medium",
        remediation="Set at_rest_encryption_enabled=True.",
        resource_types=(REPLICATION_GROUP,),
        check=_cache_at_rest,
    ),
    ResourceRule(
        name="elasticache-encryption-in-transit",
        control="FSBP ElastiCache.5",
        description="ElastiCache replication groups require TLS.",
        severity="medium",
        remediation='Set transit_encryption_enabled=True (and transit_encryption_mode "required" if you set a mode).',
        resource_types=(REPLICATION_GROUP,),
        check=_cache_in_transit,
    ),
    ResourceRule(
        name="elasticache-auth",
        control="FSBP ElastiCache.6",
        description="ElastiCache replication groups require clients to authenticate (Redis AUTH or RBAC).",
        severity="medium",
        remediation="Set auth_token from a generated secret (random.RandomPassword / Secrets Manager), "
        "or user_group_ids for RBAC.",
        resource_types=(REPLICATION_GROUP,),
        check=_cache_auth,
    ),
    ResourceRule(
        name="elasticache-automatic-failover",
        control="FSBP ElastiCache.3",
        description="In production, ElastiCache replication groups fail over automatically.",
        severity="medium",
        remediation="Set automatic_failover_enabled=True with at least one replica (config motion:cacheReplicas).",
        resource_types=(REPLICATION_GROUP,),
        check=_cache_failover,
        production_only=True,
    ),
    ResourceRule(
        name="elasticache-multi-az",
        control="Motion REL-2",
        description="In production, ElastiCache replication groups keep a replica in another AZ.",
        severity="medium",
        remediation="Set multi_az_enabled=True and num_cache_clusters >= 2 (one primary plus replicas).",
        resource_types=(REPLICATION_GROUP,),
        check=_cache_multi_az,
        production_only=True,
    ),
    ResourceRule(
        name="dynamodb-kms-encryption",
        control="Motion ENC-1",
        description="DynamoDB tables are encrypted with a KMS key, so every use of the key is auditable.",
        severity="low",
        remediation='Set server_side_encryption={"enabled": True} (AWS managed key, or kms_key_arn for your own).',
        resource_types=(TABLE,),
        check=_table_kms,
    ),
    ResourceRule(
        name="dynamodb-point-in-time-recovery",
        control="FSBP DynamoDB.2",
        description="In production, DynamoDB tables have point-in-time recovery.",
        severity="medium",
        remediation='Set point_in_time_recovery={"enabled": True} (config motion:dataProtection).',
        resource_types=(TABLE,),
        check=_table_pitr,
        production_only=True,
    ),
    ResourceRule(
        name="dynamodb-deletion-protection",
        control="FSBP DynamoDB.6",
        description="In production, DynamoDB tables have deletion protection.",
        severity="medium",
        remediation="Set deletion_protection_enabled=True (config motion:dataProtection).",
        resource_types=(TABLE,),
        check=_table_deletion_protection,
        production_only=True,
    ),
]
