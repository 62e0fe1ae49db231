"""Facts the services state about themselves (routes, table schemas, ports), read by the program.

Loaded by file path, not imported as packages: these modules are plain data (standard library
only), and the program must not pull in the services' dependencies.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

APP_CODE = Path(__file__).resolve().parents[1] / "app_code"


def load_app_module(relative: str) -> ModuleType:
    """e.g. `load_app_module("files/files_service/routes.py")`."""
    path = APP_CODE / relative
    spec = importlib.util.spec_from_file_location(f"_app_facts_{relative.replace('/', '_')[:-3]}", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module
