"""The files database: RDS PostgreSQL (components/aws/postgres.py) as the `motion:files:Database`
component, with the files service's database name and master user. The component's type token stays
where it was declared, so the instance's URN (and the data in it) never move."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.aws.postgres import PostgresArgs, PostgresInstance
from components.config.model import DatabaseConfig

# Not a default admin name ("postgres", "admin", ...), which scanners try first.
MASTER_USERNAME = "motion_owner"
DB_NAME = "motion_files"


@dataclass(frozen=True)
class DatabaseArgs:
    name_prefix: str
    config: DatabaseConfig
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    alarm_topic_arn: pulumi.Input[str]
    # A customer managed key for storage, Performance Insights and the master password secret, else
    # the AWS managed keys (components/aws/postgres.py, PostgresArgs.kms_key_arn).
    kms_key_arn: pulumi.Input[str] | None = None


class Database(pulumi.ComponentResource):
    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("motion:files:Database", name, None, opts)
        cfg = args.config
        self.postgres = PostgresInstance(
            self,
            name,
            PostgresArgs(
                name_prefix=args.name_prefix,
                db_name=DB_NAME,
                master_username=MASTER_USERNAME,
                vpc_id=args.vpc_id,
                subnet_ids=args.subnet_ids,
                alarm_topic_arn=args.alarm_topic_arn,
                engine_version=cfg.engine_version,
                instance_class=cfg.instance_class,
                allocated_storage_gb=cfg.allocated_storage_gb,
                max_allocated_storage_gb=cfg.max_allocated_storage_gb,
                multi_az=cfg.multi_az,
                deletion_protection=cfg.deletion_protection,
                backup_retention_days=cfg.backup_retention_days,
                performance_insights=cfg.performance_insights,
                monitoring_interval_seconds=cfg.monitoring_interval_seconds,
                kms_key_arn=args.kms_key_arn,
            ),
        )
        self.security_group = self.postgres.security_group
        self.instance = self.postgres.instance
        self.address = self.postgres.address
        self.db_name = self.postgres.db_name
        self.master_secret_arn = self.postgres.master_secret_arn
        self.register_outputs({"address": self.address, "master_secret_arn": self.master_secret_arn})

    def connect_arn(self, db_user: str) -> pulumi.Output[str]:
        """What `rds-db:connect` names to let a principal log in as `db_user` (PostgresInstance.connect_arn)."""
        return self.postgres.connect_arn(db_user)

    def admit(self, name: str, client: aws.ec2.SecurityGroup) -> list[pulumi.Resource]:
        """Let one client's tasks reach PostgreSQL, and nothing else (PostgresInstance.admit)."""
        return self.postgres.admit(name, client)
