"""Platform: ECS cluster and the shared ALB, per stack."""

from __future__ import annotations

from tests.infra.harness import StackRun

LISTENER = "aws:lb/listener:Listener"


def test_dev_has_one_plain_http_listener_with_404_default(dev: StackRun) -> None:
    (listener,) = dev.of_type(LISTENER)
    assert listener.inputs["protocol"] == "HTTP" and listener.inputs["port"] == 80
    (action,) = listener.inputs["defaultActions"]
    assert action["type"] == "fixed-response" and action["fixedResponse"]["statusCode"] == "404"
    assert dev.outputs["baseUrl"].startswith("http://")


def test_production_serves_https_with_modern_tls_and_redirects_http(production: StackRun) -> None:
    listeners = {r.inputs["protocol"]: r.inputs for r in production.of_type(LISTENER)}
    assert set(listeners) == {"HTTP", "HTTPS"}
    https = listeners["HTTPS"]
    assert https["port"] == 443 and https["sslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert https["certificateArn"] == production.config.certificate_arn
    assert https["defaultActions"][0]["fixedResponse"]["statusCode"] == "404"
    (redirect,) = listeners["HTTP"]["defaultActions"]
    assert redirect["type"] == "redirect"
    assert redirect["redirect"] == {"protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}
    assert production.outputs["baseUrl"] == "https://api.motion.example"


def test_alb_is_public_in_public_subnets_and_drops_invalid_headers(stack: StackRun) -> None:
    alb = stack.one("aws:lb/loadBalancer:LoadBalancer")
    assert alb.inputs["internal"] is False and alb.inputs["dropInvalidHeaderFields"] is True
    public = {s.id for s in stack.of_type("aws:ec2/subnet:Subnet") if s.inputs["tags"]["tier"] == "public"}
    assert set(alb.inputs["subnets"]) == public


def test_alb_security_group_admits_only_80_and_443_from_the_internet(stack: StackRun) -> None:
    sg = stack.one("aws:ec2/securityGroup:SecurityGroup", "alb")
    ingress = [
        r.inputs
        for r in stack.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.inputs["securityGroupId"] == sg.id
    ]
    assert sorted((r["fromPort"], r["toPort"], r["cidrIpv4"]) for r in ingress) == [
        (80, 80, "0.0.0.0/0"),
        (443, 443, "0.0.0.0/0"),
    ]
    egress = [
        r.inputs
        for r in stack.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
        if r.inputs["securityGroupId"] == sg.id
    ]
    assert [e["cidrIpv4"] for e in egress] == [stack.config.network.vpc_cidr]


def test_production_alb_protection_and_encrypted_private_access_logs(production: StackRun) -> None:
    alb = production.one("aws:lb/loadBalancer:LoadBalancer")
    assert alb.inputs["enableDeletionProtection"] is True
    logs = alb.inputs["accessLogs"]
    assert logs["enabled"] is True
    bucket = next(b for b in production.of_type("aws:s3/bucket:Bucket") if "alb-logs" in b.name)

    def setting(type_: str) -> dict:
        return next(r.inputs for r in production.of_type(type_) if r.inputs["bucket"] == bucket.id)

    block = setting("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert all(
        block[k]
        for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    encryption = setting(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )
    # ALB log delivery supports only SSE-S3.
    assert encryption["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    policy = next(
        r for r in production.of_type("aws:s3/bucketPolicy:BucketPolicy") if r.inputs["bucket"] == bucket.id
    )
    statements = {s["Sid"]: s for s in policy.json("policy")["Statement"]}
    assert statements["DenyInsecureTransport"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statements["AllowAlbLogDelivery"]["Action"] == "s3:PutObject"


def test_dev_alb_is_destroyable_without_access_logs(dev: StackRun) -> None:
    alb = dev.one("aws:lb/loadBalancer:LoadBalancer")
    assert alb.inputs["enableDeletionProtection"] is False
    assert "accessLogs" not in alb.inputs
    assert [b for b in dev.of_type("aws:s3/bucket:Bucket") if "alb-logs" in b.name] == []


def test_container_insights_per_stack(dev: StackRun, production: StackRun) -> None:
    def insights(run: StackRun) -> str:
        (setting,) = run.one("aws:ecs/cluster:Cluster").inputs["settings"]
        assert setting["name"] == "containerInsights"
        return str(setting["value"])

    assert insights(dev) == "disabled"
    assert insights(production) == "enhanced"


def test_alarm_topic_is_encrypted_with_a_key_cloudwatch_may_use(stack: StackRun) -> None:
    topic = stack.one("aws:sns/topic:Topic", "alarms").inputs
    key = stack.one("aws:kms/key:Key", "alarms-key")
    assert topic["kmsMasterKeyId"] == f"arn:aws:kms:us-east-1:123456789012:key/{key.name}"
    assert key.inputs["enableKeyRotation"] is True
    statements = {s["Sid"]: s for s in key.json("policy")["Statement"]}
    cloudwatch = statements["CloudWatchPublishesAlarms"]
    assert cloudwatch["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert cloudwatch["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert cloudwatch["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}
    subscription = stack.one("aws:sns/topicSubscription:TopicSubscription", "alarms-email").inputs
    assert subscription["protocol"] == "email" and subscription["endpoint"] == stack.config.alarm_email


def test_every_ecs_service_waits_for_both_roles_policies(stack: StackRun) -> None:
    """A task starts with the execution role's rights (image pull, logs, secrets) and runs with the task
    role's: the service must be created after both inline policies, which nothing else orders."""
    services = stack.of_type("aws:ecs/service:Service")
    assert services
    policies = {p.urn: p.name for p in stack.of_type("aws:iam/rolePolicy:RolePolicy")}
    for service in services:
        component = stack.parent_of(service)
        assert component is not None
        waits_for = {policies[urn] for urn in service.dependencies if urn in policies}
        expected = {f"{component.name}-execution-policy"}
        if any(p == f"{component.name}-task-policy" for p in policies.values()):
            expected.add(f"{component.name}-task-policy")
        assert expected <= waits_for, f"{service.name} waits only for {sorted(waits_for)}"
