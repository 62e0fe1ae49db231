"""Where this machine keeps an interpreter of a given Python version: PATH, pyenv, then uv's.

Artefacts that carry bytecode (the mailer's SDK layer) must be compiled by the runtime's own minor
version, and `make test-image-python` runs the service tests on it. pyenv's shims refuse versions
that `pyenv global` does not select, so its `versions/` folder is searched directly. Standard library
only: `scripts/runtime-python.sh` runs this with the system Python, before any virtualenv exists.

    python3 -m components.aws.interpreters 3.13            # print its path, or fail naming it
    python3 -m components.aws.interpreters --install 3.13  # first `uv python install 3.13` if missing
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path


class InterpreterNotFound(RuntimeError):
    pass


def _release(path: Path, prefix: str) -> tuple[int, ...]:
    """(3, 13, 10) from `<prefix>3.13.10...`: newest first must compare numbers, not strings."""
    digits = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", path.name.removeprefix(prefix))
    return tuple(int(d) for d in digits.groups() if d is not None) if digits else ()


def _candidates(version: str) -> list[Path]:
    minor = ".".join(version.split(".")[:2])
    found = [Path(p) for p in [shutil.which(f"python{minor}")] if p]
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    found += [
        d / "bin" / f"python{minor}"
        for d in sorted(root.glob(f"{minor}.*"), key=lambda d: _release(d, ""), reverse=True)
    ]
    # `uv python install` keeps managed interpreters here (uv's docs, "Python versions").
    uv_root = Path(os.environ.get("UV_PYTHON_INSTALL_DIR") or Path.home() / ".local/share/uv/python")
    found += [
        d / "bin" / f"python{minor}"
        for d in sorted(
            uv_root.glob(f"cpython-{minor}.*"), key=lambda d: _release(d, "cpython-"), reverse=True
        )
    ]
    return found


def find_python(version: str) -> Path:
    """The first interpreter of `version` that runs and reports it: "3.13" takes any 3.13 release,
    "3.13.0" exactly that one."""
    parts = len(version.split("."))
    for candidate in _candidates(version):
        try:
            reported = subprocess.run(
                [str(candidate), "-c", f"import sys; print('.'.join(map(str, sys.version_info[:{parts}])))"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        if reported == version:
            return candidate
    raise InterpreterNotFound(
        f"Python {version} was not found on PATH, in pyenv or among uv's interpreters; install it "
        f"(`uv python install {version}`, which `make test` runs; in the workflows, setup-python) "
        "or put it on PATH"
    )


def main(argv: list[str]) -> int:
    install = "--install" in argv
    (version,) = [a for a in argv if a != "--install"]
    try:
        print(find_python(version))
        return 0
    except InterpreterNotFound as error:
        uv = shutil.which("uv")
        if not (install and uv):
            print(error, file=sys.stderr)
            return 2
    print(f"Python {version} not found; installing it with uv", file=sys.stderr)
    subprocess.run([uv, "python", "install", version], check=False)
    try:
        print(find_python(version))
        return 0
    except InterpreterNotFound as error:
        print(error, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
