"""A Lambda's archive: which files go in (a source tree's packages), and a byte-for-byte reproducible
zip of them. Which trees Motion's Lambdas ship is components/app_code.py's to say.

The Pulumi components ship exactly `package_files(root, packages)` (one file list, one truth), so a
test can show that an archive only changes when its code does. The zip is deterministic (sorted
entries, fixed timestamps and permissions), so its hash is a stable `source_code_hash`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

# The checkout the program runs from (built artefacts are cached under its build/).
REPO_ROOT = Path(__file__).resolve().parents[2]
# What the Lambdas run: the runtime identifier and the instruction set (Graviton). The SDK layer is
# installed and compiled for exactly these (components/aws/lambda_layer.py).
RUNTIME = "python3.13"
ARCHITECTURE = "arm64"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry


def package_files(root: Path, packages: Sequence[str]) -> list[Path]:
    """An archive's files, relative to `root` and sorted: the packages' Python sources only.

    An allow-list, not "everything under root": caches, editor files or a stray virtualenv in the
    working tree must never reach production or change the hash.
    """
    files: set[Path] = set()
    for package in packages:
        base = root / package
        if not (base / "__init__.py").is_file():
            raise FileNotFoundError(f"{base} is not a Python package")
        for path in base.rglob("*.py"):
            relative = path.relative_to(root)
            if "__pycache__" in relative.parts or any(part.startswith(".") for part in relative.parts):
                continue
            files.add(relative)
    return sorted(files, key=lambda p: p.as_posix())


def build_zip(root: Path, files: Iterable[Path]) -> bytes:
    """A deterministic zip of `files`, paths relative to `root`."""
    entries = sorted(files, key=lambda p: p.as_posix())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for relative in entries:
            info = zipfile.ZipInfo(relative.as_posix(), date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o100644 & 0xFFFF) << 16  # regular file, rw-r--r--
            info.create_system = 3  # Unix, so the permission bits above are honoured
            archive.writestr(info, (root / relative).read_bytes(), compresslevel=9)
    return buffer.getvalue()


def source_code_hash(archive: bytes) -> str:
    """Base64 SHA-256, the form Lambda reports as CodeSha256."""
    return base64.b64encode(hashlib.sha256(archive).digest()).decode()
