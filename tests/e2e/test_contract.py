"""The environment contract: what each service reads equals what its cloud deployment sets (ECS task
definition environment + secrets, Lambda environment) in both stacks, and what `make run` sets."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import certifi
import pytest

from devstack.backend import Backend
from tests.infra.harness import StackRun, run_stack
from tests.recording import Recording

# Read by a service but deliberately not set by the cloud: optional knobs with defaults, and
# AWS_ENDPOINT_URL (local API only). Anything else a service reads must be set.
OPTIONAL = {
    # DATABASE_PASSWORD: with DATABASE_AUTH=iam it is read only to refuse it.
    "files": {"HOST", "AWS_ENDPOINT_URL", "DATABASE_PASSWORD"},
    "chat": {
        "HOST",
        "AWS_ENDPOINT_URL",
        "AWS_DEFAULT_REGION",
        "CHAT_PERSIST",
        "MAX_MESSAGE_BYTES",
        "SEND_RATE_PER_SECOND",
        "SEND_RATE_BURST",
        "CHAT_MAX_BUFFERED_BYTES",
        "CHAT_PING_INTERVAL_SECONDS",
        "CHAT_SHUTDOWN_GRACE_SECONDS",
    },
    "mail-api": {"SENDER_ADDRESS", "SES_CONFIGURATION_SET", "WEBHOOK_SECRET_ARN"},
    "mailer": {
        "MAIL_QUEUE_URL",
        "MAX_RECIPIENTS",
        "USERS_TABLE",
        "WEBHOOK_SECRET_ARN",
        "QUOTAS_TABLE",
        "QUOTA_PER_HOUR",
        "QUOTA_PER_DAY",
    },
    # The SES events handler reads the messages table only.
    "mail-events": {
        "MAIL_QUEUE_URL",
        "MAX_RECIPIENTS",
        "USERS_TABLE",
        "WEBHOOK_SECRET_ARN",
        "QUOTAS_TABLE",
        "QUOTA_PER_HOUR",
        "QUOTA_PER_DAY",
        "SENDER_ADDRESS",
        "SES_CONFIGURATION_SET",
    },
    "mail-webhook": {
        "MESSAGES_TABLE",
        "MAIL_QUEUE_URL",
        "SENDER_ADDRESS",
        "SES_CONFIGURATION_SET",
        "MAX_RECIPIENTS",
        "QUOTAS_TABLE",
        "QUOTA_PER_HOUR",
        "QUOTA_PER_DAY",
    },
}


SERVICES = sorted(OPTIONAL)
# What ECS itself gives a task with a role (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI, not in the task
# definition), which the local backend gives through the credentials endpoint stand-in.
ECS_PROVIDED = {"AWS_CONTAINER_CREDENTIALS_FULL_URI"}
# Files that exist only in the image: a real file of the same kind stands in for them here.
IMAGE_FILES = {"DATABASE_SSLROOTCERT": certifi.where()}


def reads(parse: Callable[[Mapping[str, str]], object], values: Mapping[str, str]) -> set[str]:
    env = Recording(values)
    parse(env)  # must succeed: the deployed values are valid settings
    assert Recording.ITERATED not in env.asked, "the parser iterated the whole environment"
    return env.asked


def parsers() -> dict[str, Callable[[Mapping[str, str]], object]]:
    from chat_service.settings import Settings as ChatSettings
    from files_service.settings import Settings as FilesSettings
    from mailer.settings import Settings as MailSettings

    return {
        "files": FilesSettings.from_env,
        "chat": ChatSettings.from_env,
        "mail-api": lambda env: MailSettings.from_env("api", env),
        "mailer": lambda env: MailSettings.from_env("worker", env),
        "mail-webhook": lambda env: MailSettings.from_env("webhook", env),
        "mail-events": lambda env: MailSettings.from_env("events", env),
    }


def container_env(run: StackRun, name: str) -> dict[str, str]:
    (container,) = run.one("aws:ecs/taskDefinition:TaskDefinition", name).json("containerDefinitions")
    env = {e["name"]: e["value"] for e in container["environment"]}
    # A secret's value arrives at start-up; any valid-looking value stands in for it here.
    env.update({s["name"]: "from-secrets-manager" for s in container["secrets"]})
    return env


def cloud_envs(run: StackRun) -> dict[str, list[dict[str, str]]]:
    # The task runner has no environment (its event says everything); the mailer functions read theirs.
    lambdas = {
        f.inputs["handler"]: f.inputs.get("environment", {}).get("variables", {})
        for f in run.of_type("aws:lambda/function:Function")
    }
    return {
        "files": [container_env(run, "files-upload"), container_env(run, "files-download")],
        "chat": [container_env(run, "chat-service")],
        "mail-api": [lambdas["mailer.api.handler"]],
        "mailer": [lambdas["mailer.worker.handler"]],
        "mail-webhook": [lambdas["mailer.webhook.handler"]],
        "mail-events": [lambdas["mailer.ses_events.handler"]],
    }


def local_envs(backend: Backend) -> dict[str, list[dict[str, str]]]:
    assert backend.state is not None
    envs = backend.service_environments(backend.aws_resources)
    return {
        "files": [envs["upload"], envs["download"]],
        "chat": [envs["chat-a"], envs["chat-b"]],
        "mail-api": [envs["mail-api"]],
        "mailer": [envs["mailer"]],
        "mail-webhook": [envs["mail-webhook"]],
        "mail-events": [envs["mail-events"]],
    }


@pytest.mark.parametrize("stack", ["dev", "production"])
@pytest.mark.parametrize("service", SERVICES)
def test_cloud_sets_exactly_what_the_service_reads(stack: str, service: str) -> None:
    for env in cloud_envs(run_stack(stack))[service]:
        here = {**env, **{k: v for k, v in IMAGE_FILES.items() if k in env}}
        read = reads(parsers()[service], {**here, "AWS_REGION": env.get("AWS_REGION", "us-east-1")})
        assert set(env) <= read, f"set but never read: {set(env) - read}"
        assert read - set(env) <= OPTIONAL[service] | {"AWS_REGION"}, (
            f"read but not set: {read - set(env) - OPTIONAL[service]}"
        )


@pytest.mark.parametrize("service", SERVICES)
def test_make_run_sets_the_same_names_as_the_cloud(backend: Backend, service: str) -> None:
    cloud = {name for env in cloud_envs(run_stack("dev"))[service] for name in env}
    for env in local_envs(backend)[service]:
        names = set(env) - ECS_PROVIDED
        assert names == cloud, f"local only: {names - cloud}; cloud only: {cloud - names}"
        reads(parsers()[service], env)


def test_each_files_role_is_told_its_role(backend: Backend) -> None:
    dev = run_stack("dev")
    assert container_env(dev, "files-upload")["FILES_ROLE"] == "upload"
    assert container_env(dev, "files-download")["FILES_ROLE"] == "download"
    local = local_envs(backend)["files"]
    assert [env["FILES_ROLE"] for env in local] == ["upload", "download"]


# Values that differ locally on purpose: the Clerk stand-in, local servers and their credentials,
# ports, the bucket's generated suffix and the local API's queue URL format.
LOCAL_VALUES = {
    "AUTH_ISSUER",
    "AUTH_JWKS_URL",
    "AUTH_AUDIENCE",
    "DATABASE_HOST",
    "DATABASE_PORT",
    "DATABASE_SSLROOTCERT",  # the local CA, where the image holds the RDS bundle
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_TLS",
    "REDIS_AUTH_TOKEN",
    "PORT",
    "FILES_BUCKET",
    "MAIL_QUEUE_URL",
    "WEBHOOK_SECRET_ARN",  # Secrets Manager appends a random suffix to the secret's name
}


@pytest.mark.parametrize("service", SERVICES)
def test_make_run_mirrors_the_dev_stack_values(backend: Backend, service: str) -> None:
    for cloud, local in zip(
        cloud_envs(run_stack("dev"))[service], local_envs(backend)[service], strict=False
    ):
        same = {k: v for k, v in cloud.items() if k not in LOCAL_VALUES}
        assert {k: local[k] for k in same} == same
