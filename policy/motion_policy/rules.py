"""Every rule of the pack, in the order the pack reports them."""

from __future__ import annotations

from . import compute, data, iam_logs, kms, network, s3, stack
from .model import Rule

RULES: list[Rule] = [
    *s3.RULES,
    *data.RULES,
    *compute.RULES,
    *network.RULES,
    *iam_logs.RULES,
    *kms.RULES,
    *stack.RULES,
]
RULES_BY_NAME: dict[str, Rule] = {rule.name: rule for rule in RULES}

if len(RULES_BY_NAME) != len(RULES):
    raise RuntimeError("two policy rules share a name")
