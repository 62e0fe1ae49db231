"""The layers, kept honest: dependencies point one way, and no module imports another that imports
it back (type-only imports included), read from source by `import_graph`.

    services (app_code)      import nothing of the program or the tools; motion_common none of them
    components               the program: imports no service code (facts are loaded by path), no tools
    stacktools               the program offline: imports components, never the local backend
    devstack                 the local backend: may use components' facts and stacktools, not tests
    policy                   the policy pack: standalone (its own requirements)

Within the program and the chat service, the layers have their own tests (tests/infra/test_layers.py,
tests/services/chat/test_chat_layers.py) on the same graph (tests/import_graph.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.import_graph import REPO, cycles, discover, graph, within

APP = REPO / "app_code"
ROOTS = {
    "components": REPO / "components",
    "stacktools": REPO / "stacktools",
    "devstack": REPO / "devstack",
    "motion_policy": REPO / "policy" / "motion_policy",
    "motion_common": APP / "common" / "motion_common",
    "mailer": APP / "mailer" / "mailer",
    "files_service": APP / "files" / "files_service",
    "chat_service": APP / "chat" / "chat_service",
    "task_runner": APP / "task_runner" / "task_runner",
    "tests": REPO / "tests",
}
SERVICES = ("motion_common", "mailer", "files_service", "chat_service", "task_runner")
MODULES = discover(ROOTS)
EDGES = graph(MODULES)


@dataclass(frozen=True)
class Forbidden:
    """Modules under `source` must not import modules under `forbidden` (nor, when `external` is
    given, those third-party top-level packages)."""

    name: str
    source: tuple[str, ...]
    forbidden: tuple[str, ...]
    external: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()


CONTRACTS = [
    *(
        Forbidden(
            f"{service} imports nothing of the program, the tools or another service (but motion_common)",
            (service,),
            ("components", "stacktools", "devstack", "motion_policy", *SERVICES),
            allowed=(service, "motion_common"),
        )
        for service in SERVICES
    ),
    Forbidden(
        "the program imports no service code (facts are loaded by path) and no tool",
        ("components",),
        ("stacktools", "devstack", "motion_policy", *SERVICES),
    ),
    Forbidden("the offline tools never need the local backend", ("stacktools",), ("devstack", "tests")),
    Forbidden(
        "nothing but the tests imports the tests",
        ("components", "stacktools", "devstack", "motion_policy", *SERVICES),
        ("tests",),
    ),
    Forbidden(
        "the policy pack stands alone (it installs only its own requirements)",
        ("motion_policy",),
        ("components", "stacktools", "devstack", *SERVICES),
    ),
]


def _imports_of(sources: Iterable[str]) -> list[tuple[str, str, int]]:
    return [
        (module, target, line)
        for module, targets in EDGES.items()
        if within(module, sources)
        for target, line in targets.items()
    ]


def test_the_graph_sees_every_package_and_type_only_imports(tmp_path: Path) -> None:
    # A contract over a package the graph does not know would pass vacuously.
    assert all(any(within(m, (name,)) for m in MODULES) for name in ROOTS)
    for contract in CONTRACTS:
        assert any(within(m, contract.source) for m in MODULES), contract.name
    # The reader takes imports under `if TYPE_CHECKING:` and inside functions too.
    from tests import import_graph

    sample = tmp_path
    (sample / "pkg").mkdir()
    (sample / "pkg" / "__init__.py").write_text("")
    (sample / "pkg" / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n"
    )
    (sample / "pkg" / "b.py").write_text("def f():\n    from . import a\n    return a\n")
    modules = import_graph.discover({"pkg": sample / "pkg"})
    assert import_graph.cycles(import_graph.graph(modules)) == [["pkg.a", "pkg.b"]]
    # A package's __init__ runs before any of its modules: one that imports back closes a cycle.
    (sample / "pkg" / "sub").mkdir()
    (sample / "pkg" / "sub" / "__init__.py").write_text("from pkg.sub.x import X\n")
    (sample / "pkg" / "sub" / "x.py").write_text("from pkg.sub import y\n")
    (sample / "pkg" / "sub" / "y.py").write_text("")
    modules = import_graph.discover({"pkg": sample / "pkg"})
    assert ["pkg.sub", "pkg.sub.x"] in import_graph.cycles(import_graph.graph(modules))


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.name)
def test_dependencies_point_one_way(contract: Forbidden) -> None:
    broken = [
        f"{MODULES[module].path.relative_to(REPO)}:{line} imports {target}"
        for module, target, line in _imports_of(contract.source)
        if within(target, contract.forbidden) and not within(target, contract.allowed)
    ]
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("package", sorted(ROOTS))
def test_no_module_imports_one_that_imports_it_back(package: str) -> None:
    found = [c for c in cycles(EDGES) if any(within(m, (package,)) for m in c)]
    assert not found, found
