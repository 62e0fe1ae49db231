"""Every dependency set is a human-edited `requirements.in` (ranges) plus its lock, `requirements.txt`
(exact versions with hashes, `make lock`). These tests fail when a range and its lock disagree, when
a lock lost its hashes or its reasons, and when what ships differs from what the tests run."""

from __future__ import annotations

import json
import re
import shlex
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deps.lockfiles import (
    DEV_LOCK,
    ROOT,
    Lock,
    Pin,
    environment,
    lock_for,
    read_lock,
    read_source,
    relative,
    source_files,
)

SOURCES = source_files()
# The sets named in the README; a new requirements.in must come with its lock and a `make lock` line.
EXPECTED = {
    "requirements.in",
    "requirements-dev.in",
    "policy/requirements.in",
    "app_code/files/requirements.in",
    "app_code/chat/requirements.in",
    "app_code/mailer/requirements.in",
}
ids = [relative(s) for s in SOURCES]


def lock_recipe() -> list[str]:
    """The commands of the Makefile's `lock` target, with $(UV_COMPILE) expanded the way uv writes it
    into a header (uv leaves --quiet and --upgrade out of the header)."""
    makefile = (ROOT / "Makefile").read_text()
    variable = re.search(r"^UV_COMPILE = (.*)$", makefile, re.M)
    recipe = re.search(r"^lock:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert variable and recipe, "the Makefile has no UV_COMPILE variable or lock target"
    compile_words = [
        w for w in shlex.split(variable.group(1)) if w not in ("--quiet", "$(if", "$(UPGRADE),--upgrade)")
    ]
    compile_words[0] = "uv"  # $(BIN)/uv
    return [
        line.strip().replace("$(UV_COMPILE)", " ".join(compile_words))
        for line in recipe.group(1).splitlines()
    ]


def test_every_set_has_its_lock() -> None:
    assert set(ids) == EXPECTED
    for source in SOURCES:
        assert lock_for(source).is_file(), f"{relative(source)} has no lock; run `make lock`"


@pytest.mark.parametrize("source", SOURCES, ids=ids)
def test_the_header_names_the_command_that_regenerates_the_lock(source: Path) -> None:
    lock = read_lock(lock_for(source))
    assert lock.command.startswith("uv pip compile "), f"{relative(lock.path)} has no uv header"
    words = shlex.split(lock.command)
    assert f"--output-file={relative(lock.path)}" in words and relative(source) in words
    # Universal (valid on every OS/CPU we run) and hashed; no option Renovate's pip-compile manager
    # rejects (allowedOptions in renovatebot/renovate lib/modules/manager/pip-compile/common.ts).
    assert {"--universal", "--generate-hashes"} <= set(words)
    assert not any(w.startswith(("--python-platform", "-o", "--cache-dir", "--no-header")) for w in words)
    assert lock.command in lock_recipe(), f"`make lock` does not run the command in {relative(lock.path)}"


@pytest.mark.parametrize("source", SOURCES, ids=ids)
def test_every_range_is_pinned_in_the_lock_by_a_version_it_allows(source: Path) -> None:
    lock = read_lock(lock_for(source))
    problems = range_problems(read_source(source).requirements, lock)
    assert not problems, f"{relative(lock.path)} disagrees with its ranges (run `make lock`): {problems}"


def range_problems(requirements: list[Requirement], lock: Lock) -> list[str]:
    problems = []
    env = environment(lock.python_version)
    for requirement in requirements:
        if requirement.marker is not None and not requirement.marker.evaluate(env):
            continue
        versions = lock.versions(requirement.name)
        if not versions:
            problems.append(f"{requirement} is not pinned")
        for version in sorted(versions):
            if not requirement.specifier.contains(version, prereleases=True):
                problems.append(f"{requirement} excludes the pinned {version}")
        for extra in sorted(requirement.extras):
            problems += [
                f"{requirement}: {name} (extra {extra}) is not pinned"
                for name in extra_needs(requirement.name, extra)
                if not lock.versions(name)
            ]
    return problems


def extra_needs(name: str, extra: str) -> set[str]:
    """What an extra adds, read from the installed distribution (the dev venv installs the same
    versions as every lock, which test_what_ships_is_what_is_tested checks)."""
    needs = set()
    for line in metadata.requires(name) or []:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is not None and marker.evaluate({"extra": extra}) and not marker.evaluate({"extra": ""}):
            needs.add(requirement.name)
    return needs


@pytest.mark.parametrize("source", SOURCES, ids=ids)
def test_every_pin_carries_hashes_and_a_reason(source: Path) -> None:
    lock = read_lock(lock_for(source))
    assert lock.pins and not lock.stray, f"{relative(lock.path)}: unexpected lines {lock.stray}"
    problems = reason_problems(lock, read_source(source).files)
    assert not problems, f"{relative(lock.path)}: {problems}"


def reason_problems(lock: Lock, sources: list[Path]) -> list[str]:
    """Pins without a sha256 hash, or without a reason: a `-r` of this set's own files or a package
    of this lock that needs it. `-c requirements-dev.txt` alone is no reason (it only picks the version)."""
    included = {f"-r {relative(s)}" for s in sources}
    pinned = {p.name for p in lock.pins}
    problems = []
    for pin in lock.pins:
        if not pin.hashes:
            problems.append(f"{pin.name}=={pin.version} has no --hash=sha256:")
        reasons = [v for v in pin.via if v in included or canonicalize_name(v) in pinned]
        if not reasons:
            problems.append(f"{pin.name}=={pin.version} is pinned for no reason ({pin.via})")
    return problems


def test_the_checks_catch_a_drifted_lock(tmp_path: Path) -> None:
    """Guards the tests above: a lock that lost a hash, a reason, or the range's version fails them."""
    lock = read_lock(ROOT / "app_code" / "files" / "requirements.txt")
    source = read_source(ROOT / "app_code" / "files" / "requirements.in")
    starlette = next(p for p in lock.pins if p.name == "starlette")
    starlette.version = "0.9.0"
    assert range_problems(source.requirements, lock) == ["starlette~=1.10 excludes the pinned 0.9.0"]
    lock.pins.append(Pin("leftover", "1.0", None, hashes=[], via=["-c requirements-dev.txt"]))
    assert reason_problems(lock, source.files) == [
        "leftover==1.0 has no --hash=sha256:",
        "leftover==1.0 is pinned for no reason (['-c requirements-dev.txt'])",
    ]
    lock.pins = [p for p in lock.pins if p.name not in ("starlette", "leftover")]
    assert range_problems(source.requirements, lock) == ["starlette~=1.10 is not pinned"]


@pytest.mark.parametrize("source", [s for s in SOURCES if lock_for(s) != DEV_LOCK], ids=lambda s: relative(s))
def test_what_ships_is_what_is_tested(source: Path) -> None:
    """Every package pinned both here and in the dev lock (what `make test` installs) has the same
    version on the Python this lock serves, so the services and the program run what was tested."""
    lock = read_lock(lock_for(source))
    dev = read_lock(DEV_LOCK)
    python = lock.python_version
    differ = {
        pin.name: (lock.versions(pin.name, python), dev.versions(pin.name, python))
        for pin in lock.pins
        if dev.versions(pin.name) and lock.versions(pin.name, python) != dev.versions(pin.name, python)
    }
    assert not differ, f"{relative(lock.path)} and requirements-dev.txt pin different versions: {differ}"


def test_the_dev_venv_runs_the_dev_lock() -> None:
    """The virtualenv these tests run in was installed from the dev lock (the `make test` stamp)."""
    dev = read_lock(DEV_LOCK)
    wrong = {}
    for pin in dev.pins:
        if pin.applies_to():
            try:
                installed = metadata.version(pin.name)
            except metadata.PackageNotFoundError:
                installed = "missing"
            if installed != pin.version:
                wrong[pin.name] = (pin.version, installed)
    assert not wrong, f"installed versions differ from requirements-dev.txt (lock, installed): {wrong}"


@pytest.mark.parametrize("service", ["files", "chat"])
def test_images_install_their_lock_with_hashes_and_nothing_else(service: str) -> None:
    dockerfile = (ROOT / "app_code" / service / "Dockerfile").read_text().replace("\\\n", " ")
    copies = re.findall(rf"^COPY {service}/requirements\.txt (\S+)$", dockerfile, re.M)
    installs = re.findall(r"^RUN pip install (.*?)-r (\S+)", dockerfile, re.M)
    assert len(copies) == 1 and len(installs) == 1
    options, installed = installs[0]
    assert installed == copies[0]
    # --no-deps: the lock lists every dependency already; --require-hashes: no unhashed download.
    assert {"--no-deps", "--require-hashes"} <= set(options.split())
    assert read_lock(ROOT / "app_code" / service / "requirements.txt").python_version == "3.13"
    assert re.search(r"^FROM python:3\.13-slim$", dockerfile, re.M), "the lock is resolved for 3.13"


def test_renovate_keeps_every_lock_and_the_actions_moving() -> None:
    """Renovate's pip-compile manager finds lock files by managerFilePatterns (none by default) and
    reads each one's header; github-actions must stay among the enabled managers."""
    config = json.loads((ROOT / "renovate.json").read_text())
    assert {"pip-compile", "github-actions"} <= set(config["enabledManagers"])
    patterns = [re.compile(p.strip("/")) for p in config["pip-compile"]["managerFilePatterns"]]
    for source in SOURCES:
        assert any(p.search(relative(lock_for(source))) for p in patterns), relative(lock_for(source))
        assert not any(p.search(relative(source)) for p in patterns), relative(source)
    assert config["pip_requirements"]["enabled"] is False
