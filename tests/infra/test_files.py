"""Files under mocks: private bucket, PostgreSQL, image, the two services and their permissions."""

from __future__ import annotations

import json
import re

import pytest

from components.app_code import APP_CODE
from components.aws.container_image import image_user
from components.facts import FILES
from stacktools.mocked_program import ACCOUNT, computed_outputs, run_with
from tests.infra.harness import RecordedResource, StackRun

TD = "aws:ecs/taskDefinition:TaskDefinition"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
SERVICES = ("upload", "download")
# RDS User Guide, "Creating and using an IAM policy for IAM database access": the resource of
# rds-db:connect is one database account in one DB instance,
# arn:aws:rds-db:region:account-id:dbuser:DbiResourceId/db-user-name, where DbiResourceId is the
# instance's resource id ("db-" and upper-case letters and digits in the guide's examples), not its
# identifier. A wrong ARN is accepted by IAM and by the mocks alike; the login then fails.
CONNECT_ARN = re.compile(
    r"arn:aws:rds-db:(?P<region>[a-z]{2}(?:-[a-z]+)+-\d):(?P<account>\d{12}):dbuser:"
    r"(?P<dbi>db-[A-Z0-9]+)/(?P<user>[A-Za-z_][A-Za-z0-9_]*)"
)


def bucket(run: StackRun) -> RecordedResource:
    return next(b for b in run.of_type("aws:s3/bucket:Bucket") if b.name == "files-bucket")


def setting(run: StackRun, type_: str) -> dict:
    return next(r.inputs for r in run.of_type(type_) if r.inputs["bucket"] == bucket(run).id)


