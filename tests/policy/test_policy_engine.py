"""The pack as the Pulumi CLI talks to it: the analyzer service that `PolicyPack` serves over gRPC,
called with the protobuf messages the engine sends (policy config, resources with unknowns)."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import struct_pb2
from pulumi.runtime import proto
from pulumi_policy import EnforcementLevel
from pulumi_policy.policy import _PolicyAnalyzerServicer
from pulumi_policy.proxy import UNKNOWN_BOOLEAN_VALUE, UNKNOWN_STRING_VALUE

from policy.motion_policy import pack
from policy.motion_policy.rules import RULES_BY_NAME

DB = "aws:rds/instance:Instance"
BUCKET = "aws:s3/bucket:Bucket"


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def urn(type_: str, name: str, stack: str = "dev") -> str:
    return f"urn:pulumi:{stack}::motion::{type_}::{name}"


def analyzer(stack: str | None) -> _PolicyAnalyzerServicer:
    """The service `policy/__main__.py` starts, configured the way `--policy-pack-config` does it."""
    service = _PolicyAnalyzerServicer(
        pack.PACK_NAME, "0.1.0", pack.build_policies(), EnforcementLevel.MANDATORY
    )
    if stack is not None:
        config = {
            name: proto.PolicyConfig(enforcementLevel=proto.MANDATORY, properties=struct(props))
            for name, props in pack.pack_config(stack).items()
        }
        service.Configure(proto.ConfigureAnalyzerRequest(policyConfig=config), None)
    return service


def analyze(service: _PolicyAnalyzerServicer, type_: str, name: str, props: dict[str, Any]) -> set[str]:
    request = proto.AnalyzeRequest(
        type=type_,
        name=name,
        urn=urn(type_, name),
        properties=struct(props),
        options=proto.AnalyzerResourceOptions(),
    )
    return {d.policyName for d in service.Analyze(request, None).diagnostics}


DATABASE = {
    "engine": "postgres",
    "username": "motion_files",
    "manageMasterUserPassword": True,
    "storageEncrypted": True,
    "enabledCloudwatchLogsExports": ["postgresql"],
    "deletionProtection": False,
    "iamDatabaseAuthenticationEnabled": True,
}


def test_the_analyzer_announces_every_policy_as_mandatory() -> None:
    info = analyzer(None).GetAnalyzerInfo(None, None)
    assert info.name == "motion-aws" and info.supportsConfig
    assert [p.name for p in info.policies] == list(RULES_BY_NAME)
    for policy in info.policies:
        assert policy.enforcementLevel == proto.MANDATORY
        assert policy.severity != proto.POLICY_SEVERITY_UNSPECIFIED
        assert "stack" in policy.configSchema.properties
        assert policy.remediation_steps


@pytest.mark.parametrize(("stack", "reported"), [("production", True), ("dev", False), (None, False)])
def test_production_rules_follow_the_policy_config(stack: str | None, reported: bool) -> None:
    found = analyze(analyzer(stack), DB, "files-db", DATABASE)
    assert ("rds-deletion-protection" in found) is reported
    assert "rds-encrypted" not in found


def test_unknown_values_in_a_preview_are_not_violations() -> None:
    props = {**DATABASE, "storageEncrypted": UNKNOWN_BOOLEAN_VALUE, "username": UNKNOWN_STRING_VALUE}
    response = analyzer("dev").Analyze(
        proto.AnalyzeRequest(type=DB, name="db", urn=urn(DB, "db"), properties=struct(props)), None
    )
    assert not response.diagnostics  # not even CrossGuard's "can't run policy during preview"


def test_stack_policies_pair_resources_by_their_recorded_dependencies() -> None:
    bucket_urn = urn(BUCKET, "files")
    block_type = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
    block = proto.AnalyzerResource(
        type=block_type,
        name="files-pab",
        urn=urn(block_type, "files-pab"),
        properties=struct(
            {
                "bucket": UNKNOWN_STRING_VALUE,
                "blockPublicAcls": True,
                "blockPublicPolicy": True,
                "ignorePublicAcls": True,
                "restrictPublicBuckets": True,
            }
        ),
        propertyDependencies={"bucket": proto.AnalyzerPropertyDependencies(urns=[bucket_urn])},
    )
    bucket = proto.AnalyzerResource(type=BUCKET, name="files", urn=bucket_urn, properties=struct({}))

    def violations(*resources: proto.AnalyzerResource) -> dict[str, str]:
        response = analyzer("dev").AnalyzeStack(proto.AnalyzeStackRequest(resources=list(resources)), None)
        return {d.policyName: d.urn for d in response.diagnostics}

    assert violations(bucket)["s3-public-access-blocked"] == bucket_urn
    assert "s3-public-access-blocked" not in violations(bucket, block)
