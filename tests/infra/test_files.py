"""Files under mocks: private bucket, PostgreSQL, image, the two services and their permissions."""

from __future__ import annotations

import json

from harness import RecordedResource, StackRun

TD = "aws:ecs/taskDefinition:TaskDefinition"


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


def test_database_admits_only_the_two_file_services(stack: StackRun) -> None:
    db_sg = stack.one("aws:ec2/securityGroup:SecurityGroup", "files-db")
    ingress = [
        r.inputs
        for r in stack.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.inputs["securityGroupId"] == db_sg.id
    ]
    services = {
        stack.one("aws:ec2/securityGroup:SecurityGroup", f"files-{role}-sg").id
        for role in ("upload", "download")
    }
    assert {r["referencedSecurityGroupId"] for r in ingress} == services
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
                assert resource.endswith("/uploads/*") or stmt["Sid"] in ("ListBucketFor404", "ObjectKey"), (
                    stmt
                )


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


def test_containers_read_only_non_root_logged_and_secrets_by_reference(stack: StackRun) -> None:
    for role in ("upload", "download"):
        td = stack.one(TD, f"files-{role}")
        (c,) = td.json("containerDefinitions")
        assert c["readonlyRootFilesystem"] is True and c["privileged"] is False and c["user"] == "10001:10001"
        assert c["logConfiguration"]["logDriver"] == "awslogs"
        env = {e["name"]: e["value"] for e in c["environment"]}
        assert env["FILES_ROLE"] == role and env["DATABASE_SSLMODE"] == "require"
        assert "DATABASE_PASSWORD" not in env and "DATABASE_USER" not in env
        secrets = {s["name"]: s["valueFrom"] for s in c["secrets"]}
        assert secrets["DATABASE_PASSWORD"].endswith(":password::") and secrets["DATABASE_USER"].endswith(
            ":username::"
        )
        assert td.inputs["requiresCompatibilities"] == ["FARGATE"]


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
