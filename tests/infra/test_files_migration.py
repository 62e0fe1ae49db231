"""The files schema migration under mocks: the one-off task (the only holder of the master secret),
its network path to PostgreSQL, the runner Lambda and its least-privilege role, the invocation that
runs it during `pulumi up`, and the services that wait for it."""

from __future__ import annotations

import fnmatch
import re

from task_runner.core import RunRequest
from task_runner.handler import MARGIN_SECONDS

from components.app_code import APP_CODE, TASK_RUNNER_ROOT, task_runner_files
from components.aws.container_image import image_user
from components.facts import FILES
from stacktools.mocked_program import ACCOUNT, computed_outputs
from tests.infra.harness import RecordedResource, StackRun, arn

TD = "aws:ecs/taskDefinition:TaskDefinition"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
SG = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
INVOCATION = "aws:lambda/invocation:Invocation"
# Service Authorization Reference, Amazon ECS, resource types: a task definition is
# arn:${Partition}:ecs:${Region}:${Account}:task-definition/${TaskDefinitionFamilyName}:${TaskDefinitionRevisionNumber},
# a task arn:${Partition}:ecs:${Region}:${Account}:task/${ClusterName}/${TaskId}.
TASK_DEFINITION_ARN = re.compile(
    r"arn:aws:ecs:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):task-definition/(?P<family>[A-Za-z0-9_-]{1,255}):(?P<revision>\d+)"
)
# Lambda quotas: a function runs at most 900 seconds.
LAMBDA_MAX_TIMEOUT = 900


def outputs(run: StackRun, resource: RecordedResource) -> dict:
    """What the (mocked) provider reports for a resource: its inputs and computed values."""
    return {
        **resource.inputs,
        **computed_outputs(resource.type, resource.name, resource.inputs, run.config.region),
    }


def migrate_task(run: StackRun) -> RecordedResource:
    return run.one(TD, "files-migrate")


def container(run: StackRun) -> dict:
    (c,) = migrate_task(run).json("containerDefinitions")
    return c


def master_secret_arn(run: StackRun) -> str:
    return outputs(run, run.one("aws:rds/instance:Instance"))["masterUserSecrets"][0]["secretArn"]


def invocation_input(run: StackRun) -> dict:
    return run.one(INVOCATION).json("input")


def iam_matches(pattern: str, arn: str) -> bool:
    """IAM's Resource matching: `*` any run of characters, `?` any one, everything else literal, case
    sensitive (IAM User Guide, "IAM JSON policy elements: Resource", wildcards)."""
    return fnmatch.fnmatchcase(arn, pattern.replace("[", "[[]"))


# --- the task --------------------------------------------------------------------------------------


def test_the_migrate_task_runs_the_files_image_as_the_migration_step(stack: StackRun) -> None:
    task = migrate_task(stack)
    assert task.inputs["family"] == f"{stack.config.name_prefix}-files-migrate"
    assert task.inputs["requiresCompatibilities"] == ["FARGATE"] and task.inputs["networkMode"] == "awsvpc"
    assert task.inputs["runtimePlatform"] == {"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"}
    c = container(stack)
    (service,) = stack.one(TD, "files-upload").json("containerDefinitions")
    assert c["image"] == service["image"] and "@sha256:" in c["image"]  # the release being deployed
    assert c["command"] == ["python", "-m", FILES.migrate_module] == ["python", "-m", "files_service.migrate"]
    assert c["essential"] is True and c["readonlyRootFilesystem"] is True and c["privileged"] is False
    assert c["user"] == image_user(APP_CODE / "files/Dockerfile")
    assert "portMappings" not in c and "healthCheck" not in c


def test_the_migrate_task_gets_the_master_secret_and_verified_tls(stack: StackRun) -> None:
    """What files_service.migrate reads: the database's address, the master user and password (ECS
    injects the current secret value when the task starts), and TLS verified against the RDS CAs."""
    c = container(stack)
    secret = master_secret_arn(stack)
    assert {s["name"]: s["valueFrom"] for s in c["secrets"]} == {
        "DATABASE_USER": f"{secret}:username::",
        "DATABASE_PASSWORD": f"{secret}:password::",
    }
    db = stack.one("aws:rds/instance:Instance")
    assert {e["name"]: e["value"] for e in c["environment"]} == {
        "DATABASE_HOST": outputs(stack, db)["address"],
        "DATABASE_PORT": "5432",
        "DATABASE_NAME": db.inputs["dbName"],
        "DATABASE_SSLMODE": "verify-full",
        "DATABASE_SSLROOTCERT": FILES.rds_ca_bundle,
    }


