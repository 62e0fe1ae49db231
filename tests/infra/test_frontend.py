"""Frontend under mocks: the Vercel project and the variables built from the backend's outputs."""

from __future__ import annotations

from typing import Any

import pytest

from components.config.loader import ConfigError
from tests.infra.harness import ProgramFailed, StackRun, run_program, run_with, stack_config_values

VARIABLE = "vercel:index/projectEnvironmentVariable:ProjectEnvironmentVariable"


def variables(run: StackRun) -> dict[str, dict]:
    return {v.inputs["key"]: v.inputs for v in run.of_type(VARIABLE)}


def test_one_vite_project_per_stack_from_config(stack: StackRun) -> None:
    project = stack.one("vercel:index/project:Project").inputs
    cfg = stack.config.frontend
    assert project["name"] == cfg.vercel_project_name and project["framework"] == "vite"
    assert project["rootDirectory"] == "frontend"
    assert project["gitRepository"] == {
        "type": "github",
        "repo": cfg.git_repository,
        "productionBranch": "main",
    }
    assert stack.outputs["frontendProjectName"] == cfg.vercel_project_name


def test_variables_are_built_from_the_backend_outputs(stack: StackRun) -> None:
    values = {k: v["value"] for k, v in variables(stack).items()}
    base = stack.outputs["baseUrl"]
    assert values["VITE_API_BASE_URL"] == base
    assert values["VITE_FILES_SERVICE_URL"] == f"{base}/files/v1" == stack.outputs["filesServiceUrl"]
    assert values["VITE_MAIL_API_URL"] == stack.outputs["mailApiUrl"]
    assert values["VITE_CLERK_PUBLISHABLE_KEY"] == stack.config.auth.clerk_publishable_key
    assert values["VITE_CHAT_WS_URL"] == stack.outputs["chatWebSocketUrl"]
    for variable in variables(stack).values():
        assert variable["projectId"] == stack.outputs["frontendProjectId"]


def test_chat_url_is_wss_only_with_a_certificate(dev: StackRun, production: StackRun) -> None:
    assert variables(dev)["VITE_CHAT_WS_URL"]["value"].startswith("ws://")
    assert variables(production)["VITE_CHAT_WS_URL"]["value"] == "wss://api.motion.example/chat/ws"


# The VITE_* variables the frontend reads: every one must reach every build (README, "The frontend
# on Vercel"). Listed here, not taken from the program, so a variable the program drops is caught.
VITE_VARIABLES = {
    "VITE_API_BASE_URL",
    "VITE_FILES_SERVICE_URL",
    "VITE_CHAT_WS_URL",
    "VITE_MAIL_API_URL",
    "VITE_CLERK_PUBLISHABLE_KEY",
    "VITE_MOTION_STACK",
}
PROJECT = "vercel:index/project:Project"
DOMAIN = "vercel:index/projectDomain:ProjectDomain"


def deployed_targets(run: StackRun) -> set[str]:
    """The Vercel environments the stack's project deploys, read from the project as registered:
    a project with a Git repository deploys its production branch to production (provider:
    `git_repository.production_branch`), and every other branch to preview unless
    `preview_deployments_disabled`; `development` is what local runs pull (`vercel env pull`)."""
    project = run.one(PROJECT).inputs
    targets = {"production"} if project.get("gitRepository") else set()
    if not project.get("previewDeploymentsDisabled", False):
        targets.add("preview")
    if any(o.startswith(("http://localhost", "http://127.0.0.1")) for o in run.config.frontend.origins):
        targets.add("development")
    return targets


def pairs(run: StackRun) -> set[tuple[str, str]]:
    return {(v.inputs["key"], target) for v in run.of_type(VARIABLE) for target in v.inputs["targets"]}


def test_each_stack_sets_every_vite_variable_for_exactly_the_targets_its_project_deploys(
    dev: StackRun, production: StackRun
) -> None:
    # The model, per stack: dev deploys main to production on its domain and serves local runs;
    # production deploys main to production only; neither builds previews.
    for run, model in ((dev, {"production", "development"}), (production, {"production"})):
        assert deployed_targets(run) == model, run.stack
        assert set(run.config.frontend.targets) == model, run.stack
        assert pairs(run) == {(key, target) for key in VITE_VARIABLES for target in model}, run.stack
        for key, variable in variables(run).items():
            # VITE_* values ship inside the browser bundle; marking them sensitive would only hide them from people.
            assert variable["sensitive"] is False, key


def test_no_target_the_project_deploys_lacks_a_vite_variable(stack: StackRun) -> None:
    found = pairs(stack)
    for target in deployed_targets(stack):
        missing = {key for key in VITE_VARIABLES if (key, target) not in found}
        assert not missing, f"{stack.stack}: {target} deployments build without {sorted(missing)}"


