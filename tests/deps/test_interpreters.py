"""Finding the runtime's Python (components/aws/interpreters.py): PATH, pyenv's versions, uv's interpreters,
each candidate asked for its version, and a clear error naming what is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.aws.interpreters import InterpreterNotFound, find_python

ROOT = Path(__file__).resolve().parents[2]


def fake_python(path: Path, reports: str) -> Path:
    """An executable that answers the version probe as a CPython `reports` release would: the
    major.minor, or the full release when the probe asks for three parts (`sys.version_info[:3]`)."""
    minor = ".".join(reports.split(".")[:2])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\ncase "$2" in *"[:3]"*) echo {reports} ;; *) echo {minor} ;; esac\n')
    path.chmod(0o755)
    return path


@pytest.fixture
def empty_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for variable, folder in (("PATH", "bin"), ("PYENV_ROOT", "pyenv"), ("UV_PYTHON_INSTALL_DIR", "uv")):
        (tmp_path / folder).mkdir()
        monkeypatch.setenv(variable, str(tmp_path / folder))
    return tmp_path


def test_each_place_is_searched_in_order_and_candidates_must_report_the_version(empty_machine: Path) -> None:
    with pytest.raises(
        InterpreterNotFound, match=r"Python 3\.13 was not found on PATH, in pyenv or among uv's"
    ):
        find_python("3.13")
    uv = fake_python(empty_machine / "uv/cpython-3.13.9-linux-x86_64-gnu/bin/python3.13", "3.13")
    assert find_python("3.13") == uv
    pyenv = fake_python(empty_machine / "pyenv/versions/3.13.2/bin/python3.13", "3.13")
    assert find_python("3.13") == pyenv
    # A candidate on PATH that is not what its name says is passed over.
    fake_python(empty_machine / "bin/python3.13", "3.12")
    assert find_python("3.13") == pyenv
    on_path = fake_python(empty_machine / "bin/python3.13", "3.13")
    assert find_python("3.13") == on_path


def test_the_command_line_prints_the_path_or_fails_naming_the_version(empty_machine: Path) -> None:
    found = fake_python(empty_machine / "pyenv/versions/3.13.0/bin/python3.13", "3.13")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ok = subprocess.run(
        [sys.executable, "-m", "components.aws.interpreters", "3.13"], capture_output=True, text=True, env=env
    )
    assert (ok.returncode, ok.stdout.strip()) == (0, str(found))
    # --install without uv on PATH cannot install: it fails with the same clear message.
    missing = subprocess.run(
        [sys.executable, "-m", "components.aws.interpreters", "--install", "3.99"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert missing.returncode == 2 and "Python 3.99" in missing.stderr and "Traceback" not in missing.stderr


def test_an_exact_release_is_matched_exactly_and_the_newest_release_wins(empty_machine: Path) -> None:
    nine = fake_python(empty_machine / "pyenv/versions/3.13.9/bin/python3.13", "3.13.9")
    ten = fake_python(empty_machine / "pyenv/versions/3.13.10/bin/python3.13", "3.13.10")
    # Newest by number, not by string ("3.13.9" > "3.13.10" as text).
    assert find_python("3.13") == ten
    assert find_python("3.13.9") == nine
    with pytest.raises(InterpreterNotFound, match=r"Python 3\.13\.0 was not found"):
        find_python("3.13.0")


def test_install_runs_uv_python_install_then_finds_what_it_installed(empty_machine: Path) -> None:
    # A stand-in for uv that does what `uv python install X` does: an interpreter under
    # UV_PYTHON_INSTALL_DIR (the real one downloads it; this machine has no route to it).
    installed = empty_machine / "uv/cpython-3.13.0-linux-x86_64-gnu/bin/python3.13"
    uv = empty_machine / "bin/uv"
    uv.write_text(
        "#!/bin/sh\n"
        f'[ "$1 $2 $3" = "python install 3.13.0" ] || exit 9\n'
        f"/bin/mkdir -p {installed.parent}\n"
        f"printf '#!/bin/sh\\necho 3.13.0\\n' > {installed}\n"
        f"/bin/chmod +x {installed}\n"
    )
    uv.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "components.aws.interpreters", "--install", "3.13.0"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(installed) and "installing it with uv" in done.stderr
