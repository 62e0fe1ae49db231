"""The chat service's layers, read from its source: no import cycles anywhere in `chat_service`
(imports under `if TYPE_CHECKING:` and inside functions count too), an I/O-free core, and the
adapters imported only by the entry point."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.import_graph import cycles, discover, external_imports, graph, within

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


MODULES = discover({PACKAGE: ROOT / PACKAGE})


def _graph() -> dict[str, set[str]]:
    """Module -> what it imports: the chat service's modules (tests/import_graph.py resolves them)
    and, by top-level name, everything else (the standard library, third parties, motion_common)."""
    internal = graph(MODULES)
    return {
        name: set(internal[name]) | set(external_imports(module, MODULES)) for name, module in MODULES.items()
    }


def _within(name: str, prefix: str) -> bool:
    return within(name, (prefix,))


def test_the_checker_finds_cycles_including_type_checking_ones(tmp_path: Path) -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]]
    assert cycles({"a": {"b", "os"}, "b": set()}) == []
    package = tmp_path / "chat_service"
    (package / "core").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "core" / "__init__.py").write_text("")
    (package / "core" / "hub.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from chat_service.core import session\n"
    )
    (package / "core" / "session.py").write_text("def f():\n    import chat_service.core.hub\n")
    planted = graph(discover({"chat_service": package}))
    assert cycles(planted) == [["chat_service.core.hub", "chat_service.core.session"]]


def test_there_are_no_import_cycles_in_the_chat_service() -> None:
    graph = _graph()
    assert {"chat_service.core.hub", "chat_service.core.session", "chat_service.app"} <= set(graph)
    assert cycles(graph) == []


def test_the_core_does_no_io_and_imports_nothing_above_it() -> None:
    stdlib = sys.stdlib_module_names
    for name, imported in _graph().items():
        if not _within(name, "chat_service.core"):
            continue
        for target in imported:
            assert not any(_within(target, f) for f in CORE_FORBIDDEN), f"{name} imports {target}"
            top = target.split(".")[0]
            # The standard library (less the I/O above), orjson, the core itself, and the package's
            # __init__ every import of a submodule runs (plain data, held to the standard library below).
            assert (
                top in stdlib or top == "orjson" or target == PACKAGE or _within(target, "chat_service.core")
            ), f"{name} imports {target}"


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
