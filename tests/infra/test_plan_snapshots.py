"""Plan snapshots: each stack's resource graph is committed, so every infrastructure change shows up as
a readable diff in the pull request, and with it the stack's picture (snapshots/<stack>.diagram.md).
A stale or missing snapshot fails here with the command that refreshes it."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from stacktools import plan
from stacktools.plan import (
    REDACTED,
    REFRESH_COMMAND,
    STACKS,
    diagram_path,
    render,
    render_diagram,
    snapshot_path,
)
from tests.infra.harness import run_stack


@pytest.mark.parametrize("stack", STACKS)
def test_snapshot_is_current(stack: str) -> None:
    path = snapshot_path(stack)
    expected = render(run_stack(stack))
    assert path.exists(), f"no plan snapshot for {stack}: run `{REFRESH_COMMAND}` and commit {path.name}"
    current = path.read_text()
    if current != expected:
        diff = "".join(
            difflib.unified_diff(
                current.splitlines(True), expected.splitlines(True), "committed", "program", n=1
            )
        )
        pytest.fail(
            f"plan snapshot for {stack} is stale; run `{REFRESH_COMMAND}` and commit it.\n{diff[:6000]}"
        )


@pytest.mark.parametrize("stack", STACKS)
def test_diagram_is_current(stack: str) -> None:
    path = diagram_path(stack)
    expected = render_diagram(run_stack(stack))
    assert path.exists(), f"no diagram for {stack}: run `{REFRESH_COMMAND}` and commit snapshots/{path.name}"
    current = path.read_text()
    if current != expected:
        diff = "".join(
            difflib.unified_diff(
                current.splitlines(True), expected.splitlines(True), "committed", "program", n=1
            )
        )
        pytest.fail(f"snapshots/{path.name} is stale; run `{REFRESH_COMMAND}` and commit it.\n{diff[:6000]}")


def test_render_is_deterministic_and_redacts_secrets() -> None:
    run = run_stack("dev")
    assert render(run) == render(run)
    text = render(run)
    assert "mock-vercel-token" not in text
    assert f"apiToken = {REDACTED}" in text


def test_snapshot_shows_components_as_a_tree() -> None:
    text = render(run_stack("production"))
    assert "\nmotion:network:Network network\n" in text
    assert "\n  aws:ec2/natGateway:NatGateway network-nat-0\n" in text


def test_check_names_a_missing_diagram_and_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The plan snapshot current, the diagram missing: `--check` fails naming the diagram alone.
    (tmp_path / "dev.plan.txt").write_text(snapshot_path("dev").read_text())
    monkeypatch.setattr(plan, "SNAPSHOT_DIR", tmp_path)
    assert plan.main(["--check", "dev"]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "dev.diagram.md") in err
    assert "dev.plan.txt" not in err
    assert f"`{REFRESH_COMMAND}`" in err
    (tmp_path / "dev.diagram.md").write_text(render_diagram(run_stack("dev")))
    assert plan.main(["--check", "dev"]) == 0


def test_write_replaces_the_readmes_one_diagram_block() -> None:
    block = "```mermaid\nflowchart LR\n  a --> b\n```\n"
    readme = "# title\n\n```sh\nmake test\n```\n\n```mermaid\nflowchart LR\n  old\n```\n\nafter\n"
    assert plan.readme_with_diagram(readme, block) == readme.replace(
        "```mermaid\nflowchart LR\n  old\n```\n", block
    )
    # None or two: which one is the picture would be a guess.
    with pytest.raises(ValueError, match="one ```mermaid block"):
        plan.readme_with_diagram("# title\n", block)
    with pytest.raises(ValueError, match="one ```mermaid block"):
        plan.readme_with_diagram(readme + block, block)
    # The dev stack's run covers the README: a stale copy is one more stale file for `--check`.
    assert plan.README in plan.snapshots(run_stack("dev"))
    assert plan.README not in plan.snapshots(run_stack("production"))
