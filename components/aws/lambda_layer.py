"""An SDK layer (the mailer's: components/mailing/sdk_layer.py): boto3 and what it needs, exactly as a
lock (`app_code/mailer/requirements.txt`) pins them, with bytecode compiled by the runtime's Python,
in a byte-for-byte reproducible zip.

Why a layer (README, "The Lambda's SDK"): the python3.13 runtime brings a boto3 that Lambda updates
on its own schedule, not the one the tests run; AWS recommends shipping the SDK to control its
version. In the function's own archive it would turn every code deploy into a 19 MB upload; as a
layer it is published again only when the lock changes. Lambda puts a layer's `python/` folder on
`sys.path` ahead of the runtime's own packages, so the locked boto3 is the one imported (Lambda
Developer Guide, "Working with layers for Python Lambda functions": the zip's root holds `python/`,
built with the function's Python version, for Linux).

Bytecode matters: `/opt` is read-only, so without it every cold start compiles botocore from source
(3x slower to import; bench/mailer_bench.py). The `.pyc` files are hash-based and unchecked (PEP
552): no timestamps, never revalidated against the source. The engine diffs a zip by the sha256 of
its bytes (pulumi sdk/go/common/resource/archive/archive.go, EnsureHashWithWD) and every input of
a layer version forces a new one (terraform-provider-aws internal/service/lambda/layer_version.go),
so the bytes must not depend on the machine: entries are sorted with fixed times and modes, the
code objects name `/opt/python/...` instead of the build's temporary folder, and one exact CPython
release compiles them (LAYER_PYTHON; the compiler's output may change between patch releases,
while any 3.13 release runs it). A preview and the `pulumi up` after it, or two runners, then build
the same bytes, and a new layer version is published only when an input changes.

Built on demand and cached under `build/lambda-layers/`, keyed by everything that shapes the bytes:
the lock, the target runtime and platform, the compiling release, and this builder's own source.
"""

from __future__ import annotations

import email.parser
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from components.aws import lambda_archive
from components.aws.interpreters import find_python
from components.aws.lambda_archive import ARCHITECTURE, REPO_ROOT, RUNTIME, build_zip

CACHE_DIR = REPO_ROOT / "build" / "lambda-layers"
MOUNT = "/opt"  # where Lambda extracts a layer (the zip's python/ becomes /opt/python)
# The exact CPython release that compiles the bytecode (workflows: RUNTIME_PYTHON_VERSION).
LAYER_PYTHON = "3.13.0"
# Lambda quotas (Developer Guide, "Lambda quotas"; API AccountLimit CodeSizeZipped/CodeSizeUnzipped):
# a zip uploaded directly (PublishLayerVersion's ZipFile, what the provider sends for a local file)
# is at most 50 MB; a function and all its layers extracted at most 250 MB.
MAX_ZIPPED_BYTES = 50 * 1024 * 1024
MAX_UNZIPPED_BYTES = 250 * 1024 * 1024
# Lambda's python3.13 runtime runs on Amazon Linux 2023 (Lambda Developer Guide, "Lambda runtimes"),
# whose glibc is 2.34: every manylinux wheel up to manylinux_2_34 runs there. pip widens only the
# legacy manylinux2014/2010 tags to older ones (pip _internal/utils/compatibility_tags.py,
# _custom_manylinux_platforms), so each manylinux_2_x tag is listed, newest first.
_MACHINES = {"arm64": "aarch64", "x86_64": "x86_64"}
_GLIBC_MINOR = 34
# What an installer leaves that is not the packages: console scripts (whose shebang names this
# machine's interpreter), and records of the install itself (installer name, file hashes, lock).
_INSTALLER_ARTEFACTS = ("bin", ".lock")
_DIST_INFO_ARTEFACTS = ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")


class LayerBuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class Target:
    """What the layer is built for: the runtime's Python version and pip's platform tag."""

    python_version: str
    platforms: tuple[str, ...]
    compiler: str = LAYER_PYTHON

    @classmethod
    def of(cls, runtime: str = RUNTIME, architecture: str = ARCHITECTURE) -> Target:
        if not runtime.startswith("python"):
            raise LayerBuildError(f"{runtime!r} is not a Python runtime")
        python_version = runtime.removeprefix("python")
        if not LAYER_PYTHON.startswith(f"{python_version}."):
            raise LayerBuildError(
                f"LAYER_PYTHON {LAYER_PYTHON} is not a release of the {runtime} runtime's Python"
            )
        machine = _MACHINES[architecture]
        platforms = tuple(f"manylinux_2_{minor}_{machine}" for minor in range(_GLIBC_MINOR, 16, -1))
        return cls(python_version, (*platforms, f"manylinux2014_{machine}"))