def test_the_migrate_task_logs_to_its_own_group(stack: StackRun) -> None:
    options = container(stack)["logConfiguration"]
    assert options["logDriver"] == "awslogs"
    group = options["options"]["awslogs-group"]
    family = migrate_task(stack).inputs["family"]
    assert group == f"/motion/{family}" and options["options"]["awslogs-stream-prefix"] == family
    (log_group,) = [g for g in stack.of_type("aws:cloudwatch/logGroup:LogGroup") if g.inputs["name"] == group]
    assert log_group.inputs["retentionInDays"] == stack.config.log_retention_days
    others = {
        (t.json("containerDefinitions")[0]["logConfiguration"]["options"]["awslogs-group"])
        for t in stack.of_type(TD)
        if t is not migrate_task(stack)
    }
    assert group not in others


def role_policies(run: StackRun, role_arn: str) -> list[RecordedResource]:
    role = next(r for r in run.of_type(ROLE) if outputs(run, r)["arn"] == role_arn)
    return [p for p in run.of_type(ROLE_POLICY) if p.inputs["role"] == role.id]


def test_the_execution_role_reads_exactly_the_master_secret(stack: StackRun) -> None:
    task = migrate_task(stack)
    (policy,) = role_policies(stack, task.inputs["executionRoleArn"])
    statements = {s["Sid"]: s for s in policy.json("policy")["Statement"]}
    assert statements["InjectSecrets"] == {
        "Effect": "Allow",
        "Action": ["secretsmanager:GetSecretValue"],
        "Resource": [master_secret_arn(stack)],
        "Sid": "InjectSecrets",
    }
    group = container(stack)["logConfiguration"]["options"]["awslogs-group"]
    assert statements["WriteLogs"]["Resource"] == [
        f"arn:aws:logs:{stack.config.region}:{ACCOUNT}:log-group:{group}:*"
    ]
    repo = outputs(stack, stack.one("aws:ecr/repository:Repository", "files"))["arn"]
    assert statements["PullImage"]["Resource"] == [repo]
    # Under Secrets Manager's AWS managed key the secret needs no kms:Decrypt; under a customer
    # managed key it does (ECS Developer Guide, "Required IAM permissions for Amazon ECS secrets"):
    # exactly that, on the key the instance names, only through Secrets Manager.
    instance = stack.one("aws:rds/instance:Instance").inputs
    if not stack.config.data_kms_encryption:
        assert set(statements) == {"RegistryToken", "PullImage", "WriteLogs", "InjectSecrets"}
        assert "masterUserSecretKmsKeyId" not in instance
        assert not [a for s in statements.values() for a in s["Action"] if a.startswith("kms:")]
        return
    assert set(statements) == {"RegistryToken", "PullImage", "WriteLogs", "InjectSecrets", "DecryptSecrets"}
    key = arn(stack, stack.one("aws:kms/key:Key", "files-key"))
    assert instance["masterUserSecretKmsKeyId"] == key
    assert statements["DecryptSecrets"] == {
        "Effect": "Allow",
        "Action": ["kms:Decrypt"],
        "Resource": [key],
        "Sid": "DecryptSecrets",
        "Condition": {
            "StringEquals": {"kms:ViaService": f"secretsmanager.{stack.config.region}.amazonaws.com"}
        },
    }


def test_nothing_else_in_the_stack_may_read_the_master_secret(stack: StackRun) -> None:
    secret = master_secret_arn(stack)
    readers = [p.name for p in stack.of_type(ROLE_POLICY) if secret in p.inputs["policy"]]
    assert readers == ["files-migrate-execution-policy"]
    injected = [t.name for t in stack.of_type(TD) if secret in t.inputs["containerDefinitions"]]
    assert injected == [migrate_task(stack).name]


def test_the_task_role_may_do_nothing(stack: StackRun) -> None:
    task_role_arn = migrate_task(stack).inputs["taskRoleArn"]
    assert role_policies(stack, task_role_arn) == []
    role = next(r for r in stack.of_type(ROLE) if outputs(stack, r)["arn"] == task_role_arn)
    assert not role.inputs.get("inlinePolicies") and not role.inputs.get("managedPolicyArns")
    attachments = stack.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert not [a for a in attachments if a.inputs["role"] in (role.id, role.inputs.get("name"))]
    assert task_role_arn != migrate_task(stack).inputs["executionRoleArn"]


# --- the network path --------------------------------------------------------------------------------


