"""SES v2's requests as botocore's model describes them, for the SES stand-in (devstack/ses.py).

The stand-in forwards what it does not answer itself to moto, which answers a request it cannot
parse (a member of the wrong type, a body or path that is no SES call) with a 500. SES itself
refuses such a request with a 4xx, so the stand-in checks each forwarded request against the
operation's input shape in botocore/data/sesv2/2019-09-27/service-2.json.gz first (the same file
boto3 serializes from): the operation its method and path name (`http.requestUri`), then the body's
members (those without a `location`) by type, and the required ones present.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any

from botocore.loaders import Loader

# The ranges of the model's integer types (Smithy: integer is 32-bit, long 64-bit).
_INTEGER_BITS = {"integer": 32, "long": 64}


@dataclass(frozen=True)
class Operation:
    name: str
    method: str
    path: re.Pattern[str]
    input_shape: str | None


@functools.cache
def _model() -> dict[str, Any]:
    model: dict[str, Any] = Loader().load_service_model("sesv2", "service-2")
    return model


@functools.cache
def _operations() -> tuple[Operation, ...]:
    operations = []
    for name, operation in _model()["operations"].items():
        uri = operation["http"]["requestUri"].split("?", 1)[0]
        # `{Label}` is one path segment (a label ending in `+` would take several; SES v2 has none).
        pattern = re.sub(r"\\\{[A-Za-z0-9]+\\\}", "[^/]+", re.escape(uri))
        shape = (operation.get("input") or {}).get("shape")
        operations.append(Operation(name, operation["http"]["method"], re.compile(f"{pattern}/?"), shape))
    # The most literal template first, so `/v2/email/account/details` is not taken for a label.
    return tuple(sorted(operations, key=lambda o: o.path.pattern.count("[^/]+")))


def operation(method: str, path: str) -> Operation | None:
    """The SES v2 operation a request's method and path (without the query) call, or None."""
    for candidate in _operations():
        if candidate.method == method and candidate.path.fullmatch(path):
            return candidate
    return None


def body_problem(operation: Operation, document: dict[str, Any]) -> str | None:
    """Why `document` is not a body of `operation` (a member missing or of the wrong type), or None."""
    if operation.input_shape is None:
        return None
    return _problem(operation.input_shape, document, "", top=True)


def _problem(shape_name: str, value: Any, where: str, *, top: bool = False) -> str | None:
    shape = _model()["shapes"][shape_name]
    kind = shape["type"]
    label = where or "the body"
    if kind == "structure":
        if not isinstance(value, dict):
            return f"{label} is not an object"
        members = {
            name: member
            for name, member in shape["members"].items()
            if not (top and member.get("location"))  # path, query and header members are not in the body
        }
        for name in shape.get("required", []):
            if name in members and value.get(name) is None:
                return f"{where + '.' if where else ''}{name} is required"
        for name, item in value.items():
            if name in members and item is not None:
                problem = _problem(members[name]["shape"], item, f"{where + '.' if where else ''}{name}")
                if problem:
                    return problem
        return None
    if kind == "list":
        if not isinstance(value, list):
            return f"{label} is not a list"
        for index, item in enumerate(value):
            problem = _problem(shape["member"]["shape"], item, f"{label}[{index}]")
            if problem:
                return problem
        return None
    if kind == "map":
        if not isinstance(value, dict):
            return f"{label} is not a map"
        for key, item in value.items():
            problem = _problem(shape["value"]["shape"], item, f"{label}[{key!r}]")
            if problem:
                return problem
        return None
    if kind in ("string", "blob"):  # a blob travels in JSON as base64 text
        if not isinstance(value, str):
            return f"{label} is not a string"
        if "enum" in shape and value not in shape["enum"]:
            return f"{label} is not one of {', '.join(shape['enum'])}"
        if len(value) < shape.get("min", 0):
            return f"{label} is shorter than {shape['min']}"
        return None
    if kind == "boolean":
        return None if isinstance(value, bool) else f"{label} is not a boolean"
    if kind in _INTEGER_BITS:
        bits = _INTEGER_BITS[kind]
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1)
        ):
            return f"{label} is not a {bits}-bit integer"
        return None
    if kind == "timestamp" and isinstance(value, str):  # epoch seconds by default, ISO 8601 allowed
        return None
    if kind in ("double", "float", "timestamp"):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"{label} is not a finite number"
        return None
    return None
