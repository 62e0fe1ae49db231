"""Each image's build context is exactly what its Dockerfile copies, and its tag moves only when that
context (or the Dockerfile) does: a fresh checkout, touched mtimes, bytecode, caches or editor files
must not make the program push an existing tag again (ECR refuses: tags are immutable).

Everything runs on a copy of the git-tracked app_code/ in a temporary directory, never on the real tree.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from components import facts
from components.app_code import APP_CODE
from components.aws.build_context import (
    ContextModeError,
    PatternMatcher,
    check_checkout_modes,
    content_tag,
    context_files,
    ignore_file,
    read_ignore_file,
)
from components.aws.container_image import PLATFORMS, image_user
from tests.infra.harness import ROOT, StackRun

DOCKERFILES = {"files": "files/Dockerfile", "chat": "chat/Dockerfile"}
ARM64 = [p.value for p in PLATFORMS]
IMAGE = "docker-build:index:Image"


# --- the ported matcher -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "path", "ignored"),
    [
        (["*"], "Dockerfile", True),
        (["*"], "files/app.py", True),  # a parent directory matches
        (["*", "!files/app.py"], "files/app.py", False),
        (["*", "!files/app.py"], "files/other.py", True),
        (["*.py"], "files/app.py", False),  # `*` never crosses "/"
        (["**/*.py"], "app.py", True),  # `**/` matches zero directories too
        (["**/*.py"], "a/b/c/app.py", True),
        (["**/__pycache__"], "a/__pycache__/x.cpython-311.pyc", True),
        (["**/__pycache__"], "__pycache__/x.pyc", True),
        (["**/__pycache__"], "a/not__pycache__/x.py", False),
        (["files/**"], "files", False),  # a trailing `**` matches below the directory only
        (["files/**"], "files/a/b", True),
        (["*", "!files/svc/**/*.py"], "files/svc/app.py", False),
        (["*", "!files/svc/**/*.py"], "files/svc/sub/app.py", False),
        (["*", "!files/svc/**/*.py"], "files/svc/app.pyc", True),
        (["*", "!files/svc/**/*.py", "**/.*"], "files/svc/.#app.py", True),
        (["**/.*"], "files/svc/.hidden/app.py", True),
        (["app?.py"], "app1.py", True),
        (["app?.py"], "app/.py", False),
        (["a[0-9].py"], "a7.py", True),
        (["a[0-9].py"], "ab.py", False),
        (["a.b"], "aXb", False),  # `.` is literal, not a regexp wildcard
        (["a+(b)"], "a+(b)", True),
        (["a\\*b"], "a*b", True),
        (["a\\*b"], "axb", False),
        (["docs", "!docs/keep.md", "docs"], "docs/keep.md", True),  # the last match decides
        (["!keep.py"], "keep.py", False),
    ],
)
def test_matcher_follows_moby_rules(patterns: list[str], path: str, ignored: bool) -> None:
    assert PatternMatcher(patterns).matches(path) is ignored


def test_a_lone_exclamation_mark_is_rejected_as_moby_does() -> None:
    with pytest.raises(ValueError, match="illegal exclusion"):
        PatternMatcher(["!"])


def test_ignore_file_reading_follows_moby() -> None:
    text = (
        b"\xef\xbb\xbf# a comment\n"
        b"/leading/slash\r\n"
        b"  spaced/out  \n"
        b"\n"
        b" # not a comment: only column 1 starts one\n"
        b"! /negated/../kept\n"
        b"dir//double/./dots/\n"
    )
    assert read_ignore_file(text) == [
        "leading/slash",
        "spaced/out",
        "# not a comment: only column 1 starts one",
        "!kept",
        "dir/double/dots",
    ]


def test_the_dockerfile_specific_ignore_file_wins(tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    dockerfile = tmp_path / "svc" / "Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text(name)
    (tmp_path / ".dockerignore").write_text("a.txt\n")
    assert ignore_file(tmp_path, dockerfile) == tmp_path / ".dockerignore"
    assert "a.txt" not in context_files(tmp_path, dockerfile)
    (tmp_path / "svc" / "Dockerfile.dockerignore").write_text("b.txt\n")
    assert ignore_file(tmp_path, dockerfile) == tmp_path / "svc" / "Dockerfile.dockerignore"
    files = context_files(tmp_path, dockerfile)
    assert "a.txt" in files and "b.txt" not in files


# --- the real images ----------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A fresh checkout of app_code/: exactly the files git tracks, in a temporary directory."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--", "app_code"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    for relative in filter(None, listed.split("\0")):
        target = tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, target)
    return tmp_path / "app_code"


def is_remote_source(source: str) -> bool:
    """An ADD source BuildKit fetches itself instead of reading it from the context: an http(s) URL
    (moby/buildkit frontend/dockerfile/dockerfile2llb, `isHTTPSource`; a git URL is a source of its
    own, which no Dockerfile here uses)."""
    return source.startswith(("http://", "https://"))


def copy_sources(dockerfile: Path) -> list[str]:
    """The sources of every COPY/ADD that reads the build context (not `--from` another stage, not
    an ADD of a URL)."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    sources: list[str] = []
    for line in text.splitlines():
        words = line.split(None, 1)
        if len(words) < 2 or words[0].upper() not in ("COPY", "ADD"):
            continue
        rest = words[1].strip()
        args = json.loads(rest) if rest.startswith("[") else rest.split()
        flags = [a for a in args if a.startswith("--")]
        if any(f.startswith("--from=") for f in flags):
            continue
        paths = [a for a in args if not a.startswith("--")][:-1]
        remote = [p for p in paths if is_remote_source(p)]
        # BuildKit refuses a URL as a COPY source ("source can't be a URL for COPY"): only ADD fetches.
        assert not remote or words[0].upper() == "ADD", f"COPY of a URL in {dockerfile}: {remote}"
        sources += [p for p in paths if not is_remote_source(p)]
    return sources


