"""Where this machine keeps an interpreter of a given Python version: PATH, pyenv, then uv's.

Artefacts that carry bytecode (the mailer's SDK layer) must be compiled by the runtime's own minor
version, and `make test-image-python` runs the service tests on it. pyenv's shims refuse versions
that `pyenv global` does not select, so its `versions/` folder is searched directly. Standard library
only: `scripts/runtime-python.sh` runs this with the system Python, before any virtualenv exists.

    python3 -m components.interpreters 3.13            # print its path, or fail naming it
    python3 -m components.interpreters --install 3.13  # first `uv python install 3.13` if missing
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


class InterpreterNotFound(RuntimeError):
    pass


def _candidates(version: str) -> list[Path]:
    found = [Path(p) for p in [shutil.which(f"python{version}")] if p]
    root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    found += sorted(Path(root).glob(f"versions/{version}.*/bin/python{version}"), reverse=True)
    # `uv python install` keeps managed interpreters here (uv's docs, "Python versions").
    uv_root = os.environ.get("UV_PYTHON_INSTALL_DIR") or str(Path.home() / ".local/share/uv/python")
    found += sorted(Path(uv_root).glob(f"cpython-{version}.*/bin/python{version}"), reverse=True)
    return found


def find_python(version: str) -> Path:
    """The first interpreter of `version` (e.g. "3.13") that runs and reports that version."""
    for candidate in _candidates(version):
        try:
            reported = subprocess.run(
                [str(candidate), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
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
        f"Python {version} (the version the images and Lambdas run) was not found on PATH, in pyenv or "
        f"in uv's interpreters; install it (`make test` runs `uv python install {version}`; the workflows' "
        f"setup-python step installs it) or put python{version} on PATH"
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
