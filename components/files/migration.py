"""The files schema migration, run during `pulumi up` before the services roll out: a one-off ECS task
(the files image, `python -m files_service.migrate`, logged in as the master user) started and watched
by the task runner Lambda, which an `aws.lambda_.Invocation` calls once per migrate task definition.

Why the master secret is fine here and not in the services: ECS injects a secret once, when a task
starts. The services run for weeks while RDS rotates the master password every 7 days, so their copy
goes stale; the migration task starts fresh on every deploy and lives for seconds, so it always gets
the current value.

When it runs again (hashicorp/terraform-provider-aws internal/service/lambda/invocation.go): with the
default lifecycle_scope CREATE_ONLY the function is invoked on create only, and any change of `input`
(or `triggers`) forces a new resource, i.e. a new invocation; delete invokes nothing. The input names
the migrate task definition's ARN; its container definitions force a new task definition, i.e. a new
revision and ARN (internal/service/ecs/task_definition.go, `container_definitions` ForceNew), so a new
image or setting migrates again and an unchanged release does not. A failed invocation (the runner raised) fails
the update before anything that depends on it, so the services keep their old code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.app_code import TASK_RUNNER_ROOT, task_runner_files
from components.aws.arns import Place
from components.aws.container_definition import job_container_definition
from components.aws.fargate_service import execution_statements
from components.aws.fargate_types import Attachment, SecretRef
from components.aws.iam import assume_role_policy, policy_document, statement
from components.aws.kms import DataKey
from components.aws.lambda_function import code_archive, lambda_function
from components.facts import FILES
from components.files.database import Database

CONTAINER = "migrate"
# The Lambda maximum (Lambda quotas: function timeout 900 s); the runner stops waiting 30 s before it.
RUNNER_TIMEOUT_SECONDS = 900
RUNNER_HANDLER = "task_runner.handler.handler"


@dataclass(frozen=True)
class FilesMigrationArgs:
    name_prefix: str
    image: pulumi.Input[str]
    # The user the image runs as (ContainerImage.user).
    image_user: str
    repository_arn: pulumi.Input[str]
    database: Database
    # DATABASE_HOST/PORT/NAME/SSLMODE/SSLROOTCERT, as the services get them.
    database_tls: Mapping[str, pulumi.Input[str]]
    # The key the master password secret is encrypted with, when not the AWS managed one.
    master_secret_key: DataKey | None
    attachment: Attachment
    sdk_layer_arn: pulumi.Input[str]


class FilesMigration(pulumi.ComponentResource):
    invocation: aws.lambda_.Invocation

    def __init__(
        self, name: str, args: FilesMigrationArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("motion:files:Migration", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        att = args.attachment
        self.family = f"{args.name_prefix}-files-migrate"
        place = Place.of(self)
        account = place.account

        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"{att.log_group_prefix}/{self.family}",
            retention_in_days=att.log_retention_days,
            kms_key_id=att.log_kms_key_arn,
            opts=child,
        )
        # Where the migration task's logs go (the operators' saved queries read it).
        self.log_group_name = log_group.name
        master = args.database.master_secret_arn
        secrets = {
            "DATABASE_USER": SecretRef(master, "username", args.master_secret_key),
            "DATABASE_PASSWORD": SecretRef(master, "password", args.master_secret_key),
        }
        self.execution_role = aws.iam.Role(
            f"{name}-execution",
            assume_role_policy=assume_role_policy("ecs-tasks.amazonaws.com", account),
            opts=child,
        )
        execution_policy = aws.iam.RolePolicy(
            f"{name}-execution-policy",
            role=self.execution_role.id,
            policy=policy_document(*execution_statements(args.repository_arn, log_group, secrets)),
            opts=child,
        )
        # The migration talks to PostgreSQL only; its AWS credentials may do nothing.
        self.task_role = aws.iam.Role(
            f"{name}-task",
            assume_role_policy=assume_role_policy("ecs-tasks.amazonaws.com", account),
            opts=child,
        )
        self.task_definition = aws.ecs.TaskDefinition(
            f"{name}-task-definition",
            family=self.family,
            cpu="256",
            memory="512",
            network_mode="awsvpc",
            requires_compatibilities=["FARGATE"],
            runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
                cpu_architecture="ARM64", operating_system_family="LINUX"
            ),
            execution_role_arn=self.execution_role.arn,
            task_role_arn=self.task_role.arn,
            container_definitions=pulumi.Output.json_dumps(
                [
                    job_container_definition(
                        name=CONTAINER,
                        image=args.image,
                        user=args.image_user,
                        command=["python", "-m", FILES.migrate_module],
                        # Exactly what files_service.migrate reads, besides the two secrets.
                        environment=dict(args.database_tls),
                        secrets=secrets,
                        log_group=log_group.name,
                        region=att.region,
                        stream_prefix=self.family,
                    )
                ]
            ),
            volumes=[aws.ecs.TaskDefinitionVolumeArgs(name="tmp")],
            opts=child,
        )

        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=att.vpc_id,
            description=f"{self.family} task: no ingress, out to PostgreSQL and HTTPS only",
            tags={"Name": self.family},
            opts=child,
        )
        # ECR (image), Secrets Manager (the master secret) and CloudWatch Logs are HTTPS endpoints.
        https = aws.vpc.SecurityGroupEgressRule(
            f"{name}-to-https",
            security_group_id=self.security_group.id,
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            cidr_ipv4="0.0.0.0/0",
            description="HTTPS to AWS APIs",
            opts=child,
        )
        database_path = args.database.admit(name, self.security_group)

        runner = lambda_function(
            self,
            name,
            "runner",
            RUNNER_HANDLER,
            code_archive(TASK_RUNNER_ROOT, task_runner_files()),
            layers=[args.sdk_layer_arn],
            name_prefix=self.family,  # <prefix>-files-migrate-runner
            log_retention_days=att.log_retention_days,
            log_kms_key_arn=att.log_kms_key_arn,
            timeout=RUNNER_TIMEOUT_SECONDS,
            environment=None,  # everything it needs is in the event
            statements=self._runner_statements(att, place),
        )
        self.runner = runner

        event = {
            "cluster": att.cluster_arn,
            "taskDefinition": self.task_definition.arn,
            "container": CONTAINER,
            "subnets": list(att.subnet_ids),
            "securityGroups": [self.security_group.id],
            "assignPublicIp": att.assign_public_ip,
            "logGroup": log_group.name,
            "logStreamPrefix": self.family,
        }
        # Starts the task only once it can start and reach the database: the execution role may pull
        # and inject, the security groups let it through, the subnets route out (a one-off task that
        # fails to start is not retried as a service's would be).
        self.invocation = aws.lambda_.Invocation(
            f"{name}-run",
            function_name=runner.name,
            input=pulumi.Output.json_dumps(event),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[execution_policy, https, *database_path, *att.egress]
            ),
        )
        self.register_outputs(
            {"task_definition_arn": self.task_definition.arn, "result": self.invocation.result}
        )

    def _runner_statements(self, att: Attachment, place: Place) -> list[dict[str, object]]:
        """What the runner may do (Service Authorization Reference, Amazon ECS): RunTask authorizes on
        the task definition (`task-definition/<family>:<revision>`) with the `ecs:cluster` condition
        key (an ARN); DescribeTasks on the task (`task/<cluster-name>/<task-id>`), also with
        `ecs:cluster`; RunTask also needs iam:PassRole for the task's roles, passed to
        ecs-tasks.amazonaws.com. No tags are requested, so no ecs:TagResource."""
        in_cluster = {"ArnEquals": {"ecs:cluster": att.cluster_arn}}
        arn_base = place.arn("ecs", "")
        return [
            statement(
                ["ecs:RunTask"],
                [pulumi.Output.concat(arn_base, "task-definition/", self.family, ":*")],
                sid="RunMigrationTask",
                condition=in_cluster,
            ),
            statement(
                ["ecs:DescribeTasks"],
                [pulumi.Output.concat(arn_base, "task/", att.cluster_name, "/*")],
                sid="WatchMigrationTask",
                condition=in_cluster,
            ),
            statement(
                ["iam:PassRole"],
                [self.execution_role.arn, self.task_role.arn],
                sid="PassMigrationRoles",
                condition={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
            ),
        ]
