"""The import path has one statement, components/app_code.py: the copies pytest and mypy need
(pyproject.toml, static configuration they read before any code runs) and what each image ships are
held to it here."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from components.app_code import (
    APP_CODE,
    REPO_ROOT,
    SERVICE_ROOTS,
    SOURCE_ROOTS,
    mailer_files,
    task_runner_files,
)

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def relative(paths: tuple[Path, ...]) -> list[str]:
    return [str(p.relative_to(REPO_ROOT)) for p in paths]


def test_pytest_and_mypy_import_exactly_the_source_roots() -> None:
    assert PYPROJECT["tool"]["pytest"]["ini_options"]["pythonpath"] == [".", *relative(SOURCE_ROOTS)]
    assert PYPROJECT["tool"]["mypy"]["mypy_path"].split(":") == relative(SOURCE_ROOTS)
    # Every service's roots are among them, and every root is some service's.
    assert {root for roots in SERVICE_ROOTS.values() for root in roots} == set(SOURCE_ROOTS)


@pytest.mark.parametrize("service", ["files", "chat"])
def test_an_image_ships_exactly_its_services_roots(service: str) -> None:
    """The image's COPY lines put packages from these roots at the top of /app, so a process started
    with `pythonpath(service)` imports what the container imports, and nothing more."""
    dockerfile = (APP_CODE / service / "Dockerfile").read_text()
    copied = re.findall(r"^COPY\s+(\S+)/(\w+)\s+/app/\2\s*$", dockerfile, flags=re.M)
    assert copied, dockerfile
    assert {APP_CODE / root for root, _ in copied} == set(SERVICE_ROOTS[service])


@pytest.mark.parametrize(("service", "files"), [("mailer", mailer_files), ("task_runner", task_runner_files)])
def test_a_lambda_archive_ships_from_its_services_root(service: str, files: object) -> None:
    shipped = files()  # type: ignore[operator]  # paths inside the archive, relative to its root
    [root] = SERVICE_ROOTS[service]
    assert shipped and all((root / path).is_file() for path in shipped)
