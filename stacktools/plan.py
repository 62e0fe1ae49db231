"""The offline plan: each stack's resource graph from the program under mocks, rendered as a stable,
readable tree (component tree, type, name, inputs, secrets redacted), and from the same run its
picture (stacktools/diagram.py).

    python -m stacktools.plan                 print both stacks
    python -m stacktools.plan --write         refresh the committed snapshots in snapshots/ (plan and
                                              diagram) and the README's copy of the dev diagram
    python -m stacktools.plan --check         exit 1 if a snapshot is stale
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pulumi

from stacktools import diagram
from stacktools.mocked_program import ROOT, RecordedResource, StackRun, run_stack

STACKS = ("dev", "production")
SNAPSHOT_DIR = ROOT / "snapshots"
REFRESH_COMMAND = "make plan-snapshots"
REDACTED = "[secret]"
# Inputs that say nothing a reviewer can act on.
SKIPPED_INPUTS = frozenset({"__defaults", "version"})


def snapshot_path(stack: str) -> Path:
    return SNAPSHOT_DIR / f"{stack}.plan.txt"


def diagram_path(stack: str) -> Path:
    return SNAPSHOT_DIR / f"{stack}.diagram.md"


def render_diagram(run: StackRun) -> str:
    return diagram.render(run, REFRESH_COMMAND)


README = ROOT / "README.md"
# The stack whose picture the README shows.
README_STACK = "dev"
MERMAID_BLOCK = re.compile(r"^```mermaid\n.*?^```\n", flags=re.S | re.M)


def readme_with_diagram(readme: str, diagram_text: str) -> str:
    """The README with its one Mermaid block replaced by the diagram (itself one Mermaid block)."""
    blocks = MERMAID_BLOCK.findall(readme)
    if len(blocks) != 1:
        raise ValueError(
            f"README.md should hold one ```mermaid block (the {README_STACK} diagram), not {len(blocks)}"
        )
    return MERMAID_BLOCK.sub(lambda _: diagram_text, readme)


def snapshots(run: StackRun) -> dict[Path, str]:
    """Every committed file made from a stack's run, by path: one mocked run serves them all."""
    files = {snapshot_path(run.stack): render(run), diagram_path(run.stack): render_diagram(run)}
    if run.stack == README_STACK:
        files[README] = readme_with_diagram(README.read_text(), files[diagram_path(run.stack)])
    return files


def _flatten(value: Any, path: str, secrets: frozenset[str], out: list[tuple[str, str]]) -> None:
    if path in secrets:
        out.append((path, REDACTED))
        return
    if isinstance(value, str) and value[:1] in "[{":
        with contextlib.suppress(ValueError):
            value = json.loads(value)  # policies and container definitions read better as structure
    if isinstance(value, pulumi.Archive | pulumi.Asset):
        out.append((path, describe_asset(value)))
        return
    if isinstance(value, dict):
        if not value:
            out.append((path, "{}"))
        for key in sorted(value):
            _flatten(value[key], f"{path}.{key}" if path else key, secrets, out)
    elif isinstance(value, list):
        if not value:
            out.append((path, "[]"))
        for index, item in enumerate(value):
            _flatten(item, f"{path}[{index}]", secrets, out)
    else:
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # mocks deliver every number as a float
        out.append((path, json.dumps(value)))


def describe_asset(value: pulumi.Archive | pulumi.Asset) -> str:
    """Assets by content hash, so a code change shows up in the snapshot without the code itself."""
    digest = hashlib.sha256()
    if isinstance(value, pulumi.AssetArchive):
        for name in sorted(value.assets):
            asset = value.assets[name]
            digest.update(name.encode() + b"\0")
            if isinstance(asset, pulumi.FileAsset):
                digest.update(Path(asset.path).read_bytes())
            elif isinstance(asset, pulumi.StringAsset):
                digest.update(asset.text.encode())
        return f"archive({len(value.assets)} files, sha256:{digest.hexdigest()[:16]})"
    if isinstance(value, pulumi.FileArchive | pulumi.FileAsset):
        # By the bytes, as the engine diffs them (pulumi sdk/go/common/resource/archive/archive.go):
        # a built artefact (the SDK layer) that came out differently elsewhere fails the snapshot.
        digest.update(Path(value.path).read_bytes())
    elif isinstance(value, pulumi.StringAsset):
        digest.update(value.text.encode())
    return f"{type(value).__name__}(sha256:{digest.hexdigest()[:16]})"


def render(run: StackRun) -> str:
    children: dict[str | None, list[RecordedResource]] = defaultdict(list)
    for resource in run.resources:
        parent = resource.parent if resource.parent in run.by_urn else None
        children[parent].append(resource)
    lines = [
        f"# stack: {run.stack} ({len([r for r in run.resources if r.custom])} resources)",
        f"# refresh with: {REFRESH_COMMAND}",
        "",
    ]

    def walk(parent: str | None, depth: int) -> None:
        for resource in sorted(children[parent], key=lambda r: (r.custom, r.type, r.name)):
            indent = "  " * depth
            lines.append(f"{indent}{resource.type} {resource.name}")
            flat: list[tuple[str, str]] = []
            inputs = {k: v for k, v in resource.inputs.items() if k not in SKIPPED_INPUTS}
            _flatten(inputs, "", resource.secret_paths, flat)
            for path, value in flat:
                if path:
                    lines.append(f"{indent}    {path} = {value}")
            walk(resource.urn, depth + 1)

    walk(None, 0)
    lines.append("")
    lines.append("# outputs")
    for key in sorted(run.outputs):
        lines.append(f"{key} = {json.dumps(run.outputs[key], sort_keys=True, default=str)}")
    return "\n".join(lines) + "\n"


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="refresh the committed snapshots")
    mode.add_argument("--check", action="store_true", help="fail if a committed snapshot is stale")
    parser.add_argument("stacks", nargs="*", default=list(STACKS))
    args = parser.parse_args(argv)
    stale = []
    for stack in args.stacks:
        run = run_stack(stack)
        if not (args.write or args.check):
            sys.stdout.write(render(run))
            continue
        for path, text in snapshots(run).items():
            if args.write:
                path.parent.mkdir(exist_ok=True)
                path.write_text(text)
                print(f"wrote {_shown(path)}")
            elif not path.exists() or path.read_text() != text:
                stale.append(_shown(path))
    if stale:
        print(f"stale snapshot(s): {', '.join(stale)}; refresh with `{REFRESH_COMMAND}`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
