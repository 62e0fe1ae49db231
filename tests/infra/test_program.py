"""Whole-program properties: components own every resource, one tagged provider, outputs."""

from __future__ import annotations

from tests.infra.harness import StackRun

COMPONENT_TYPES = {
    "motion:network:Network",
    "motion:platform:Platform",
    "motion:mailing:Mailing",
    "motion:frontend:Frontend",
    "motion:files:Files",
    "motion:chat:Chat",
    "motion:lambda:SdkLayer",
    "motion:dns:Records",
}


def test_every_cloud_resource_belongs_to_a_component(stack: StackRun) -> None:
    orphans = [
        r.name
        for r in stack.resources
        if r.custom and not r.type.startswith("pulumi:providers:") and stack.component_of(r) is None
    ]
    assert orphans == []
    assert {r.type for r in stack.resources} >= COMPONENT_TYPES


def test_components_have_motion_type_tokens(stack: StackRun) -> None:
    for resource in stack.resources:
        if not resource.custom:
            assert resource.type.startswith("motion:") and resource.type.count(":") == 2, resource.type


def test_one_provider_with_default_tags_used_by_every_aws_resource(stack: StackRun) -> None:
    (provider,) = stack.of_type("pulumi:providers:aws")
    assert provider.inputs["region"] == "us-east-1"
    # Provider inputs are config values, so nested ones arrive JSON-encoded.
    assert provider.json("defaultTags")["tags"] == {
        "project": "motion",
        "stack": stack.stack,
        "managed-by": "pulumi",
    }
    for resource in stack.resources:
        if resource.custom and resource.type.startswith("aws:"):
            assert resource.provider is not None and resource.provider.startswith(provider.urn), resource.name


def test_outputs_a_person_needs_after_pulumi_up(stack: StackRun) -> None:
    needed = {
        "baseUrl",
        "filesServiceUrl",
        "chatWebSocketUrl",
        "mailApiUrl",
        "filesBucket",
        "mailQueueUrl",
        "mailDeadLetterQueueUrl",
        "mailMessagesTable",
        "chatMessagesTable",
        "sesDkimRecords",
        "dnsRecords",
        "frontendProjectName",
        "frontendProjectId",
    }
    assert needed <= set(stack.outputs)
    assert all(value not in (None, "", []) for value in stack.outputs.values())