def test_bucket_is_private_owner_enforced_tls_only(stack: StackRun) -> None:
    block = setting(stack, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert all(
        block[k] is True
        for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    ownership = setting(stack, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    assert ownership["rule"]["objectOwnership"] == "BucketOwnerEnforced"
    policy = json.loads(setting(stack, "aws:s3/bucketPolicy:BucketPolicy")["policy"])
    (deny,) = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} and deny["Action"] == "s3:*"


def test_encryption_kms_with_bucket_key_in_production_only(dev: StackRun, production: StackRun) -> None:
    dev_rule = setting(
        dev, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )["rules"][0]
    assert dev_rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    prod_rule = setting(
        production, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )["rules"][0]
    assert prod_rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    assert prod_rule["bucketKeyEnabled"] is True
    assert production.one("aws:kms/key:Key", "files-key").inputs["enableKeyRotation"] is True


def test_versioning_in_production_only(dev: StackRun, production: StackRun) -> None:
    assert [
        v
        for v in dev.of_type("aws:s3/bucketVersioning:BucketVersioning")
        if v.inputs["bucket"] == bucket(dev).id
    ] == []
    versioning = setting(production, "aws:s3/bucketVersioning:BucketVersioning")
    assert versioning["versioningConfiguration"]["status"] == "Enabled"


def test_cors_only_for_frontend_origins_and_lifecycle_for_abandoned_uploads(stack: StackRun) -> None:
    (rule,) = setting(stack, "aws:s3/bucketCorsConfiguration:BucketCorsConfiguration")["corsRules"]
    assert rule["allowedOrigins"] == list(stack.config.frontend.origins)
    assert "*" not in rule["allowedOrigins"] and set(rule["allowedMethods"]) == {"GET", "HEAD", "POST"}
    rules = {
        r["id"]: r
        for r in setting(stack, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")["rules"]
    }
    assert (
        rules["abort-incomplete-multipart-uploads"]["abortIncompleteMultipartUpload"]["daysAfterInitiation"]
        == 1
    )
    pending = rules["expire-never-completed-uploads"]
    assert pending["filter"]["tag"] == {"key": "upload-state", "value": "pending"}


def test_database_private_encrypted_tls_managed_password(stack: StackRun) -> None:
    db = stack.one("aws:rds/instance:Instance").inputs
    assert db["engine"] == "postgres" and db["storageEncrypted"] is True and db["publiclyAccessible"] is False
    assert db["manageMasterUserPassword"] is True and "password" not in db
    assert db["username"] not in {"postgres", "admin", "root", "master"}
    isolated = {
        s.id for s in stack.of_type("aws:ec2/subnet:Subnet") if s.inputs["tags"]["tier"] == "isolated"
    }
    assert set(stack.one("aws:rds/subnetGroup:SubnetGroup").inputs["subnetIds"]) == isolated
    params = {
        p["name"]: p["value"] for p in stack.one("aws:rds/parameterGroup:ParameterGroup").inputs["parameters"]
    }
    assert params["rds.force_ssl"] == "1"
    assert db["iamDatabaseAuthenticationEnabled"] is True
    # Enabling IAM authentication is otherwise deferred to the maintenance window, while the services
    # that log in only with IAM tokens roll out at once.
    assert db["applyImmediately"] is True
    assert db["autoMinorVersionUpgrade"] is True and db["enabledCloudwatchLogsExports"] == [
        "postgresql",
        "upgrade",
    ]


def test_database_posture_per_stack(dev: StackRun, production: StackRun) -> None:
    d, p = dev.one("aws:rds/instance:Instance").inputs, production.one("aws:rds/instance:Instance").inputs
    assert (d["multiAz"], d["deletionProtection"], d["instanceClass"]) == (False, False, "db.t4g.micro")
    assert d["skipFinalSnapshot"] is True
    assert p["multiAz"] is True and p["deletionProtection"] is True and p["backupRetentionPeriod"] >= 7
    assert p["performanceInsightsEnabled"] is True and p["maxAllocatedStorage"] > p["allocatedStorage"]


def test_enhanced_monitoring_in_production_through_its_own_role(dev: StackRun, production: StackRun) -> None:
    d = dev.one("aws:rds/instance:Instance").inputs
    assert d["monitoringInterval"] == 0 and "monitoringRoleArn" not in d
    assert not [r for r in dev.of_type("aws:iam/role:Role") if "monitoring" in r.name]
    db = production.one("aws:rds/instance:Instance")
    # CreateDBInstance (RDS API Reference): MonitoringInterval "Valid Values: 0 | 1 | 5 | 10 | 15 | 30 |
    # 60"; "If MonitoringInterval is set to a value other than 0, supply a MonitoringRoleArn value."
    assert db.inputs["monitoringInterval"] in (1, 5, 10, 15, 30, 60)
    role = next(r for r in production.of_type("aws:iam/role:Role") if r.name == "files-db-monitoring-role")
    arn = computed_outputs(role.type, role.name, role.inputs, production.config.region)["arn"]
    assert db.inputs["monitoringRoleArn"] == arn
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    # RDS User Guide, "Setting up and enabling Enhanced Monitoring": the role trusts
    # monitoring.rds.amazonaws.com (not rds.amazonaws.com) and carries AmazonRDSEnhancedMonitoringRole.
    assert trust == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "monitoring.rds.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}},
        }
    ]
    attachment = production.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert attachment.inputs == {
        "role": role.id,
        "policyArn": "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole",
    }
    assert attachment.urn in db.dependencies


def test_database_admits_only_the_two_file_services_and_the_migration(stack: StackRun) -> None:
    db_sg = stack.one("aws:ec2/securityGroup:SecurityGroup", "files-db")
    ingress = [
        r.inputs
        for r in stack.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.inputs["securityGroupId"] == db_sg.id
    ]
    clients = {
        stack.one("aws:ec2/securityGroup:SecurityGroup", f"files-{client}-sg").id
        for client in ("upload", "download", "migrate")
    }
    assert {r["referencedSecurityGroupId"] for r in ingress} == clients
    assert all(r["fromPort"] == r["toPort"] == 5432 and "cidrIpv4" not in r for r in ingress)


def test_repository_scans_immutable_with_lifecycle_and_image_by_digest(stack: StackRun) -> None:
    repo = stack.one("aws:ecr/repository:Repository", "files").inputs
    assert (
        repo["imageTagMutability"] == "IMMUTABLE" and repo["imageScanningConfiguration"]["scanOnPush"] is True
    )
    assert stack.one("aws:ecr/lifecyclePolicy:LifecyclePolicy", "files").inputs["repository"] == repo["name"]
    for role in ("upload", "download"):
        (container,) = stack.one(TD, f"files-{role}").json("containerDefinitions")
        assert "@sha256:" in container["image"]


def test_two_services_with_their_own_roles_and_path_rules(stack: StackRun) -> None:
    rules = {
        r.name: r.inputs
        for r in stack.of_type("aws:lb/listenerRule:ListenerRule")
        if r.name.startswith("files")
    }
    upload = rules["files-upload-rule"]["conditions"][0]["pathPattern"]["values"]
    download = rules["files-download-rule"]["conditions"][0]["pathPattern"]["values"]
    assert upload == ["/files/v1/uploads", "/files/v1/uploads/*"]
    assert "/files/v1/files/*" in download and not set(upload) & set(download)
    policies = {
        p.name: p.json("policy")
        for p in stack.of_type("aws:iam/rolePolicy:RolePolicy")
        if p.name in ("files-upload-task-policy", "files-download-task-policy")
    }

    def actions(name: str) -> set[str]:
        return {a for s in policies[name]["Statement"] for a in s["Action"]}

    assert {"s3:PutObject", "s3:GetObject"} <= actions("files-upload-task-policy")
    assert {a for a in actions("files-download-task-policy") if a.startswith("s3:")} == {"s3:GetObject"}
    for doc in policies.values():
        for stmt in doc["Statement"]:
            for resource in stmt["Resource"]:
                assert resource.endswith("/uploads/*") or stmt["Sid"] in (
                    "ListBucketFor404",
                    "ObjectKey",
                    "DatabaseLogin",  # checked in test_services_may_connect_only_as_the_app_role_...
                ), stmt


def test_s3_statements_are_the_ones_s3s_answer_for_a_missing_object_relies_on(stack: StackRun) -> None:
    """The completion flow relies on S3 answering a HEAD of a not-yet-uploaded key with 404, which
    S3 does only for a caller holding s3:ListBucket on the bucket (HeadObject, "Permissions"). A
    condition on that grant would make the answer 403: a HEAD carries no s3:prefix, and a condition
    on a key absent from the request is false (IAM, "Condition operators"). So: exactly these
    statements, ListBucket unconditioned, and no Deny that could take it back."""
    policies = {
        role: next(
            p.json("policy")["Statement"]
            for p in stack.of_type("aws:iam/rolePolicy:RolePolicy")
            if p.name == f"files-{role}-task-policy"
        )
        for role in ("upload", "download")
    }
    s3 = {
        role: {s["Sid"]: s for s in statements if any(a.startswith("s3:") for a in s["Action"])}
        for role, statements in policies.items()
    }
    objects = s3["upload"]["UploadObjects"]
    (objects_arn,) = objects["Resource"]
    assert objects_arn.startswith("arn:aws:s3:::") and objects_arn.endswith("/uploads/*")
    bucket_arn = objects_arn.removesuffix("/uploads/*")
    assert objects == {
        "Sid": "UploadObjects",
        "Effect": "Allow",
        "Action": [
            "s3:DeleteObject",
            "s3:DeleteObjectTagging",
            "s3:GetObject",
            "s3:PutObject",
            "s3:PutObjectTagging",
        ],
        "Resource": [objects_arn],
    }
    assert s3["upload"]["ListBucketFor404"] == {
        "Sid": "ListBucketFor404",
        "Effect": "Allow",
        "Action": ["s3:ListBucket"],
        "Resource": [bucket_arn],
    }
    assert set(s3["upload"]) == {"UploadObjects", "ListBucketFor404"}
    # The download role asks S3 nothing itself; it signs GETs of available files only.
    assert s3["download"] == {
        "UploadObjects": {
            "Sid": "UploadObjects",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [objects_arn],
        }
    }
    assert all(s["Effect"] == "Allow" for statements in policies.values() for s in statements)
    # Nor may the bucket's own policy deny the upload role a listing (it only refuses plain HTTP).
    bucket_policy = json.loads(setting(stack, "aws:s3/bucketPolicy:BucketPolicy")["policy"])
    assert [s["Condition"] for s in bucket_policy["Statement"] if s["Effect"] == "Deny"] == [
        {"Bool": {"aws:SecureTransport": "false"}}
    ]


def test_containers_read_only_non_root_logged(stack: StackRun) -> None:
    for role in SERVICES:
        td = stack.one(TD, f"files-{role}")
        (c,) = td.json("containerDefinitions")
        assert (
            c["readonlyRootFilesystem"] is True
            and c["privileged"] is False
            and c["user"] == image_user(APP_CODE / "files/Dockerfile")
        )
        assert c["logConfiguration"]["logDriver"] == "awslogs"
        assert td.inputs["requiresCompatibilities"] == ["FARGATE"]


def test_services_log_in_as_the_app_role_with_iam_over_verified_tls(stack: StackRun) -> None:
    """The contract in files_service/database_roles.py: no password at all, an IAM token per
    connection for APP_ROLE, and TLS that verifies RDS's certificate and host name."""
    for role in SERVICES:
        (c,) = stack.one(TD, f"files-{role}").json("containerDefinitions")
        env = {e["name"]: e["value"] for e in c["environment"]}
        assert env["FILES_ROLE"] == role
        assert env["DATABASE_AUTH"] == "iam" and env["DATABASE_USER"] == FILES.app_role == "files_app"
        assert env["DATABASE_SSLMODE"] == "verify-full"
        assert env["DATABASE_SSLROOTCERT"] == FILES.rds_ca_bundle
        assert "DATABASE_PASSWORD" not in env
        # Nothing injected at start-up: the master secret rotates, an injected copy would go stale.
        assert c.get("secrets", []) == []


def test_the_quotas_are_stack_settings_every_files_task_gets(stack: StackRun) -> None:
    configured = run_with(
        "dev", filesMaxShareDays=7, filesMaxPendingUploadsPerUser=3, filesMaxProjectBytes=2 * 1024**3
    )
    for run, expected in (
        (stack, stack.config.files),
        (configured, configured.config.files),
    ):
        for role in SERVICES:
            (c,) = run.one(TD, f"files-{role}").json("containerDefinitions")
            env = {e["name"]: e["value"] for e in c["environment"]}
            assert env["MAX_SHARE_DAYS"] == str(expected.max_share_days)
            assert env["MAX_PENDING_UPLOADS_PER_USER"] == str(expected.max_pending_uploads_per_user)
            assert env["MAX_PROJECT_BYTES"] == str(expected.max_project_bytes)
    assert (configured.config.files.max_share_days, configured.config.files.max_pending_uploads_per_user) == (
        7,
        3,
    )
    assert configured.config.files.max_project_bytes == 2 * 1024**3


def service_policies(run: StackRun, role: str) -> tuple[dict, dict]:
    def doc(name: str) -> dict:
        return run.one(ROLE_POLICY, name).json("policy")

    return doc(f"files-{role}-execution-policy"), doc(f"files-{role}-task-policy")


def test_services_cannot_read_the_master_secret(stack: StackRun) -> None:
    secret = stack.one("aws:rds/instance:Instance")
    secret_arn = computed_outputs(secret.type, secret.name, secret.inputs, stack.config.region)[
        "masterUserSecrets"
    ][0]["secretArn"]
    for role in SERVICES:
        for doc in service_policies(stack, role):
            for stmt in doc["Statement"]:
                assert not [a for a in stmt["Action"] if a.startswith("secretsmanager:")], stmt
                assert not [r for r in stmt["Resource"] if ":secretsmanager:" in r or r == secret_arn], stmt


def test_services_may_connect_only_as_the_app_role_to_this_instance(stack: StackRun) -> None:
    instance = stack.one("aws:rds/instance:Instance")
    outputs = computed_outputs(instance.type, instance.name, instance.inputs, stack.config.region)
    for role in SERVICES:
        _, task = service_policies(stack, role)
        connects = [s for s in task["Statement"] if any(a.startswith("rds-db:") for a in s["Action"])]
        assert len(connects) == 1, connects
        (statement,) = connects
        assert statement["Action"] == ["rds-db:connect"] and "Condition" not in statement
        (arn,) = statement["Resource"]
        match = CONNECT_ARN.fullmatch(arn)
        assert match, f"{arn} is not an rds-db:connect resource ARN"
        assert match["region"] == stack.config.region and match["account"] == ACCOUNT
        assert match["dbi"] == outputs["resourceId"] != outputs["identifier"]
        assert match["user"] == FILES.app_role


@pytest.mark.parametrize(
    ("arn", "valid"),
    [
        ("arn:aws:rds-db:us-east-2:123456789012:dbuser:db-ABCDEFGHIJKL01234/db_user", True),
        ("arn:aws:rds-db:us-east-1:123456789012:dbuser:db-12ABC34DEFG5HIJ6KLMNOP78QR/files_app", True),
        # the instance identifier instead of its resource id
        ("arn:aws:rds-db:us-east-1:123456789012:dbuser:motion-dev-0123abcd/files_app", False),
        ("arn:aws:rds:us-east-1:123456789012:db:db-ABCDEFGHIJKL01234", False),  # the instance's own ARN
        ("arn:aws:rds-db:us-east-1:123456789012:dbuser:db-ABCDEFGHIJKL01234/*", False),  # any user
        ("arn:aws:rds-db:us-east-1:123456789012:dbuser:*/files_app", False),  # any instance
        ("arn:aws:rds-db:us-east-1::dbuser:db-ABCDEFGHIJKL01234/files_app", False),  # no account
    ],
)
def test_the_connect_arn_check_follows_the_rds_format(arn: str, valid: bool) -> None:
    assert bool(CONNECT_ARN.fullmatch(arn)) is valid


def test_services_circuit_breaker_spread_and_autoscaling(dev: StackRun, production: StackRun) -> None:
    for run in (dev, production):
        for role in ("upload", "download"):
            service = run.one("aws:ecs/service:Service", f"files-{role}").inputs
            assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
            scaling = getattr(run.config, role)
            assert service["desiredCount"] == scaling.desired
            net = service["networkConfiguration"]
            assert net["assignPublicIp"] is (run.config.network.nat_strategy == "none")
    for role in ("upload", "download"):
        assert production.one("aws:ecs/service:Service", f"files-{role}").inputs["desiredCount"] >= 2
    targets = {t.name: t.inputs for t in production.of_type("aws:appautoscaling/target:Target")}
    assert targets["files-upload-scaling-target"]["minCapacity"] == 2
    assert dev.of_type("aws:appautoscaling/target:Target") == []


def test_alarms_for_targets_and_database(stack: StackRun) -> None:
    metrics = {
        a.inputs["metricName"]
        for a in stack.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
        if a.name.startswith("files")
    }
    assert {
        "HTTPCode_Target_5XX_Count",
        "UnHealthyHostCount",
        "CPUUtilization",
        "FreeStorageSpace",
    } <= metrics
