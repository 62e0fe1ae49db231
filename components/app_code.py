"""Where Motion's code lives in app_code/: each service's source root (what its image or archive has
at its top), the Lambda archives' packages, the SDK layer's lock, and the file lists the archives
ship (components/aws/lambda_archive.py zips them).

The one statement of the import path. A service's process runs with its own roots
(`pythonpath(service)`: the local backend, the tests and the benchmarks start services with it); the
development environment imports them all (`SOURCE_ROOTS`). pyproject.toml repeats the latter for
pytest and mypy, which read only static configuration, and tests/deps/test_import_path.py holds
those copies, and every image's COPY lines, to this module.
"""

from __future__ import annotations

import os
from pathlib import Path

from components.aws.lambda_archive import REPO_ROOT, package_files

APP_CODE = REPO_ROOT / "app_code"
MAILER_ROOT = APP_CODE / "mailer"
COMMON_ROOT = APP_CODE / "common"
FILES_ROOT = APP_CODE / "files"
CHAT_ROOT = APP_CODE / "chat"
TASK_RUNNER_ROOT = APP_CODE / "task_runner"
# Each service's roots, its own first: what `python -m <package>` needs on its path, as in its image
# (common/motion_common is copied beside the container services' packages) or archive.
SERVICE_ROOTS: dict[str, tuple[Path, ...]] = {
    "files": (FILES_ROOT, COMMON_ROOT),
    "chat": (CHAT_ROOT, COMMON_ROOT),
    "mailer": (MAILER_ROOT,),
    "task_runner": (TASK_RUNNER_ROOT,),
}
# Everything the development environment imports: the repository itself, then every root.
SOURCE_ROOTS: tuple[Path, ...] = (COMMON_ROOT, MAILER_ROOT, FILES_ROOT, CHAT_ROOT, TASK_RUNNER_ROOT)
MAILER_PACKAGES = ("mailer",)
TASK_RUNNER_PACKAGES = ("task_runner",)
# The lock the SDK layer every Python Lambda imports boto3 from is built from.
LOCK = MAILER_ROOT / "requirements.txt"


def pythonpath(service: str, app_code: Path = APP_CODE) -> str:
    """PYTHONPATH for a process of `service` (`app_code`: another checkout's, for the benchmarks)."""
    return os.pathsep.join(str(app_code / root.relative_to(APP_CODE)) for root in SERVICE_ROOTS[service])


def development_pythonpath() -> str:
    """PYTHONPATH for a process that imports the repository and every service (the local backend's
    stand-ins run the mail handlers in the same process as repository code)."""
    return os.pathsep.join([str(REPO_ROOT), *map(str, SOURCE_ROOTS)])


def mailer_files(root: Path = MAILER_ROOT) -> list[Path]:
    """The mailer archive's files (both mailer functions ship it)."""
    return package_files(root, MAILER_PACKAGES)


def task_runner_files(root: Path = TASK_RUNNER_ROOT) -> list[Path]:
    """The task runner archive's files (the Lambda that runs one-off ECS tasks during a deploy)."""
    return package_files(root, TASK_RUNNER_PACKAGES)