def test_the_database_admits_the_migrate_task_on_5432_only(stack: StackRun) -> None:
    db_sg = stack.one(SG, "files-db").id
    migrate_sg = stack.one(SG, "files-migrate").id
    (ingress,) = [
        r.inputs for r in stack.of_type(INGRESS) if r.inputs.get("referencedSecurityGroupId") == migrate_sg
    ]
    assert ingress["securityGroupId"] == db_sg
    assert ingress["ipProtocol"] == "tcp" and ingress["fromPort"] == ingress["toPort"] == 5432
    out = sorted(
        (r.inputs["fromPort"], r.inputs.get("referencedSecurityGroupId") or r.inputs.get("cidrIpv4"))
        for r in stack.of_type(EGRESS)
        if r.inputs["securityGroupId"] == migrate_sg
    )
    assert out == [(443, "0.0.0.0/0"), (5432, db_sg)]
    # Nothing may connect to the task.
    assert not [r for r in stack.of_type(INGRESS) if r.inputs["securityGroupId"] == migrate_sg]


# --- the runner ----------------------------------------------------------------------------------


def runner(run: StackRun) -> RecordedResource:
    return run.one("aws:lambda/function:Function", "files-migrate-runner")


def test_the_runner_is_a_current_arm64_python_function_with_the_stacks_sdk(stack: StackRun) -> None:
    fn = runner(stack).inputs
    assert fn["name"] == f"{stack.config.name_prefix}-files-migrate-runner"
    assert fn["runtime"] == "python3.13" and fn["architectures"] == ["arm64"]
    assert fn["handler"] == "task_runner.handler.handler"
    (layer,) = fn["layers"]
    assert layer == outputs(stack, stack.one("aws:lambda/layerVersion:LayerVersion"))["arn"]
    assert MARGIN_SECONDS < fn["timeout"] <= LAMBDA_MAX_TIMEOUT
    assert "environment" not in fn  # everything is in the event
    assert sorted(fn["code"].assets) == [f.as_posix() for f in task_runner_files()]
    assert all(a.path == str(TASK_RUNNER_ROOT / name) for name, a in fn["code"].assets.items())


def test_the_runner_role_is_exactly_what_running_and_watching_the_task_needs(stack: StackRun) -> None:
    region, prefix = stack.config.region, stack.config.name_prefix
    cluster = outputs(stack, stack.one("aws:ecs/cluster:Cluster"))
    task = migrate_task(stack)
    (policy,) = [p for p in stack.of_type(ROLE_POLICY) if p.name == "files-migrate-runner-policy"]
    in_cluster = {"ArnEquals": {"ecs:cluster": cluster["arn"]}}
    assert policy.json("policy")["Statement"] == [
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [
                f"arn:aws:logs:{region}:{ACCOUNT}:log-group:/aws/lambda/{prefix}-files-migrate-runner:*"
            ],
            "Sid": "WriteLogs",
        },
        {
            "Effect": "Allow",
            "Action": ["ecs:RunTask"],
            "Resource": [f"arn:aws:ecs:{region}:{ACCOUNT}:task-definition/{prefix}-files-migrate:*"],
            "Sid": "RunMigrationTask",
            "Condition": in_cluster,
        },
        {
            "Effect": "Allow",
            "Action": ["ecs:DescribeTasks"],
            "Resource": [f"arn:aws:ecs:{region}:{ACCOUNT}:task/{cluster['name']}/*"],
            "Sid": "WatchMigrationTask",
            "Condition": in_cluster,
        },
        {
            "Effect": "Allow",
            "Action": ["iam:PassRole"],
            "Resource": [task.inputs["executionRoleArn"], task.inputs["taskRoleArn"]],
            "Sid": "PassMigrationRoles",
            "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
        },
    ]


def test_the_runner_may_run_every_revision_of_the_migrate_family_and_no_other_task(stack: StackRun) -> None:
    (policy,) = [p for p in stack.of_type(ROLE_POLICY) if p.name == "files-migrate-runner-policy"]
    statements = {s["Sid"]: s for s in policy.json("policy")["Statement"]}
    (run_pattern,) = statements["RunMigrationTask"]["Resource"]
    migrate_arn = outputs(stack, migrate_task(stack))["arn"]
    match = TASK_DEFINITION_ARN.fullmatch(migrate_arn)
    assert match and match["family"] == migrate_task(stack).inputs["family"]
    for revision in ("1", "2", "137"):
        assert iam_matches(run_pattern, f"{migrate_arn.rsplit(':', 1)[0]}:{revision}")
    for other in stack.of_type(TD):
        if other is not migrate_task(stack):
            assert not iam_matches(run_pattern, outputs(stack, other)["arn"]), other.name
    cluster = outputs(stack, stack.one("aws:ecs/cluster:Cluster"))
    (watch_pattern,) = statements["WatchMigrationTask"]["Resource"]
    prefix = f"arn:aws:ecs:{stack.config.region}:{ACCOUNT}:task"
    assert iam_matches(watch_pattern, f"{prefix}/{cluster['name']}/0123456789abcdef0123456789abcdef")
    assert not iam_matches(watch_pattern, f"{prefix}/another-cluster/0123456789abcdef0123456789abcdef")