def test_an_added_url_is_not_a_context_input(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM scratch\nADD --chmod=644 https://example.com/ca.pem /ca.pem\nADD local.txt /local.txt\n"
        'COPY --from=build /out /out\nCOPY ["a b.txt", "/dest/"]\n'
    )
    assert copy_sources(dockerfile) == ["local.txt", "a b.txt"]
    dockerfile.write_text("FROM scratch\nCOPY https://example.com/ca.pem /ca.pem\n")
    with pytest.raises(AssertionError, match="COPY of a URL"):
        copy_sources(dockerfile)


def dockerfile_inputs(context: Path, dockerfile: Path) -> set[str]:
    """Every file under what the Dockerfile copies."""
    found: set[str] = set()
    for source in copy_sources(dockerfile):
        root = context / source
        assert root.exists(), f"{dockerfile.name} copies {source}, which is not in the context"
        paths = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        found |= {p.relative_to(context).as_posix() for p in paths}
    return found


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_context_is_exactly_what_the_dockerfile_copies(tree: Path, image: str) -> None:
    dockerfile = tree / DOCKERFILES[image]
    assert ignore_file(tree, dockerfile) == dockerfile.with_name("Dockerfile.dockerignore")
    expected = dockerfile_inputs(tree, dockerfile)
    assert f"{image}/requirements.txt" in expected and "common/motion_common/auth.py" in expected
    assert set(context_files(tree, dockerfile)) == expected


def _litter(tree: Path) -> None:
    """What a checkout, a test run, the program and editors leave in app_code/."""
    for path in list(tree.rglob("*")):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    for package in [p.parent for p in tree.rglob("__init__.py")]:
        cache = package / "__pycache__"
        cache.mkdir(exist_ok=True)
        for module in package.glob("*.py"):
            (cache / f"{module.stem}.cpython-311.pyc").write_bytes(b"\x00bytecode")
        (package / "app.py.orig").write_text("merge leftover")
        (package / ".routes.py.swp").write_bytes(b"vim swap")
        (package / "4913").write_text("")  # vim's probe file
        (package / "__init__.py~").write_text("backup")
        (package / ".DS_Store").write_bytes(b"\x00")
        lock = package / ".#__init__.py"
        if not lock.is_symlink():
            lock.symlink_to("someone@host.1234")  # Emacs lock: a dangling link named like a source
    for service in ("files", "chat", "common"):
        for cache_dir in (".pytest_cache", ".mypy_cache", ".ruff_cache"):
            (tree / service / cache_dir / "v").mkdir(parents=True, exist_ok=True)
            (tree / service / cache_dir / "v" / "state").write_text("{}")
    (tree / "files" / "requirements.in").write_text("starlette>=0.40\n")
    (tree / "chat" / "requirements.in").write_text("picows>=1.0\n")
    (tree / "files" / "README.md").write_text("edited documentation\n")


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_tag_and_context_ignore_checkout_noise(tree: Path, image: str) -> None:
    dockerfile = tree / DOCKERFILES[image]
    context, tag = context_files(tree, dockerfile), content_tag(tree, dockerfile, ARM64)
    _litter(tree)
    assert context_files(tree, dockerfile) == context
    assert content_tag(tree, dockerfile, ARM64) == tag


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_tag_follows_what_the_image_is_built_from(tree: Path, image: str) -> None:
    dockerfile = tree / DOCKERFILES[image]
    tags = {content_tag(tree, dockerfile, ARM64)}
    service = next(p for p in (tree / image).iterdir() if p.is_dir())

    def changed() -> bool:
        tag = content_tag(tree, dockerfile, ARM64)
        new = tag not in tags
        tags.add(tag)
        return new

    module = service / "settings.py"
    module.write_text(module.read_text() + "\n# one more line\n")
    assert changed(), "a copied module changed"
    (service / "new_module.py").write_text("VALUE = 1\n")
    assert changed(), "a module was added"
    common = tree / "common" / "motion_common" / "env.py"
    common.write_text(common.read_text() + "\n")
    assert changed(), "the shared package changed"
    requirements = tree / image / "requirements.txt"
    requirements.write_text(requirements.read_text() + "# comment\n")
    assert changed(), "the requirements (what pip installs) changed"
    dockerfile.write_text(dockerfile.read_text() + "# comment\n")
    assert changed(), "the Dockerfile changed"
    module.chmod(0o755)
    assert changed(), "a copied file became executable (COPY keeps the mode)"
    assert content_tag(tree, dockerfile, ["linux/amd64"]) not in tags, "another platform"


