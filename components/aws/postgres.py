"""RDS PostgreSQL in the given (isolated) subnets: master password managed (and rotated) by RDS in Secrets
Manager, IAM database authentication for the application role, TLS enforced, reachable only from the
security groups admitted explicitly.

Not a component of its own: the resources are created under the `parent` the caller gives (its
component keeps its type token, so the resources' URNs are the caller's to decide)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.aws.alarms import Alarm, create_alarms
from components.aws.arns import Place
from components.aws.dashboard import Graph, Metric, Panel
from components.aws.iam import assume_role_policy

PORT = 5432
# The AWS managed policy for Enhanced Monitoring's role (AWS Managed Policy Reference,
# AmazonRDSEnhancedMonitoringRole): log groups and streams named RDS* only.
ENHANCED_MONITORING_POLICY = "service-role/AmazonRDSEnhancedMonitoringRole"


@dataclass(frozen=True)
class PostgresArgs:
    """One instance; the defaults are the protected ones, which a caller relaxes on purpose."""

    # Names the instance (`<name_prefix>-...`), its security group and alarms.
    name_prefix: str
    # The database created in it, and the master user (the password is RDS's, in Secrets Manager).
    db_name: str
    master_username: str
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    alarm_topic_arn: pulumi.Input[str]
    # A PostgreSQL major version ("17"); the parameter group family follows it.
    engine_version: str
    instance_class: str = "db.t4g.micro"
    allocated_storage_gb: int = 20
    # Storage autoscaling ceiling; 0 disables it.
    max_allocated_storage_gb: int = 0
    multi_az: bool = False
    deletion_protection: bool = True
    backup_retention_days: int = 7
    performance_insights: bool = False
    # Enhanced Monitoring interval (s); 0 disables it.
    monitoring_interval_seconds: int = 0
    # A customer managed key for storage, Performance Insights and the master password secret (the
    # key's policy must allow use through RDS and Secrets Manager), else the AWS managed keys. RDS
    # fixes the storage key at creation: changing it replaces the instance (README, "Customer
    # managed keys").
    kms_key_arn: pulumi.Input[str] | None = None


class PostgresInstance:
    """The instance, its subnet and parameter groups, security group, monitoring role and alarms."""

    def __init__(self, parent: pulumi.Resource, name: str, args: PostgresArgs) -> None:
        self._parent = parent
        child = pulumi.ResourceOptions(parent=parent)
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            description=f"{args.name_prefix} PostgreSQL: admitted services only",
            tags={"Name": f"{args.name_prefix}-db"},
            opts=child,
        )
        subnets = aws.rds.SubnetGroup(
            f"{name}-subnets",
            subnet_ids=list(args.subnet_ids),
            description=f"{args.name_prefix} isolated subnets",
            opts=child,
        )
        parameters = aws.rds.ParameterGroup(
            f"{name}-params",
            family=f"postgres{args.engine_version}",
            description=f"{args.name_prefix}: TLS only, slow statements logged",
            parameters=[
                aws.rds.ParameterGroupParameterArgs(name="rds.force_ssl", value="1"),
                aws.rds.ParameterGroupParameterArgs(name="log_min_duration_statement", value="500"),
                aws.rds.ParameterGroupParameterArgs(name="log_connections", value="1"),
            ],
            opts=child,
        )
        protected = args.deletion_protection
        self._place = Place.of(parent)
        self._account = self._place.account
        monitoring_role = self._monitoring_role(name, args) if args.monitoring_interval_seconds else None
        self.instance = aws.rds.Instance(
            f"{name}-instance",
            identifier_prefix=f"{args.name_prefix}-",
            engine="postgres",
            engine_version=args.engine_version,
            instance_class=args.instance_class,
            allocated_storage=args.allocated_storage_gb,
            max_allocated_storage=args.max_allocated_storage_gb or None,
            storage_type="gp3",
            storage_encrypted=True,
            kms_key_id=args.kms_key_arn,
            db_name=args.db_name,
            username=args.master_username,
            manage_master_user_password=True,
            master_user_secret_kms_key_id=args.kms_key_arn,
            multi_az=args.multi_az,
            db_subnet_group_name=subnets.name,
            vpc_security_group_ids=[self.security_group.id],
            parameter_group_name=parameters.name,
            publicly_accessible=False,
            deletion_protection=protected,
            backup_retention_period=args.backup_retention_days,
            copy_tags_to_snapshot=True,
            skip_final_snapshot=not protected,
            final_snapshot_identifier=f"{args.name_prefix}-final" if protected else None,
            performance_insights_enabled=args.performance_insights,
            performance_insights_retention_period=7 if args.performance_insights else None,
            performance_insights_kms_key_id=args.kms_key_arn if args.performance_insights else None,
            enabled_cloudwatch_logs_exports=["postgresql", "upgrade"],
            auto_minor_version_upgrade=True,
            allow_major_version_upgrade=False,
            ca_cert_identifier="rds-ca-rsa2048-g1",
            # The services log in with a short-lived IAM token per connection (nothing to rotate, so
            # nothing goes stale in a running task); only the migration step uses the master secret.
            iam_database_authentication_enabled=True,
            # Modifications otherwise wait for the maintenance window (RDS User Guide, "Using the
            # schedule modifications setting"; IAM authentication is one of them:
            # PendingModifiedValues.IAMDatabaseAuthenticationEnabled), while the services' new task
            # definitions, which log in only with IAM tokens, roll out in the same `pulumi up`.
            # What a reviewed preview shows is what the deploy applies.
            apply_immediately=True,
            # OS metrics every N seconds to CloudWatch Logs (RDSOSMetrics), through the role below.
            monitoring_interval=args.monitoring_interval_seconds,
            monitoring_role_arn=monitoring_role.arn if monitoring_role else None,
            opts=pulumi.ResourceOptions(
                parent=parent, depends_on=[self._monitoring_attachment] if monitoring_role else None
            ),
        )
        self.address = self.instance.address
        self.db_name = args.db_name
        self.master_secret_arn: pulumi.Output[str] = self.instance.master_user_secrets.apply(
            lambda secrets: str(secrets[0].secret_arn)
        )
        self._alarms(name, args)

    def _monitoring_role(self, name: str, args: PostgresArgs) -> aws.iam.Role:
        """The role Enhanced Monitoring assumes to write OS metrics (RDS User Guide, "Setting up and
        enabling Enhanced Monitoring"): trusted by monitoring.rds.amazonaws.com, pinned to this account
        with aws:SourceAccount as that page's "Protecting against the confused deputy problem" shows,
        with the managed AmazonRDSEnhancedMonitoringRole policy attached."""
        role = aws.iam.Role(
            f"{name}-monitoring-role",
            assume_role_policy=assume_role_policy(
                "monitoring.rds.amazonaws.com", source_account=self._account
            ),
            opts=pulumi.ResourceOptions(parent=self._parent),
        )
        # The instance waits for the attachment: RDS checks the role can write when monitoring starts.
        self._monitoring_attachment = aws.iam.RolePolicyAttachment(
            f"{name}-monitoring-policy",
            role=role.id,
            policy_arn=self._place.managed_policy(ENHANCED_MONITORING_POLICY),
            opts=pulumi.ResourceOptions(parent=self._parent),
        )
        return role

    def connect_arn(self, db_user: str) -> pulumi.Output[str]:
        """What `rds-db:connect` names to let a principal log in as `db_user` with IAM authentication.

        RDS User Guide, "Creating and using an IAM policy for IAM database access": one database account
        in one DB instance is `arn:aws:rds-db:region:account-id:dbuser:DbiResourceId/db-user-name`, where
        DbiResourceId is the instance's resource id (never its identifier), which the provider reports
        as `resource_id`.
        """
        return self._place.arn(
            "rds-db", pulumi.Output.concat("dbuser:", self.instance.resource_id, "/", db_user)
        )

    def admit(self, name: str, client: aws.ec2.SecurityGroup) -> list[pulumi.Resource]:
        """Let one client's tasks reach PostgreSQL, and nothing else; returns the two rules, for
        whatever must wait until the path is open."""
        ingress = aws.vpc.SecurityGroupIngressRule(
            f"{name}-to-db",
            security_group_id=self.security_group.id,
            ip_protocol="tcp",
            from_port=PORT,
            to_port=PORT,
            referenced_security_group_id=client.id,
            description=f"from {name}",
            opts=pulumi.ResourceOptions(parent=self._parent),
        )
        egress = aws.vpc.SecurityGroupEgressRule(
            f"{name}-db-egress",
            security_group_id=client.id,
            ip_protocol="tcp",
            from_port=PORT,
            to_port=PORT,
            referenced_security_group_id=self.security_group.id,
            description="to PostgreSQL",
            opts=pulumi.ResourceOptions(parent=self._parent),
        )
        return [ingress, egress]

    def _alarms(self, name: str, args: PostgresArgs) -> None:
        """Its alarms, and its panel of the dashboard built from them."""
        dims = {"DBInstanceIdentifier": self.instance.identifier}
        free_floor = args.allocated_storage_gb * 1024**3 * 0.1
        cpu = Alarm("cpu", "AWS/RDS", "CPUUtilization", "Average", 80.0, dims, evaluation_periods=2)
        # A database that stops reporting free storage is not a healthy one.
        free_storage = Alarm(
            "free-storage",
            "AWS/RDS",
            "FreeStorageSpace",
            "Minimum",
            free_floor,
            dims,
            comparison="LessThanThreshold",
            evaluation_periods=2,
            missing_data="breaching",
        )
        alarms = create_alarms(
            self._parent, name, f"{args.name_prefix}-db", [cpu, free_storage], args.alarm_topic_arn
        )

        def rds(metric: str, statistic: str, label: str) -> Metric:
            return Metric("AWS/RDS", metric, statistic, dims, label)

        self.panel = Panel(
            "Database (RDS PostgreSQL)",
            [
                Graph.watching("CPU (%)", [("CPU", cpu)]),
                Graph.watching("Free storage (bytes)", [("free", free_storage)]),
                Graph("Connections", [rds("DatabaseConnections", "Maximum", "connections")]),
                Graph("Freeable memory (bytes)", [rds("FreeableMemory", "Minimum", "freeable")]),
                Graph(
                    "I/O latency (s)",
                    [rds("ReadLatency", "Average", "read"), rds("WriteLatency", "Average", "write")],
                ),
            ],
            alarms,
        )
