"""The repository's import graph, read from source: every `import` and `from ... import` of every
module, wherever it stands (module level, inside functions, under `if TYPE_CHECKING:`), resolved to
the repository's own modules. The layer tests check it: the repository's one-way dependencies
(tests/deps/test_import_layers.py), the program's layers (tests/infra/test_layers.py) and the chat
service's (tests/services/chat/test_chat_layers.py).

Read with `ast` rather than by importing: a type-only import is as much a dependency of the design
as a runtime one, and importing would run the program's and services' module code.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Module:
    name: str
    path: Path

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"


def discover(roots: Mapping[str, Path]) -> dict[str, Module]:
    """Every module of the top-level packages `roots` names (package name -> its directory)."""
    modules: dict[str, Module] = {}
    for package, directory in roots.items():
        for path in sorted(directory.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = [package, *path.relative_to(directory).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join(parts)
            modules[name] = Module(name, path)
    return modules


def _imports(module: Module, modules: Mapping[str, Module]) -> Iterator[tuple[str, int]]:
    """(repository module, line) for each import statement of `module` that names one: `import
    a.b` imports `a.b` (or its longest module prefix); `from a import b` imports the module `a.b`
    when there is one, else `a` (b is a name defined in `a`)."""
    tree = ast.parse(module.path.read_bytes(), str(module.path))
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (target := _resolve(alias.name, modules)) is not None:
                    yield from _with_packages(target, node.lineno, modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            if (target := _resolve(base, modules)) is not None:
                # `from a.b import c` runs a/__init__.py and a/b/__init__.py first, whatever c is.
                yield from _with_packages(target, node.lineno, modules)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in modules:
                    yield submodule, node.lineno


def _with_packages(target: str, line: int, modules: Mapping[str, Module]) -> Iterator[tuple[str, int]]:
    """`target` and every package above it: importing a module runs each enclosing package's
    __init__ first, so an __init__ that imports back closes a cycle."""
    parts = target.split(".")
    for end in range(1, len(parts) + 1):
        name = ".".join(parts[:end])
        if name in modules:
            yield name, line


def _resolve(name: str, modules: Mapping[str, Module]) -> str | None:
    """The repository module `name` refers to: itself, or its longest module prefix."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def graph(modules: Mapping[str, Module]) -> dict[str, dict[str, int]]:
    """module -> {imported repository module -> first line importing it}. A module importing itself
    keeps that edge (a cycle of one)."""
    edges: dict[str, dict[str, int]] = {}
    for name, module in modules.items():
        targets: dict[str, int] = {}
        for target, line in _imports(module, modules):
            targets.setdefault(target, line)
        edges[name] = targets
    return edges


def cycles(edges: Mapping[str, Collection[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or one importing itself
    (Tarjan's algorithm, iterative so a deep chain cannot hit the recursion limit), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        work: list[tuple[str, Iterator[str]]] = [(start, iter(edges.get(start, ())))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges.get(child, ()))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in edges.get(node, ()):
                        found.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    return sorted(found)


def external_imports(module: Module, modules: Mapping[str, Module]) -> dict[str, int]:
    """Top-level names of the third-party and standard-library packages `module` imports -> line."""
    tree = ast.parse(module.path.read_bytes(), str(module.path))
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            if _resolve(name, modules) is None:
                found.setdefault(name.partition(".")[0], node.lineno)
    return found


def within(name: str, packages: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)