def test_loading_service_facts_writes_no_bytecode(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The program reads routes, schemas and ports from app_code/; that must leave the tree as it was
    (importing by path would write __pycache__ into the build context)."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as in a plain `pulumi up`
    before = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*"))
    chat, files, mailer = facts.load_chat(tree), facts.load_files(tree), facts.load_mailer(tree)
    assert files.readiness_path and chat.default_port and chat.table and mailer.table
    assert sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*")) == before


# --- what the program registers -----------------------------------------------------------------


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_program_builds_that_context_under_that_tag(stack: StackRun, image: str) -> None:
    resource = stack.one(IMAGE, f"{image}-image")
    repo = stack.one("aws:ecr/repository:Repository", f"{image}-image")
    url = f"123456789012.dkr.ecr.{stack.config.region}.amazonaws.com/{repo.inputs['name']}"
    dockerfile = APP_CODE / DOCKERFILES[image]
    inputs = resource.inputs
    assert inputs["context"] == {"location": "app_code"}
    assert inputs["dockerfile"] == {"location": f"app_code/{DOCKERFILES[image]}"}
    assert inputs["platforms"] == ["linux/arm64"]
    assert inputs["tags"] == [f"{url}:{content_tag(APP_CODE, dockerfile, ARM64)}"]
    assert inputs["push"] is True and inputs["buildOnPreview"] is False
    (registry,) = inputs["registries"]
    assert registry == {"address": url, "username": "AWS", "password": "mock-ecr-password"}
    assert {"registries", "registries[0].password"} & resource.secret_paths, "the ECR token is secret"
    tasks = [
        t
        for t in stack.of_type("aws:ecs/taskDefinition:TaskDefinition")
        if t.json("containerDefinitions")[0]["image"].startswith(url + "@")
    ]
    assert tasks, f"no task definition runs the {image} image"
    for task in tasks:
        assert task.json("containerDefinitions")[0]["image"] == f"{url}@sha256:{'ab' * 32}"


def test_a_checkout_with_group_writable_files_is_refused_before_the_push(tree: Path) -> None:
    # What a checkout under umask 002 looks like: docker-build would hash "-rw-rw-r--" instead of CI's
    # "-rw-r--r--", rebuild and push the existing immutable tag, and ECR would refuse it.
    dockerfile = tree / "files" / "Dockerfile"
    check_checkout_modes(tree, context_files(tree, dockerfile))  # a standard checkout passes
    module = tree / "files" / "files_service" / "routes.py"
    module.chmod(0o664)
    with pytest.raises(ContextModeError, match=r"files/files_service/routes\.py \(0664\).*chmod -R go-w"):
        check_checkout_modes(tree, context_files(tree, dockerfile))
    module.chmod(0o644)
    (tree / "files" / "files_service" / "__pycache__").mkdir(exist_ok=True)
    stray = tree / "files" / "files_service" / "__pycache__" / "x.pyc"
    stray.write_bytes(b"")
    stray.chmod(0o666)  # outside the context: not Docker's business, nor ours
    check_checkout_modes(tree, context_files(tree, dockerfile))


# Each task family's image (components: the services and the migration job).
IMAGE_OF_FAMILY = {"upload": "files", "download": "files", "files-migrate": "files", "chat": "chat"}


def test_every_task_runs_its_image_as_the_dockerfile_user_which_is_not_root(stack: StackRun) -> None:
    tasks = stack.of_type("aws:ecs/taskDefinition:TaskDefinition")
    families = {t.inputs["family"].removeprefix(f"motion-{stack.stack}-"): t for t in tasks}
    assert set(families) == set(IMAGE_OF_FAMILY)
    for family, task in families.items():
        user = image_user(APP_CODE / IMAGE_OF_FAMILY[family] / "Dockerfile")
        # Numeric uid:gid: nothing to look up in the image's /etc/passwd, and plainly not root.
        uid, _, gid = user.partition(":")
        assert uid.isdigit() and gid.isdigit() and int(uid) > 0, (family, user)
        (container,) = task.json("containerDefinitions")
        assert container["user"] == user, family


def test_an_image_without_a_user_or_running_as_root_is_refused(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text('FROM python:3.13-slim\nCMD ["python"]\n')
    with pytest.raises(ValueError, match="no USER"):
        image_user(dockerfile)
    dockerfile.write_text("FROM python:3.13-slim\nUSER 10001:10001\nUSER root\n")
    with pytest.raises(ValueError, match="runs as root"):
        image_user(dockerfile)
    dockerfile.write_text("FROM python:3.13-slim\nuser 0:0\n")
    with pytest.raises(ValueError, match="runs as root"):
        image_user(dockerfile)
