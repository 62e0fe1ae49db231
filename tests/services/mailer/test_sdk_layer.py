"""The mailer's SDK layer (components/aws/lambda_layer.py): the locked boto3, bytecode the runtime uses,
the same bytes from every build, and the mailer running on it under the runtime's Python."""

from __future__ import annotations

import email.parser
import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from components.app_code import LOCK, MAILER_ROOT
from components.aws.interpreters import InterpreterNotFound, find_python
from components.aws.lambda_archive import RUNTIME
from components.aws.lambda_layer import (
    LAYER_PYTHON,
    MAX_UNZIPPED_BYTES,
    MAX_ZIPPED_BYTES,
    MOUNT,
    LayerBuildError,
    Target,
    build_layer,
    distributions,
    layer_key,
)
from devstack.servers import MotoServer
from tests.deps.lockfiles import environment, read_lock
from tests.services.mailer.support import MailEnv, Outbox, sqs_record

PYTHON_VERSION = RUNTIME.removeprefix("python")


@pytest.fixture(scope="module")
def runtime_python() -> Path:
    # The release that compiled the layer; any release of the runtime's minor version would run it.
    return find_python(LAYER_PYTHON)


@pytest.fixture(scope="module")
def layer() -> Path:
    return build_layer(LOCK)


def extract(archive: Path, into: Path) -> Path:
    """The layer as Lambda mounts it: the zip's `python/` is `<into>/python` (Lambda: /opt/python)."""
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(into)
    return into / "python"


def test_the_layer_holds_exactly_the_locked_distributions(layer: Path) -> None:
    lock = read_lock(LOCK)
    # What applies on Lambda: the lock's Python, Linux on arm64.
    lambda_env = {**environment(PYTHON_VERSION), "platform_machine": "aarch64", "sys_platform": "linux"}
    expected = {p.name: p.version for p in lock.pins if p.marker is None or p.marker.evaluate(lambda_env)}
    assert "boto3" in expected
    assert distributions(layer) == expected


def test_every_requirement_of_a_shipped_distribution_is_shipped(layer: Path) -> None:
    # The layer is installed with --no-deps from the lock, so check what the lock cannot: each
    # distribution's Requires-Dist, evaluated for Lambda (CPython 3.13 on Linux arm64), is in it.
    lambda_env = {
        **environment(PYTHON_VERSION),
        "platform_machine": "aarch64",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }
    shipped = distributions(layer)
    missing = []
    with zipfile.ZipFile(layer) as zipped:
        for name in zipped.namelist():
            if name.endswith(".dist-info/METADATA"):
                metadata = email.parser.BytesHeaderParser().parsebytes(zipped.read(name))
                for line in metadata.get_all("Requires-Dist") or []:
                    requirement = Requirement(line)
                    if requirement.marker is not None and not requirement.marker.evaluate(lambda_env):
                        continue
                    have = shipped.get(canonicalize_name(requirement.name))
                    if have is None or not requirement.specifier.contains(have, prereleases=True):
                        missing.append(f"{metadata['Name']} needs {requirement} (layer has {have})")
    assert missing == []
    assert len(shipped) >= 5  # boto3 and what it needs: the check ran over real metadata


def test_the_layer_has_the_documented_shape_and_fits_lambdas_quotas(layer: Path) -> None:
    with zipfile.ZipFile(layer) as zipped:
        infos = zipped.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names) and all(n.startswith("python/") for n in names)
    assert "python/boto3/__init__.py" in names and "python/botocore/__init__.py" in names
    # No installer leftovers: console scripts name this machine's interpreter, records its paths.
    leftovers = [
        n for n in names if n.startswith(("python/bin/", "python/.")) or n.endswith(("/RECORD", "/INSTALLER"))
    ]
    assert leftovers == []
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert layer.stat().st_size <= MAX_ZIPPED_BYTES
    assert sum(i.file_size for i in infos) <= MAX_UNZIPPED_BYTES


