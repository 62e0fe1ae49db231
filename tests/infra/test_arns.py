"""ARNs the program writes take the partition from `aws.get_partition` (components/aws/arns.py): no
string in the program spells `arn:aws`, which names nothing in aws-cn or aws-us-gov."""

from __future__ import annotations

import ast
from pathlib import Path

COMPONENTS = Path(__file__).resolve().parents[2] / "components"


def hard_coded(tree: ast.AST) -> list[ast.Constant]:
    """The string constants spelling the `aws` partition into an ARN, docstrings (prose) aside."""
    prose = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                prose.add(id(body[0].value))
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in prose
        and ("arn:aws:" in node.value or node.value.startswith("arn:aws"))
    ]


def test_no_arn_in_the_program_hard_codes_the_aws_partition() -> None:
    files = sorted(COMPONENTS.rglob("*.py"))
    assert len(files) > 20
    offenders = [
        f"{path.relative_to(COMPONENTS.parent)}:{node.lineno}: {node.value!r}"
        for path in files
        for node in hard_coded(ast.parse(path.read_text(), str(path)))
    ]
    assert not offenders, "build these with components.aws.arns.Place:\n" + "\n".join(offenders)


def test_the_scan_finds_what_it_looks_for() -> None:
    tree = ast.parse(
        '"""arn:aws: in a docstring is prose."""\nX = "arn:aws:sns:us-east-1:1:t"\nY = f"arn:aws:s3:::{X}"\n'
    )
    assert [n.value for n in hard_coded(tree)] == ["arn:aws:sns:us-east-1:1:t", "arn:aws:s3:::"]