# --- the invocation --------------------------------------------------------------------------------


def test_the_invocation_runs_this_migrate_task_definition_where_the_services_run(stack: StackRun) -> None:
    invocation = stack.one(INVOCATION)
    assert invocation.inputs["functionName"] == runner(stack).inputs["name"]
    # CREATE_ONLY (the default): invoked when created, i.e. when its input changes (module docstring).
    assert invocation.inputs.get("lifecycleScope", "CREATE_ONLY") == "CREATE_ONLY"
    request = RunRequest.from_event(invocation_input(stack))  # exactly what the runner accepts
    task = migrate_task(stack)
    assert request.task_definition == outputs(stack, task)["arn"] and task.urn in invocation.dependencies
    assert request.cluster == outputs(stack, stack.one("aws:ecs/cluster:Cluster"))["arn"]
    assert request.container == container(stack)["name"]
    log_options = container(stack)["logConfiguration"]["options"]
    assert (request.log_group, request.log_stream_prefix) == (
        log_options["awslogs-group"],
        log_options["awslogs-stream-prefix"],
    )
    assert request.security_groups == (stack.one(SG, "files-migrate").id,)
    network = stack.one("aws:ecs/service:Service", "files-upload").inputs["networkConfiguration"]
    assert list(request.subnets) == network["subnets"]
    assert request.assign_public_ip is network["assignPublicIp"]


def test_in_production_the_migration_runs_in_private_subnets_without_a_public_ip(
    production: StackRun,
) -> None:
    request = RunRequest.from_event(invocation_input(production))
    private = {
        s.id for s in production.of_type("aws:ec2/subnet:Subnet") if s.inputs["tags"]["tier"] == "private"
    }
    assert set(request.subnets) == private and request.assign_public_ip is False


def test_in_dev_without_nat_it_runs_where_the_services_reach_aws(dev: StackRun) -> None:
    # No NAT gateway in dev: only the public subnets route out, and a task there needs a public IP to
    # reach ECR, Secrets Manager and CloudWatch Logs. Its security group admits nothing.
    request = RunRequest.from_event(invocation_input(dev))
    public = {s.id for s in dev.of_type("aws:ec2/subnet:Subnet") if s.inputs["tags"]["tier"] == "public"}
    assert set(request.subnets) == public and request.assign_public_ip is True


def test_the_invocation_waits_until_the_task_can_start_and_reach_the_database(stack: StackRun) -> None:
    invocation = stack.one(INVOCATION)
    migrate_sg = stack.one(SG, "files-migrate").id
    needed = [
        stack.one(ROLE_POLICY, "files-migrate-execution-policy"),
        *[r for r in stack.of_type(INGRESS) if r.inputs.get("referencedSecurityGroupId") == migrate_sg],
        *[r for r in stack.of_type(EGRESS) if r.inputs["securityGroupId"] == migrate_sg],
    ]
    tier = "public" if stack.config.network.nat_strategy == "none" else "private"
    routes = [
        r
        for r in stack.of_type("aws:ec2/route:Route")
        + stack.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation")
        if r.name.startswith(f"network-{tier}-")
    ]
    assert routes
    assert [r.name for r in [*needed, *routes] if r.urn not in invocation.dependencies] == []
    # The runner may run the task before it is invoked: its policy comes before the function
    # (components/aws/lambda_function.py), and the invocation names the function.
    assert runner(stack).urn in invocation.dependencies
    assert stack.one(ROLE_POLICY, "files-migrate-runner-policy").urn in runner(stack).dependencies


def test_the_services_roll_out_only_after_the_migration_succeeded(stack: StackRun) -> None:
    invocation = stack.one(INVOCATION)
    for role in ("upload", "download"):
        service = stack.one("aws:ecs/service:Service", f"files-{role}")
        assert invocation.urn in service.dependencies, role
    # Chat has no schema of its own: it does not wait.
    assert invocation.urn not in stack.one("aws:ecs/service:Service", "chat").dependencies
