"""Frontend under mocks: the Vercel project and the variables built from the backend's outputs."""

from __future__ import annotations

from typing import Any

import pytest
from harness import ProgramFailed, StackRun, run_program, run_with, stack_config_values

from components.config import ConfigError

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


def test_targets_per_stack_and_public_values_not_sensitive(dev: StackRun, production: StackRun) -> None:
    for run, targets in ((dev, ["preview", "development"]), (production, ["production"])):
        for key, variable in variables(run).items():
            assert variable["targets"] == targets, key
            # VITE_* values ship inside the browser bundle; marking them sensitive would only hide them from people.
            assert variable["sensitive"] is False, key


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
    with pytest.raises(ProgramFailed) as failed:
        run_with("dev", **overrides)
    assert isinstance(failed.value.error, ConfigError) and expected in str(failed.value.error)
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
