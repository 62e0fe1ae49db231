"""The layers of `components/`, checked on the import graph read from the source (AST), not by importing.

Every `import` and `from ... import` counts, wherever it stands: at the top, inside a function, or under
`if TYPE_CHECKING:` (a type-only import is still a dependency, and a cycle through one breaks as soon
as someone turns it into a runtime import). The graph must be acyclic and go one way:

    program  ->  concerns (network, platform, mailing, files, chat, frontend, dns)  ->  config, facts -> aws

with `components.aws` (building blocks that know nothing of Motion) and `components.config` importing
only themselves, `components.facts` and `components.app_code` (what app_code/ holds) importing only
the blocks (their input types), and no concern importing the program.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from tests.import_graph import cycles, discover, graph

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ROOT / "components"
CONCERNS = ("network", "platform", "mailing", "files", "chat", "frontend", "dns", "operations")

Graph = dict[str, set[str]]


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path = ROOT, package: str = "components") -> Graph:
    """Module -> the modules of `package` it imports (tests/import_graph.py reads them)."""
    edges = graph(discover({package: root / package}))
    return {module: set(targets) - {package} for module, targets in edges.items()}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if module == "components":
        return "root"
    if parts[:2] == ["components", "aws"]:
        return "aws"
    if parts[:2] == ["components", "config"]:
        return "config"
    if module in ("components.facts", "components.app_code"):
        return "facts"
    if module == "components.program":
        return "program"
    if len(parts) >= 2 and parts[1] in CONCERNS:
        return "concern"
    return "unplaced"


# What each layer may import (besides itself, which every layer may).
ALLOWED: dict[str, set[str]] = {
    "root": set(),
    "aws": set(),
    "config": set(),
    # Typed facts may use the blocks' input types (a table schema is `aws.dynamo.TableSchema`).
    "facts": {"aws"},
    "concern": {"aws", "config", "facts", "concern"},
    "program": {"aws", "config", "facts", "concern"},
}


def layer_violations(graph: Mapping[str, Iterable[str]]) -> list[str]:
    problems = []
    for module, targets in sorted(graph.items()):
        layer = layer_of(module)
        if layer == "unplaced":
            problems.append(f"{module} is in no layer (place it in tests/infra/test_layers.py)")
            continue
        for target in sorted(targets):
            target_layer = layer_of(target)
            if target_layer != layer and target_layer not in ALLOWED[layer]:
                problems.append(f"{module} ({layer}) imports {target} ({target_layer})")
    return problems


def test_components_import_graph_has_no_cycle() -> None:
    assert cycles(import_graph()) == []


def test_components_layers_point_one_way() -> None:
    assert layer_violations(import_graph()) == []


def test_package_inits_import_nothing_of_components() -> None:
    """Importing `components.x.y` runs `components/x/__init__.py` first; an empty one keeps that from
    adding edges the graph above does not show."""
    graph = import_graph()
    inits = [module_name(p) for p in COMPONENTS.rglob("__init__.py")]
    assert {init: sorted(graph[init]) for init in inits if graph[init]} == {}


def test_the_graph_sees_type_only_and_function_level_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n"
    )
    (package / "b.py").write_text("def f():\n    from . import a\n")
    (package / "sub" / "c.py").write_text("from ..b import f\nimport pkg.sub.c\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.b"}
    assert graph["pkg.b"] == {"pkg.a"}
    # Importing pkg.sub.c runs pkg/sub/__init__.py too (the root package is left out of the graph).
    assert graph["pkg.sub.c"] == {"pkg.b", "pkg.sub", "pkg.sub.c"}
    assert cycles(graph) == [["pkg.a", "pkg.b"], ["pkg.sub.c"]]


@pytest.mark.parametrize(
    ("module", "target"),
    [
        ("components.aws.fargate_service", "components.config.model"),
        ("components.aws.dynamo", "components.facts"),
        ("components.aws.iam", "components.chat"),
        ("components.config.loader", "components.aws.iam"),
        ("components.config.model", "components.facts"),
        ("components.chat", "components.program"),
        ("components.facts", "components.config.keys"),
        ("components.facts", "components.chat"),
    ],
)
def test_a_layer_violation_is_reported(module: str, target: str) -> None:
    assert layer_violations({module: {target}}) != []


def test_an_unplaced_module_is_reported() -> None:
    assert layer_violations({"components.helpers": set()}) != []


def _code_strings(source: str) -> list[str]:
    """The string constants of a module other than its docstrings (what its code, not its prose, says)."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_blocks_name_no_motion_paths() -> None:
    """A block takes where things are as inputs: app_code/ and the services in it are Motion's (their
    places are components/app_code.py's and components/facts.py's)."""
    found = {
        module_name(path): [s for s in _code_strings(path.read_text()) if "app_code" in s or "mailer" in s]
        for path in sorted((COMPONENTS / "aws").rglob("*.py"))
    }
    assert {module: strings for module, strings in found.items() if strings} == {}
