"""Where Motion's Lambda code lives in app_code/ (each function's archive root and packages, the SDK
layer's lock), and the file lists the archives ship (components/aws/lambda_archive.py zips them)."""

from __future__ import annotations

from pathlib import Path

from components.aws.lambda_archive import REPO_ROOT, package_files

APP_CODE = REPO_ROOT / "app_code"
MAILER_ROOT = APP_CODE / "mailer"
COMMON_ROOT = APP_CODE / "common"
TASK_RUNNER_ROOT = APP_CODE / "task_runner"
MAILER_PACKAGES = ("mailer",)
TASK_RUNNER_PACKAGES = ("task_runner",)
# The lock the SDK layer every Python Lambda imports boto3 from is built from.
LOCK = MAILER_ROOT / "requirements.txt"


def mailer_files(root: Path = MAILER_ROOT) -> list[Path]:
    """The mailer archive's files (both mailer functions ship it)."""
    return package_files(root, MAILER_PACKAGES)


def task_runner_files(root: Path = TASK_RUNNER_ROOT) -> list[Path]:
    """The task runner archive's files (the Lambda that runs one-off ECS tasks during a deploy)."""
    return package_files(root, TASK_RUNNER_PACKAGES)
