"""The task runner's Lambda archive: exactly its package's sources, reproducible, and importing nothing
but the standard library and the SDK the stack's layer provides."""

from __future__ import annotations

import ast
import io
import sys
import zipfile

from components.app_code import LOCK, TASK_RUNNER_ROOT, task_runner_files
from components.aws.lambda_archive import build_zip


def test_the_archive_is_the_package_sources_only() -> None:
    files = task_runner_files()
    expected = sorted(
        p.relative_to(TASK_RUNNER_ROOT) for p in (TASK_RUNNER_ROOT / "task_runner").glob("*.py")
    )
    assert files == expected and {f.name for f in files} >= {"__init__.py", "core.py", "handler.py"}
    with zipfile.ZipFile(io.BytesIO(build_zip(TASK_RUNNER_ROOT, files))) as archive:
        assert archive.namelist() == [f.as_posix() for f in files]
    assert build_zip(TASK_RUNNER_ROOT, files) == build_zip(TASK_RUNNER_ROOT, task_runner_files())


def test_it_imports_only_the_standard_library_and_the_layers_boto3() -> None:
    imported: set[str] = set()
    for relative in task_runner_files():
        for node in ast.walk(ast.parse((TASK_RUNNER_ROOT / relative).read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"task_runner", "__future__"}
    assert third_party == {"boto3"}
    # The layer is built from this lock (components/mailing/sdk_layer.py), so boto3 is there at run time.
    assert any(line.startswith("boto3==") for line in LOCK.read_text().splitlines())
