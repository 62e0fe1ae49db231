"""Our stack files read the way `pulumi up` reads them: `Pulumi.<stack>.yaml` checked against
`Pulumi.yaml` by the CLI's rule (stacktools/stack_schema.py), project defaults applied, and the config
turned into the strings the engine hands the program (PULUMI_CONFIG). Tools only (tests, the local
backend, the offline plan); the deployed program gets its config from the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from components.config.keys import PROJECT
from components.config.loader import load_config
from components.config.model import StackConfig
from stacktools import stack_schema

ROOT = Path(__file__).resolve().parents[1]


def project() -> stack_schema.Project:
    return stack_schema.load_project((ROOT / "Pulumi.yaml").read_text())


def stack_document(stack: str) -> dict[str, Any]:
    """`Pulumi.<stack>.yaml`'s `config:` as the CLI's YAML decoder reads it (lists as lists, true as a bool)."""
    document = stack_schema.load_yaml((ROOT / f"Pulumi.{stack}.yaml").read_text())
    return dict(document.get("config") or {})


def engine_config(stack: str, document: Mapping[str, Any], *, validate: bool = True) -> dict[str, str]:
    """What the engine passes the program for this stack document: validated as the CLI does (raises
    `StackConfigError` with its message), or, with `validate=False`, only defaulted, as
    `pulumi up --skip-config-validation` does."""
    schema = project()
    config = stack_schema.config_from_document(schema, document)
    stack_schema.merge_config(stack, schema, config, validate=validate)
    return stack_schema.decrypt_map(config)


def read_stack_file(stack: str) -> dict[str, str]:
    """`Pulumi.<stack>.yaml`'s config (fully qualified keys) in the form the program receives it."""
    return engine_config(stack, stack_document(stack))


def load_engine_config(stack: str, engine: Mapping[str, str]) -> StackConfig:
    """The program's loader over what the engine passes (fully qualified keys), as `pulumi up` runs it."""
    namespace = f"{PROJECT}:"
    values = {key[len(namespace) :]: value for key, value in engine.items() if key.startswith(namespace)}
    return load_config(stack, values, engine.get("aws:region", ""))


def load_stack_file(stack: str) -> StackConfig:
    """A stack's validated config from its file, for tools that mirror the stack (e.g. `make run`)."""
    return load_engine_config(stack, read_stack_file(stack))