def test_every_source_has_unchecked_bytecode_of_the_runtime_naming_its_lambda_path(
    layer: Path, runtime_python: Path
) -> None:
    # Checked by the runtime's own interpreter: its magic number, PEP 552 flags (1 = hash-based,
    # not checked against the source), the source hash, and co_filename under /opt/python (not
    # the build's temporary folder, which would make each build's bytes differ).
    check = """
import importlib.util, marshal, sys, zipfile
zipped = zipfile.ZipFile(sys.argv[1]); names = set(zipped.namelist()); problems = []; count = 0
for name in sorted(n for n in names if n.endswith(".py")):
    head, _, tail = name.rpartition("/")
    pyc = f"{head}/__pycache__/{tail[:-3]}.{sys.implementation.cache_tag}.pyc"
    if pyc not in names:
        problems.append(f"no bytecode: {name}"); continue
    data, source = zipped.read(pyc), zipped.read(name)
    if data[:4] != importlib.util.MAGIC_NUMBER: problems.append(f"magic: {pyc}")
    if int.from_bytes(data[4:8], "little") != 1: problems.append(f"flags: {pyc}")
    if data[8:16] != importlib.util.source_hash(source): problems.append(f"hash: {pyc}")
    if marshal.loads(data[16:]).co_filename != sys.argv[2] + "/" + name: problems.append(f"path: {pyc}")
    count += 1
stray = [n for n in names if n.endswith(".pyc") and f".{sys.implementation.cache_tag}." not in n]
print(count, problems[:5] + stray[:5])
"""
    out = subprocess.run(
        [str(runtime_python), "-I", "-c", check, str(layer), MOUNT],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split(maxsplit=1)
    assert int(out[0]) > 100 and out[1].strip() == "[]"


def test_builds_are_byte_for_byte_reproducible_and_cached_by_their_inputs(
    tmp_path: Path, layer: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = build_layer(LOCK, cache_dir=tmp_path / "fresh")
    assert fresh.name == layer.name and fresh.read_bytes() == layer.read_bytes()

    # A second call reuses the file: nothing is installed or compiled again.
    def no_install(*args: object) -> None:
        raise AssertionError("the cached layer was rebuilt")

    monkeypatch.setattr("components.aws.lambda_layer._install", no_install)
    assert build_layer(LOCK, cache_dir=tmp_path / "fresh") == fresh

    # Any input that shapes the bytes changes the key: the lock, the runtime, the architecture.
    changed = tmp_path / "requirements.txt"
    changed.write_text(LOCK.read_text() + "\n")
    target = Target.of()
    keys = {
        layer_key(LOCK),
        layer_key(changed),
        layer_key(LOCK, target=Target.of(architecture="x86_64")),
        layer_key(LOCK, target=Target(target.python_version, target.platforms, compiler="3.13.1")),
    }
    assert len(keys) == 4


def test_a_lock_whose_hashes_do_not_match_fails_naming_it_and_leaves_nothing(tmp_path: Path) -> None:
    tampered = tmp_path / "requirements.txt"
    text = LOCK.read_text()
    digest = text.split("--hash=sha256:", 1)[1][:64]
    tampered.write_text(text.replace(digest, "0" * 64))
    cache = tmp_path / "cache"
    with pytest.raises(LayerBuildError, match=r"installing .*requirements\.txt for the layer failed"):
        build_layer(tampered, cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_a_lock_with_platform_markers_is_refused_before_installing(tmp_path: Path) -> None:
    marked = tmp_path / "requirements.txt"
    marked.write_text(
        LOCK.read_text().replace("six==1.17.0 \\", "six==1.17.0 ; platform_machine == 'x86_64' \\", 1)
    )
    with pytest.raises(LayerBuildError, match=r"requirements\.txt:\d+: a pin with an environment marker"):
        build_layer(marked, cache_dir=tmp_path / "cache")


def test_a_missing_runtime_python_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    monkeypatch.setenv("UV_PYTHON_INSTALL_DIR", str(tmp_path))
    with pytest.raises(
        InterpreterNotFound, match=r"Python 3\.13 was not found on PATH, in pyenv or among uv's"
    ):
        find_python("3.13")
    # The layer build says the same before it installs or writes anything.
    with pytest.raises(InterpreterNotFound):
        build_layer(LOCK, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_the_mailer_sends_on_the_layer_under_the_runtime_python_from_bytecode_alone(
    tmp_path: Path,
    layer: Path,
    runtime_python: Path,
    mail_env: MailEnv,
    outbox: Outbox,
    moto_server: MotoServer,
) -> None:
    site = extract(layer, tmp_path / "opt")
    # Every SDK source made unusable: an import can only succeed from the shipped bytecode, as on
    # Lambda, where /opt is read-only and nothing could be compiled into a cache.
    for source in site.rglob("*.py"):
        source.write_text("raise ImportError('compiled from source, not from the layer bytecode')\n")
    message = mail_env.message(recipients=("layer@example.org",))
    event = {"Records": [sqs_record(message.to_event())]}
    script = f"""
import json, sys
sys.path[:0] = [{str(site)!r}, {str(MAILER_ROOT)!r}]
import boto3
from mailer import worker
result = worker.handler(json.loads(sys.argv[1]), None)
print(json.dumps({{"boto3": boto3.__version__, "file": boto3.__file__, "result": result}}))
"""
    env = {"PATH": os.environ["PATH"], **moto_server.env(), **mail_env.resources.worker_env()}
    done = subprocess.run(
        # -B: the mailer's own sources are imported from the repository; leave no bytecode there.
        [str(runtime_python), "-I", "-B", "-c", script, json.dumps(event)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["result"] == {"batchItemFailures": []}
    assert report["file"] == str(site / "boto3" / "__init__.py")
    assert report["boto3"] == distributions(layer)["boto3"]
    assert [m["destinations"]["ToAddresses"] for m in outbox.sent(mail_env.token)] == [["layer@example.org"]]
