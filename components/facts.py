"""Facts the services state about themselves (routes, table schemas, ports), read by the program.

Loaded by file path, not imported as packages: these modules are plain data (standard library
only), and the program must not pull in the services' dependencies.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

APP_CODE = Path(__file__).resolve().parents[1] / "app_code"


def load_app_module(relative: str) -> ModuleType:
    """e.g. `load_app_module("files/files_service/routes.py")`.

    Compiled from source and never cached: importing by path (importlib's SourceLoader) would write
    `__pycache__/*.pyc` into app_code/, which is the images' build context, and a program run must
    leave the tree it deploys from unchanged. These modules are a few hundred lines, so compiling
    them on every run costs nothing measurable.
    """
    path = APP_CODE / relative
    name = f"_app_facts_{relative.replace('/', '_')[:-3]}"
    module = ModuleType(name)
    module.__file__ = str(path)
    # dont_inherit: this module's own `from __future__` flags must not leak into the service's code.
    code = compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
    sys.modules[name] = module  # dataclasses look their module up while being defined
    try:
        exec(code, module.__dict__)  # noqa: S102 - our own service module, as an import would run it
    except BaseException:
        del sys.modules[name]
        raise
    return module
