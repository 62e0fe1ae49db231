"""The virtualenvs the workflows build hold what the Pulumi Python language host needs to run in them.

What the host needs, from pulumi/pulumi sdk/python/cmd/pulumi-language-python/main.go:
- `parseOptions` reads the runtime options `virtualenv`, `toolchain` (pip | poetry | uv) and
  `typechecker` (mypy | pyright);
- `Run`, before the program: with a typechecker it runs `<venv>/bin/python -m <typechecker>`
  (mypy gets `--exclude <venv relative to the program>`) on the program directory, as its working
  directory, after `checkForPackage` looked the package up with `python -m pip list` in the venv and
  failed ("The typechecker option is set to mypy, but mypy is not installed") when it is absent;
- the program itself runs through the `pulumi-language-python-exec` shim, which imports `pulumi`;
- a policy pack (`RunPlugin`, analyzer kind) runs its `__main__.py`, which imports `pulumi_policy`.
sdk/python/toolchain/pip.go: when the CLI creates a missing virtualenv itself it installs
`requirements.txt` of the project directory; an existing one (as the workflows make) is used as is.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deps.lockfiles import ROOT, Lock, read_lock, relative

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def host_needs(project_file: Path, *, pack: bool) -> tuple[Path, set[str]]:
    """The virtualenv a Pulumi.yaml / PulumiPolicy.yaml names and the packages the host needs in it."""
    runtime = yaml.safe_load(project_file.read_text())["runtime"]
    assert runtime["name"] == "python"
    options = runtime.get("options", {})
    assert options.get("toolchain", "pip") == "pip", "these checks read pip installs only"
    assert options.get("virtualenv"), f"{relative(project_file)} names no virtualenv"
    needs = {"pulumi"}
    if options.get("typechecker"):
        assert options["typechecker"] in ("mypy", "pyright")
        needs.add(options["typechecker"])
    if pack:
        needs.add("pulumi-policy")
    return (project_file.parent / options["virtualenv"]).resolve(), needs


@dataclass
class Install:
    venv: Path
    files: list[Path]
    require_hashes: bool


def installs_before(steps: list[dict[str, Any]]) -> list[Install]:
    """The `<venv>/bin/python -m pip install ... -r FILE` (or `<venv>/bin/pip install`) commands of
    the `run:` scripts of these steps, in a job whose working directory is the checkout."""
    found = []
    for step in steps:
        script = str(step.get("run", "")).replace("\\\n", " ")
        assert "working-directory" not in step, "paths below are read relative to the checkout"
        for line in script.splitlines():
            words = shlex.split(line, comments=True)
            if not words or not words[0].endswith(("/bin/python", "/bin/pip")):
                continue
            rest = words[1:]
            if words[0].endswith("/bin/python"):
                if rest[:2] != ["-m", "pip"]:
                    continue
                rest = rest[2:]
            if not rest or rest[0] != "install":
                continue
            venv = (ROOT / words[0]).parent.parent.resolve()
            files = [ROOT / rest[i + 1] for i, word in enumerate(rest) if word in ("-r", "--requirement")]
            found.append(Install(venv, files, "--require-hashes" in rest))
    return found


def missing(needs: set[str], venv: Path, installs: list[Install], python: str) -> list[str]:
    """What the host needs in `venv` that these installs do not put there from hashed locks."""
    problems = []
    into = [i for i in installs if i.venv == venv]
    if not into:
        return [f"nothing is installed into {venv}"]
    provided: set[str] = set()
    for install in into:
        if not install.require_hashes:
            problems.append(f"an install into {relative(venv)} lacks --require-hashes")
        for file in install.files:
            lock: Lock = read_lock(file)
            if not lock.command:
                problems.append(f"{relative(file)} is not a lock")
            provided |= {p.name for p in lock.pins if p.applies_to(python)}
    problems += [f"{name} is not installed into {relative(venv)}" for name in sorted(needs - provided)]
    return problems


def deploying_jobs(path: Path) -> list[tuple[str, dict[str, Any], int, dict[str, Any]]]:
    workflow = yaml.safe_load(path.read_text())
    found = []
    for job_id, job in workflow["jobs"].items():
        for index, step in enumerate(job.get("steps", [])):
            if str(step.get("uses", "")).startswith("pulumi/actions@"):
                python = job.get("env", {}).get("PYTHON_VERSION") or workflow["env"]["PYTHON_VERSION"]
                found.append((job_id, job, index, {**step, "python": python}))
    return found


CASES = [(path, job_id) for path in WORKFLOWS for job_id, *_ in deploying_jobs(path)]


def test_every_workflow_with_a_pulumi_step_is_checked() -> None:
    assert {(p.name, j) for p, j in CASES} == {
        ("deploy.yml", "dev"),
        ("deploy.yml", "production"),
        ("pull-request.yml", "preview"),
    }


@pytest.mark.parametrize(("path", "job_id"), CASES, ids=[f"{p.name}:{j}" for p, j in CASES])
def test_the_job_installs_what_the_language_host_needs(path: Path, job_id: str) -> None:
    ((_, job, index, step),) = [c for c in deploying_jobs(path) if c[0] == job_id]
    installs = installs_before(job["steps"][:index])
    inputs = step["with"]
    program = ROOT / inputs.get("work-dir", ".")
    venv, needs = host_needs(program / "Pulumi.yaml", pack=False)
    assert needs >= {"pulumi", "mypy"}
    problems = missing(needs, venv, installs, step["python"])
    for pack in str(inputs.get("policyPacks", "")).split():
        pack_venv, pack_needs = host_needs(ROOT / pack / "PulumiPolicy.yaml", pack=True)
        problems += missing(pack_needs, pack_venv, installs, step["python"])
    assert not problems, f"{path.name} job {job_id}: {problems}"


def test_the_check_catches_a_missing_typechecker_and_an_unhashed_install(tmp_path: Path) -> None:
    """Guards the test above with the program's real options and lock, minus mypy."""
    venv, needs = host_needs(ROOT / "Pulumi.yaml", pack=False)
    lock = tmp_path / "requirements.txt"
    lines = (ROOT / "requirements.txt").read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("mypy=="))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith(" "))
    lock.write_text("".join(lines[:start] + lines[end:]))
    assert missing(needs, venv, [Install(venv, [lock], True)], "3.11") == ["mypy is not installed into .venv"]
    assert missing(needs, venv, [Install(venv, [ROOT / "requirements.txt"], False)], "3.11") == [
        "an install into .venv lacks --require-hashes"
    ]
    assert missing(needs, venv, [], "3.11") == [f"nothing is installed into {venv}"]


def test_the_parser_reads_the_install_commands_the_workflows_use() -> None:
    steps = [
        {
            "run": "python -m venv .venv\n.venv/bin/python -m pip install --require-hashes -r requirements.txt\n"
        },
        {"run": "policy/.venv/bin/pip install -r policy/requirements.txt  # comment\n"},
        {"uses": "actions/checkout@v6"},
    ]
    assert installs_before(steps) == [
        Install(ROOT / ".venv", [ROOT / "requirements.txt"], True),
        Install(ROOT / "policy" / ".venv", [ROOT / "policy" / "requirements.txt"], False),
    ]
