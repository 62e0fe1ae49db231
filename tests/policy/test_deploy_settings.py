"""What the workflows need to run the real `pulumi preview` / `pulumi up`, checked against what the
program asks for (under mocks) and what the README tells a person to set up:

- every secret, variable and environment a workflow reads is in its header and in the README's table;
- every secret the program needs reaches every Pulumi step;
- every data-source call the program makes during a preview is allowed to the preview role;
- every AWS service the program creates resources in is named for the deploy role, and so is every
  action a resource's creation calls beyond managing the resource (invoking a function);
- every job that builds the images can build for their platform (QEMU + buildx on x86_64 runners).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from components.config.keys import PROVIDER_SECRETS
from policy.motion_policy.model import STACKS
from tests.infra.harness import StackRun, run_stack
from tests.policy.test_workflows import ROOT, WORKFLOW_FILES, load, pulumi_steps

README = (ROOT / "README.md").read_text()

# IAM actions each data source (invoke) needs, from the provider's source for that data source
# (hashicorp/terraform-provider-aws): an invoke missing here fails the test until it is added with
# its action, and the README's preview role then needs it too. `()` = the data source calls no API.
INVOKE_ACTIONS: dict[str, tuple[str, ...]] = {
    # internal/service/ec2/ec2_availability_zones_data_source.go: DescribeAvailabilityZones
    "aws:index/getAvailabilityZones:getAvailabilityZones": ("ec2:DescribeAvailabilityZones",),
    # internal/service/sts/caller_identity_data_source.go: sts:GetCallerIdentity needs no permission
    "aws:index/getCallerIdentity:getCallerIdentity": (),
    # internal/service/meta/region_data_source.go: looked up in the SDK's endpoints table, no API call
    "aws:index/getRegion:getRegion": (),
    # internal/service/meta/partition_data_source.go: from the provider's configuration
    "aws:index/getPartition:getPartition": (),
    # internal/service/elb/service_account_data_source.go: a static table of account IDs
    "aws:elb/getServiceAccount:getServiceAccount": (),
    # internal/service/ecr/authorization_token_data_source.go: GetAuthorizationToken
    "aws:ecr/getAuthorizationToken:getAuthorizationToken": ("ecr:GetAuthorizationToken",),
    # vercel/terraform-provider-vercel vercel/data_source_domain_config.go: Vercel's API with the
    # Vercel token, nothing of AWS
    "vercel:index/getDomainConfig:getDomainConfig": (),
}

# The IAM service prefix of each pulumi-aws module the program creates resources in (the module is the
# second part of a type token, `aws:<module>/...`). CloudWatch log groups live in the `cloudwatch`
# module but are the `logs` service; security-group rules (`vpc`) are EC2.
MODULE_SERVICES: dict[str, tuple[str, ...]] = {
    "apigatewayv2": ("apigateway",),
    "appautoscaling": ("application-autoscaling",),
    "cloudwatch": ("cloudwatch", "logs"),
    "dynamodb": ("dynamodb",),
    "ec2": ("ec2",),
    "vpc": ("ec2",),
    "ecr": ("ecr",),
    "ecs": ("ecs",),
    "elasticache": ("elasticache",),
    "lb": ("elasticloadbalancing",),
    "iam": ("iam",),
    "kms": ("kms",),
    "lambda": ("lambda",),
    "rds": ("rds",),
    "s3": ("s3",),
    "secretsmanager": ("secretsmanager",),
    "sesv2": ("ses",),
    "sns": ("sns",),
    "sqs": ("sqs",),
    "wafv2": ("wafv2",),
}


# Resources whose creation calls an API beyond creating the resource itself, from the provider's source
# for that resource (hashicorp/terraform-provider-aws): the deploy role needs these actions by name,
# since "create, change and delete the stack's resources" does not imply them.
CALLS_ON_CREATE: dict[str, tuple[str, ...]] = {
    # internal/service/lambda/invocation.go: Create (and replacement) calls Invoke, RequestResponse,
    # which IAM authorizes as lambda:InvokeFunction. What the function then does (the migration
    # runner's ecs:RunTask) is its own role's business, not the deploy role's.
    "aws:lambda/invocation:Invocation": ("lambda:InvokeFunction",),
    # Turning on WAF logging to a log group (PutLoggingConfiguration) has CloudWatch Logs add the log
    # group's resource policy with the caller's permissions: CloudWatch Logs User Guide, "Logs sent to
    # CloudWatch Logs", "User permissions".
    "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration": (
        "logs:CreateLogDelivery",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
    ),
}


def readme_table_names() -> set[str]:
    section = README[README.index("### What the workflows need") :]
    section = section[: section.index("\n### ", 1)]
    return set(re.findall(r"^\| `([A-Za-z_]+)` \|", section, re.MULTILINE))


def readme_role_row(role: str) -> str:
    row = re.search(rf"^\| {role}, one per stack \|.*$", README, re.MULTILINE)
    assert row, f"the README's IAM table has no row for the {role} role"
    return row.group(0)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def settings_read(workflow: dict[str, Any]) -> set[str]:
    """Secrets, variables and environments a workflow reads, with `vars[matrix.x]` resolved."""
    names: set[str] = set()
    for job in workflow["jobs"].values():
        matrix = job.get("strategy", {}).get("matrix", {})
        for text in _strings(job):
            names.update(re.findall(r"\b(?:secrets|vars)\.([A-Za-z_][A-Za-z0-9_]*)", text))
            for key in re.findall(r"\bvars\[matrix\.([A-Za-z0-9_-]+)\]", text):
                values = [entry[key] for entry in matrix.get("include", [])] or matrix.get(key, [])
                assert values, f"vars[matrix.{key}] has no matrix values to resolve"
                names.update(values)
        if "environment" in job:
            names.add(job["environment"])
    return names


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_every_setting_a_workflow_reads_is_in_its_header_and_the_readme(path: Any) -> None:
    workflow = load(path.name)
    header = path.read_text().split("\nname:", 1)[0]
    table = readme_table_names()
    for name in sorted(settings_read(workflow)):
        assert re.search(rf"\b{re.escape(name)}\b", header), f"{path.name}'s header does not list {name}"
        assert name in table, f"the README's settings table has no row for {name} (read by {path.name})"


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_every_secret_the_program_needs_reaches_every_pulumi_step(path: Any) -> None:
    for job_id, _, step in pulumi_steps(load(path.name)):
        env = step.get("env", {})
        for key, variable in PROVIDER_SECRETS.items():
            assert env.get(variable) == f"${{{{ secrets.{variable} }}}}", (
                f"{path.name} job {job_id}: the program needs {key}; pass {variable} from a secret"
            )


def test_the_readme_settings_table_names_nothing_the_workflows_do_not_read() -> None:
    read = set().union(*(settings_read(load(p.name)) for p in WORKFLOW_FILES)) | {"GITHUB_TOKEN"}
    assert readme_table_names() == read


@pytest.fixture(scope="module", params=STACKS)
def stack_run(request: pytest.FixtureRequest) -> StackRun:
    return run_stack(request.param)


def test_the_preview_role_may_make_every_call_the_program_makes(stack_run: StackRun) -> None:
    row = readme_role_row("preview")
    assert stack_run.calls
    for token in sorted(set(stack_run.calls)):
        assert token in INVOKE_ACTIONS, f"{token}: add the IAM actions it needs to INVOKE_ACTIONS"
        for action in INVOKE_ACTIONS[token]:
            assert f"`{action}`" in row, f"the README's preview role lacks {action} (for {token})"
    # And nothing beyond what the calls need: the preview role stays least privilege.
    granted = set(re.findall(r"`([a-z0-9-]+:[A-Za-z]+)`", row))
    needed = {a for token in set(stack_run.calls) for a in INVOKE_ACTIONS[token]}
    assert granted <= needed | {a for actions in INVOKE_ACTIONS.values() for a in actions}


def test_the_deploy_role_names_every_service_the_program_creates_resources_in(stack_run: StackRun) -> None:
    row = readme_role_row("deploy")
    modules = {r.type.split(":")[1].split("/")[0] for r in stack_run.resources if r.type.startswith("aws:")}
    modules.discard("index")  # the provider itself
    for module in sorted(modules):
        assert module in MODULE_SERVICES, f"aws:{module}: add its IAM service prefix to MODULE_SERVICES"
        for service in MODULE_SERVICES[module]:
            assert f"`{service}`" in row, f"the README's deploy role does not name {service} (aws:{module})"


def test_the_deploy_role_may_make_the_calls_resources_make_when_created(stack_run: StackRun) -> None:
    row = readme_role_row("deploy")
    for type_ in sorted({r.type for r in stack_run.resources} & set(CALLS_ON_CREATE)):
        for action in CALLS_ON_CREATE[type_]:
            assert f"`{action}`" in row, f"the README's deploy role lacks {action} (creating {type_})"


def test_every_call_on_create_is_made_by_some_stack() -> None:
    # An entry no stack uses is a stale row in the README's deploy role: drop both.
    used = {r.type for stack in STACKS for r in run_stack(stack).resources}
    assert set(CALLS_ON_CREATE) <= used


def image_platforms(stack_run: StackRun) -> set[str]:
    platforms: set[str] = set()
    for resource in stack_run.resources:
        if resource.type.split(":")[0] in ("docker", "docker-build") and resource.custom:

            def walk(value: Any) -> None:
                if isinstance(value, dict):
                    for key, item in value.items():
                        if key in ("platform", "platforms"):
                            platforms.update([item] if isinstance(item, str) else item)
                        else:
                            walk(item)

            walk(resource.inputs)
    return platforms


def runner_arch(job: dict[str, Any]) -> str:
    label = str(job["runs-on"])
    return "arm64" if label.endswith("-arm") or "arm64" in label else "amd64"


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_jobs_that_build_the_images_can_build_their_platform(path: Any) -> None:
    platforms = set().union(*(image_platforms(run_stack(s)) for s in STACKS))
    assert platforms == {"linux/arm64"}, platforms
    workflow = load(path.name)
    for job_id, job, pulumi_step in pulumi_steps(workflow):
        archs = {p.split("/")[1] for p in platforms}
        if archs == {runner_arch(job)}:
            continue
        before = job["steps"][: job["steps"].index(pulumi_step)]
        qemu = [s for s in before if str(s.get("uses", "")).startswith("docker/setup-qemu-action@")]
        buildx = [s for s in before if str(s.get("uses", "")).startswith("docker/setup-buildx-action@")]
        assert qemu and buildx, (
            f"{path.name} job {job_id} builds {platforms} on {runner_arch(job)} without QEMU"
        )
        emulated = str(qemu[0].get("with", {}).get("platforms", "all"))
        assert emulated == "all" or archs <= set(emulated.replace(" ", "").split(",")), emulated