def test_every_configured_domain_is_attached_to_the_stacks_project(stack: StackRun) -> None:
    project = stack.one(PROJECT)
    domains = stack.of_type(DOMAIN)
    assert sorted(d.inputs["domain"] for d in domains) == sorted(stack.config.frontend.domains)
    for domain in domains:
        assert domain.inputs["projectId"] == project.id and domain.parent == project.parent
        # No branch: the domain serves the production deployments, the ones with the variables.
        assert "gitBranch" not in domain.inputs and "customEnvironmentId" not in domain.inputs
    assert stack.outputs["frontendDomains"] == list(stack.config.frontend.domains)


def test_the_domains_records_are_among_the_records_to_publish(stack: StackRun) -> None:
    records = [r for r in stack.outputs["dnsRecords"] if r["purpose"] == "frontend -> Vercel"]
    assert {r["name"] for r in records} == set(stack.config.frontend.domains)
    # An A record per address Vercel recommends (mocked as its guide's 76.76.21.21), valid at an apex.
    assert all(r["type"] == "A" and r["value"] == "76.76.21.21" for r in records)
    assert stack.calls.count("vercel:index/getDomainConfig:getDomainConfig") == len(
        stack.config.frontend.domains
    )


def test_the_stacks_own_distinct_projects_and_domains(dev: StackRun, production: StackRun) -> None:
    # Vercel attaches a domain to one project ("already in use by another project": 409).
    assert dev.config.frontend.vercel_project_name != production.config.frontend.vercel_project_name
    assert not set(dev.config.frontend.domains) & set(production.config.frontend.domains)


def test_a_backend_url_change_updates_the_variables() -> None:
    before = variables(run_with("production"))["VITE_FILES_SERVICE_URL"]["value"]
    after = variables(run_with("production", domain="api2.motion.example"))["VITE_FILES_SERVICE_URL"]["value"]
    assert before == "https://api.motion.example/files/v1" and after == "https://api2.motion.example/files/v1"


def test_the_vercel_provider_gets_the_token_as_a_secret(stack: StackRun) -> None:
    (provider,) = stack.of_type("pulumi:providers:vercel")
    assert "apiToken" in provider.secret_paths


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"vercelProjectName": "Motion App!"}, "motion:vercelProjectName: 'Motion App!'"),
        # The provider's rule: [a-z0-9-], 1 to 52 characters (resource_project.go).
        ({"vercelProjectName": "motion.app"}, "motion:vercelProjectName: 'motion.app'"),
        ({"vercelProjectName": "m" * 53}, f"motion:vercelProjectName: '{'m' * 53}'"),
        (
            {"frontendTargets": ["development"]},
            "motion:frontendTargets: ['development']: the project deploys",
        ),
        (
            {"frontendTargets": ["production", "preview"]},
            "motion:frontendTargets: ['production', 'preview']: preview deployments live on generated URLs",
        ),
        (
            {"frontendTargets": ["production", "development"], "extraCorsOrigins": []},
            "motion:frontendTargets: ['production', 'development']: development runs on localhost",
        ),
        (
            {"frontendTargets": ["production", "production"]},
            "motion:frontendTargets: ['production', 'production'] lists a target more than once",
        ),
        (
            {"frontendDomains": ["dev.motion.example", "dev.motion.example"]},
            "motion:frontendDomains: ['dev.motion.example'] listed more than once",
        ),
        ({"frontendDomains": ["https://dev.motion.example"]}, "are not DNS names"),
        (
            {"frontendGitRepository": "just-a-name"},
            "motion:frontendGitRepository: 'just-a-name' (allowed: owner/name)",
        ),
        ({"frontendTargets": ["staging"]}, "motion:frontendTargets: ['staging']"),
        ({"frontendDomains": [], "extraCorsOrigins": []}, "motion:frontendDomains: no frontend origin"),
        (
            {"extraCorsOrigins": ["localhost:5173"]},
            "motion:extraCorsOrigins: ['localhost:5173'] are not origins",
        ),
    ],
)
def test_bad_frontend_config_is_named(overrides: dict[str, Any], expected: str) -> None:
    """Each fails before any resource is registered, naming the key."""
    with pytest.raises(ProgramFailed) as failed:
        run_with("dev", **overrides)
    assert isinstance(failed.value.error, ConfigError) and expected in str(failed.value.error)
    assert failed.value.registered == []


def test_a_frontend_domain_cannot_be_the_api_host() -> None:
    with pytest.raises(ProgramFailed) as failed:
        run_with("production", frontendDomains=["api.motion.example"])
    assert "motion:frontendDomains: api.motion.example is the API host" in str(failed.value.error)
    assert failed.value.registered == []


def test_missing_frontend_config_is_named() -> None:
    config = {k: v for k, v in stack_config_values("dev").items() if k != "motion:vercelProjectName"}
    with pytest.raises(ProgramFailed) as failed:
        run_program("dev", config)
    assert "motion:vercelProjectName: is required" in str(failed.value.error)


def test_missing_vercel_token_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VERCEL_API_TOKEN", raising=False)
    config = {**stack_config_values("dev"), "vercel:apiToken": ""}
    with pytest.raises(ProgramFailed) as failed:
        run_program("dev", config)
    assert "vercel:apiToken: is required" in str(failed.value.error)
    assert failed.value.registered == []
