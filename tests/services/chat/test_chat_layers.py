"""The chat service's layers, read from its source: no import cycles anywhere in `chat_service`
(imports under `if TYPE_CHECKING:` and inside functions count too), an I/O-free core, and the
adapters imported only by the entry point."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
ROOT = REPO / "app_code" / "chat"
PACKAGE = "chat_service"

# What a core module may not import: I/O libraries, threads and sockets, and the layers above it.
CORE_FORBIDDEN = (
    "picows",
    "redis",
    "boto3",
    "botocore",
    "uvloop",
    "concurrent",
    "socket",
    "threading",
    "ssl",
    "urllib",
    "http",
    "subprocess",
    "selectors",
    "os",
    "motion_common",
    "chat_service.adapters",
    "chat_service.app",
    "chat_service.settings",
    "chat_service.__main__",
)


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module `name` imports, wherever the import statement is (absolute names; a `from
    package import name` counts as an import of the submodule when there is one)."""
    is_package = path.name == "__init__.py"
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                assert node.module is not None
                source = node.module
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                imported.add(candidate if candidate in modules else source)
    return imported


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module, or with an edge to themselves
    (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in graph:
                continue  # outside the package
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_the_checker_finds_cycles_including_type_checking_ones(tmp_path: Path) -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"a"}}) == [["a"]]
    assert _cycles({"a": {"b", "os"}, "b": set()}) == []
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from chat_service.core import hub\n"
        "def f():\n    import chat_service.core.session\n"
    )
    modules = {"chat_service.core.hub": module, "chat_service.core.session": module}
    assert _imports("chat_service.x", module, modules) >= {
        "chat_service.core.hub",
        "chat_service.core.session",
    }


def test_there_are_no_import_cycles_in_the_chat_service() -> None:
    graph = _graph()
    assert {"chat_service.core.hub", "chat_service.core.session", "chat_service.app"} <= set(graph)
    assert _cycles(graph) == []


def test_the_core_does_no_io_and_imports_nothing_above_it() -> None:
    stdlib = sys.stdlib_module_names
    for name, imported in _graph().items():
        if not _within(name, "chat_service.core"):
            continue
        for target in imported:
            assert not any(_within(target, f) for f in CORE_FORBIDDEN), f"{name} imports {target}"
            top = target.split(".")[0]
            # The standard library (less the I/O above), orjson, and the core itself.
            assert top in stdlib or top == "orjson" or _within(target, "chat_service.core"), (
                f"{name} imports {target}"
            )


def test_only_the_entry_point_imports_both_core_and_adapters() -> None:
    graph = _graph()
    for name, imported in graph.items():
        if _within(name, "chat_service.adapters") or name == "chat_service.app":
            continue
        adapters = [t for t in imported if _within(t, "chat_service.adapters")]
        assert not adapters, f"{name} imports {adapters}"
    # The facts the infrastructure loads by path stay standard library only.
    for name in ("chat_service", "chat_service.schema"):
        assert all(t.split(".")[0] in sys.stdlib_module_names for t in graph[name]), graph[name]