def layer_key(lock: Path, target: Target | None = None) -> str:
    """A hash of every input that shapes the layer's bytes (the cache key and the file name)."""
    target = target or Target.of()
    digest = hashlib.sha256()
    builder = b"".join(Path(source).read_bytes() for source in (__file__, lambda_archive.__file__))
    parts = (target.python_version, *target.platforms, target.compiler)
    for part in (hashlib.sha256(builder).hexdigest(), *parts):
        digest.update(part.encode() + b"\0")
    digest.update(lock.read_bytes())
    return digest.hexdigest()[:20]


def build_layer(
    lock: Path, cache_dir: Path = CACHE_DIR, target: Target | None = None, python: Path | None = None
) -> Path:
    """The layer zip for `lock` (built once per key, then reused); fails naming what is missing."""
    target = target or Target.of()
    out = cache_dir / f"sdk-layer-{layer_key(lock, target)}.zip"
    if out.is_file():
        return out
    python = python or find_python(target.compiler)  # before any work, so a missing one fails fast
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="layer-", dir=cache_dir) as scratch:
        root = Path(scratch)
        _install(lock, root / "python", target)
        _compile(root / "python", python)
        files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
        archive = build_zip(root, files)
        unzipped = sum((root / f).stat().st_size for f in files)
        if len(archive) > MAX_ZIPPED_BYTES or unzipped > MAX_UNZIPPED_BYTES:
            raise LayerBuildError(
                f"the layer from {lock} is {len(archive)} bytes zipped, {unzipped} extracted; Lambda "
                f"takes at most {MAX_ZIPPED_BYTES} zipped (direct upload) and {MAX_UNZIPPED_BYTES} extracted"
            )
        partial = out.with_suffix(".partial")
        partial.write_bytes(archive)
        partial.replace(out)  # atomic: a concurrent or interrupted build never leaves half a zip
    return out


def _install(lock: Path, site: Path, target: Target) -> None:
    """The lock's exact wheels for the target, hash-checked, without this machine's bytecode."""
    for number, line in enumerate(lock.read_text().splitlines(), 1):
        # pip evaluates environment markers against the interpreter and machine it runs on, not the
        # --platform and --python-version it installs for, so a pin meant for some platforms only
        # would be chosen for the wrong one.
        if ";" in line.split("#", 1)[0]:
            raise LayerBuildError(
                f"{lock}:{number}: a pin with an environment marker ({line.strip()!r}) cannot be "
                "installed for another platform reliably; the layer's lock must hold plain pins"
            )
    command = [
        *[sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"],
        *["--require-hashes", "--no-deps", "--only-binary=:all:", "--no-compile"],
        *[arg for platform in target.platforms for arg in ("--platform", platform)],
        *["--python-version", target.python_version, "--implementation", "cp"],
        *["--target", str(site), "-r", str(lock)],
    ]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PIP_NO_INPUT": "1"})
    if result.returncode != 0:
        raise LayerBuildError(f"installing {lock} for the layer failed:\n{result.stderr.strip()}")
    for name in _INSTALLER_ARTEFACTS:
        path = site / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for dist_info in site.glob("*.dist-info"):
        for name in _DIST_INFO_ARTEFACTS:
            (dist_info / name).unlink(missing_ok=True)


_COMPILE = """
import compileall, py_compile, sys
ok = compileall.compile_dir(
    sys.argv[1], ddir=sys.argv[2], quiet=1, workers=1,
    invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
)
sys.exit(0 if ok else 1)
"""


def _compile(site: Path, python: Path) -> None:
    """Bytecode by the pinned release. The code objects name the sources under /opt/python rather
    than this build's temporary folder, which would otherwise make every build's bytes differ (at
    import, the loader points co_filename at the real path anyway: importlib's _fix_co_filename).
    Frozenset constants need no fixed hash seed: 3.13's marshal writes them sorted."""
    result = subprocess.run(
        [str(python), "-I", "-c", _COMPILE, str(site), f"{MOUNT}/python"], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise LayerBuildError(f"compiling the layer with {python} failed:\n{result.stdout}{result.stderr}")


def distributions(archive: Path) -> dict[str, str]:
    """{normalized name: version} of the distributions a layer zip holds (from their METADATA)."""
    found: dict[str, str] = {}
    with zipfile.ZipFile(archive) as zipped:
        for name in zipped.namelist():
            parts = name.split("/")
            if len(parts) == 3 and parts[1].endswith(".dist-info") and parts[2] == "METADATA":
                headers = email.parser.BytesHeaderParser().parsebytes(zipped.read(name))
                found[_normalize(headers["Name"])] = headers["Version"]
    return found


def _normalize(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()
