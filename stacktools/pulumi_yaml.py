"""Regenerates the `config:` schema of Pulumi.yaml from `components.config.keys.KEYS`, the one place
keys, types and defaults are declared (`python -m stacktools.pulumi_yaml`). A test keeps the two in step."""

from __future__ import annotations

import json

from components.config.keys import KEYS, REQUIRED
from stacktools.mocked_program import ROOT

HEADER = """name: motion
description: Motion's cloud (AWS + Vercel) - network, platform, mailing, files, chat and frontend
runtime:
  name: python
  options:
    toolchain: pip
    virtualenv: .venv
    typechecker: mypy
config:
  # Generated from components/config/keys.py (KEYS) by `python -m stacktools.pulumi_yaml`; keys without a
  # default are required. The program loads them through the same table, so defaults also hold under mocks.
"""


def render() -> str:
    lines = [HEADER.rstrip("\n")]
    for key in KEYS:
        lines += [f"  {key.name}:", f"    type: {key.kind}"]
        if key.kind == "array":
            lines += ["    items:", "      type: string"]
        description = key.description + (f" ({key.allowed})" if key.allowed else "")
        lines.append(f"    description: {json.dumps(description)}")
        if key.default is REQUIRED:
            continue
        default = list(key.default) if key.kind == "array" else key.default
        lines.append(f"    default: {json.dumps(default)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    (ROOT / "Pulumi.yaml").write_text(render())
