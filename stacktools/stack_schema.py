"""A Python port of the Pulumi CLI's stack-config validation, so tests check our stack files the way
`pulumi up` / `pulumi preview` does before the program starts, and feed the program what the engine
would hand it.

Ported from pulumi/pulumi at commit 1b5949891b3cefcb9974752b24a5ecef0acc86c8; each part names the Go
file and function it follows. The rule, in short:

* Stack files are read with gopkg.in/yaml.v3 (YAML 1.2 scalars: only true/false are booleans, `yes` is
  a string) into `config.Value`s (sdk/go/common/resource/config/value.go, object.go): a native YAML
  bool, int or float becomes its JSON text as a plain string value (so `false` and `"false"`, `2` and
  `"2"` are the same value); a list or map becomes an *object* value holding JSON; `{secure: ...}` a
  secure value; null the empty string.
* `ValidateStackConfigAndApplyProjectConfig` (pkg/workspace/config.go) then, over the project's config
  keys in sorted order: names every project-namespaced key that has no stack value, no `default` and no
  `value` in one "Stack 'x' is missing configuration value(s) ..." error; sets `default`/`value` on the
  stack for keys it lacks; and checks each explicitly typed key (defaults included): `secret: true`
  demands a secure value, and the value must pass `ValidateConfigValue`
  (sdk/go/common/workspace/project.go). A plain string is never an array or an object; "3" passes as
  an integer and "true" as a boolean. The first failing key is the error.
* Keys the project does not declare (`aws:region`, or a misspelt `motion:nattStrategy`) are neither
  validated nor rejected: they pass straight to the program.
* The engine then decrypts the map (`config.Map.Decrypt`, map.go) into key -> string, which the Python
  language host serialises as the PULUMI_CONFIG JSON object (sdk/python/cmd/pulumi-language-python/
  main.go, constructConfig): strings as they are, lists and maps as compact JSON text.

Not ported: ESC environments (`environment:` in a stack file; we use none), the JSON-schema check of
Pulumi.yaml itself beyond `Project.Validate`, and typed values (`config.NewTypedValue`, only made by
`pulumi config set --type`, never by reading a file).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import yaml

# --- gopkg.in/yaml.v3 scalar resolution (go-yaml/yaml v3 resolve.go `resolve`, decode.go `scalar`) ------------


class _GoYamlLoader(yaml.SafeLoader):
    """PyYAML resolves plain scalars by YAML 1.1 (`yes`/`on` are booleans, `0o17` a string); the CLI's
    yaml.v3 by 1.2. Every plain scalar is resolved here by `_go_resolve` instead."""


_GoYamlLoader.yaml_implicit_resolvers = {}
_GO_SCALAR = "tag:motion.devstack,2026:go-scalar"
# yaml.v3 keeps merge keys (`<<`); listed on its first character so it wins over the wildcard below.
_GoYamlLoader.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^<<$"), ["<"])
_GoYamlLoader.add_implicit_resolver(_GO_SCALAR, re.compile(r"(?s).*"), None)

_RESOLVE_MAP: dict[str, Any] = {
    **dict.fromkeys(("true", "True", "TRUE"), True),
    **dict.fromkeys(("false", "False", "FALSE"), False),
    **dict.fromkeys(("", "~", "null", "Null", "NULL"), None),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
_YAML_STYLE_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_INT64 = (-(2**63), 2**63 - 1)
_UINT64_MAX = 2**64 - 1


def _go_parse_int(text: str, *, signed: bool) -> int | None:
    """strconv.ParseInt/ParseUint(text, 0, 64): optional sign (signed only), 0x/0o/0b or a leading 0
    (octal) prefix, else decimal; None where Go returns an error (syntax or range)."""
    sign, body = 1, text
    if signed and body[:1] in ("+", "-"):
        sign, body = (-1 if body[0] == "-" else 1), body[1:]
    base, digits = 10, body
    if len(body) > 1 and body[0] == "0":
        prefix = body[1].lower()
        base, digits = {"x": (16, body[2:]), "o": (8, body[2:]), "b": (2, body[2:])}.get(
            prefix, (8, body[1:])
        )
    if not digits or not re.fullmatch(r"[0-9a-fA-F]+", digits):
        return None
    try:
        value = sign * int(digits, base)
    except ValueError:
        return None
    low, high = _INT64 if signed else (0, _UINT64_MAX)
    return value if low <= value <= high else None


def _go_resolve(text: str) -> Any:
    """yaml.v3's `resolve` for an untagged plain scalar decoded into `any`."""
    if text in _RESOLVE_MAP:
        return _RESOLVE_MAP[text]
    first = text[0]
    if first == ".":
        # strconv.ParseFloat; it takes no underscores without a base prefix.
        try:
            return float(text) if "_" not in text else text
        except ValueError:
            return text
    if first in "+-0123456789":
        # A value that parses as a timestamp is handed to `any` as its string (decode.go keeps
        # timestamps as strings for interface{} targets), and none parses as a number, so the timestamp
        # step of `resolve` changes nothing here and is left out.
        plain = text.replace("_", "")
        for signed in (True, False):
            number = _go_parse_int(plain, signed=signed)
            if number is not None:
                return number
        if _YAML_STYLE_FLOAT.match(plain):
            return float(plain)
    return text


def _construct_go_scalar(loader: _GoYamlLoader, node: yaml.ScalarNode) -> Any:
    return _go_resolve(loader.construct_scalar(node))


_GoYamlLoader.add_constructor(_GO_SCALAR, _construct_go_scalar)


def load_yaml(text: str) -> Any:
    """A document as the CLI's yaml.v3 decodes it into `any` (encoding.YAML.Unmarshal,
    sdk/go/common/encoding/marshal.go)."""
    return yaml.load(text, Loader=_GoYamlLoader)  # noqa: S506 - a SafeLoader subclass


# --- encoding/json.Marshal, as the CLI writes object values and the engine's config strings ------------------


class GoJsonError(ValueError):
    pass


def _go_float(value: float) -> str:
    """encoding/json's float64 encoding (encode.go floatEncoder): shortest digits, 'f' notation unless
    |v| < 1e-6 or >= 1e21, exponent without a leading zero."""
    if math.isnan(value) or math.isinf(value):
        raise GoJsonError(f"json: unsupported value: {_go_float_name(value)}")
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        text = repr(value)  # Python's repr is in exponent form throughout this range
        if len(text) >= 4 and text[-4] == "e" and text[-3] == "-" and text[-2] == "0":
            text = text[:-2] + text[-1]
        return text
    text = format(Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _go_float_name(value: float) -> str:
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


def _go_string(value: str) -> str:
    # Go escapes <, > and & (HTMLEscape) and U+2028/U+2029, and writes other non-ASCII as UTF-8.
    text = json.dumps(value, ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def go_json(value: Any) -> str:
    """json.Marshal of a decoded config object (Ciphertext leaves as `{"secure": ...}`, object.go
    marshalObject); map keys sorted, no spaces."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return _go_string(value)
    if isinstance(value, Ciphertext):
        return go_json({"secure": value.value})
    if isinstance(value, list):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_go_string(k)}:{go_json(v)}" for k, v in sorted(value.items())) + "}"
    raise GoJsonError(f"json: unsupported type: {type(value).__name__}")


# --- config.Value (sdk/go/common/resource/config/value.go, object.go) ------------------------------------------


@dataclass(frozen=True, slots=True)
class Ciphertext:
    """A `secure:` leaf (object.go CiphertextSecret)."""

    value: str


@dataclass(frozen=True, slots=True)
class Value:
    """config.Value: the text, and whether it is secure and whether it is JSON (an object value)."""

    text: str
    secure: bool = False
    object: bool = False


def _go_fmt_v(key: Any) -> str:
    # fmt.Sprintf("%v", k) for the non-string map keys object.go unmarshalObject stringifies.
    if isinstance(key, bool):
        return "true" if key else "false"
    return "<nil>" if key is None else str(key)


def _unmarshal_object(raw: Any) -> Any:
    """object.go unmarshalObject: a decoded YAML/JSON value into the object model."""
    if isinstance(raw, dict):
        if len(raw) == 1 and isinstance(raw.get("secure"), str):  # isSecureValue
            return Ciphertext(raw["secure"])
        return {_go_fmt_v(k): _unmarshal_object(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_unmarshal_object(v) for v in raw]
    if raw is None or isinstance(raw, (bool, int, float, str)):
        return raw
    raise TypeError(f"unexpected wire type {type(raw).__name__}")


def _contains_ciphertext(obj: Any) -> bool:  # object.go object.Secure
    if isinstance(obj, Ciphertext):
        return True
    if isinstance(obj, list):
        return any(_contains_ciphertext(v) for v in obj)
    if isinstance(obj, dict):
        return any(_contains_ciphertext(v) for v in obj.values())
    return False


def _marshal_string(obj: Any) -> Value:
    """object.go MarshalString: scalars become plain (non-object) text, composites JSON objects."""
    if isinstance(obj, (bool, int, float)):
        return Value(go_json(obj))
    if isinstance(obj, str):
        return Value(obj)
    if isinstance(obj, Ciphertext):
        return Value(obj.value, secure=True)
    return Value(go_json(obj), secure=_contains_ciphertext(obj), object=True)


def value_from_yaml(raw: Any) -> Value:
    """Value.UnmarshalYAML for one stack-file value. yaml.v3 calls no unmarshaler for null (decode.go
    `prepare`), so null leaves the zero Value: the empty string (see loaders.go checkForEmptyConfig)."""
    if raw is None:
        return Value("")
    return _marshal_string(_unmarshal_object(raw))


def _parse_go_json(text: str) -> Any:
    """json.Decoder with UseNumber, as object.go UnmarshalJSON: int64 where it fits, else float64."""

    def number(literal: str) -> int | float:
        if re.fullmatch(r"-?[0-9]+", literal) and _INT64[0] <= int(literal) <= _INT64[1]:
            return int(literal)
        return float(literal)

    return json.loads(text, parse_int=number, parse_float=number, parse_constant=_reject_constant)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


def _value_object(value: Value) -> Any:
    """Value.unmarshalObject / object.UnmarshalString."""
    if not value.object:
        return Ciphertext(value.text) if value.secure else value.text
    return _unmarshal_object(_parse_go_json(value.text))


Decrypter = Callable[[str], str]


def _nop_decrypter(ciphertext: str) -> str:
    return ciphertext


# config.NopDecrypter: hands ciphertext back unchanged (crypt.go); Value.Value short-cuts it.
NOP_DECRYPTER: Decrypter = _nop_decrypter


def _decrypt(obj: Any, decrypter: Decrypter) -> Any:  # object.go decrypt (Plaintext values)
    if isinstance(obj, Ciphertext):
        return decrypter(obj.value)
    if isinstance(obj, list):
        return [_decrypt(v, decrypter) for v in obj]
    if isinstance(obj, dict):
        return {k: _decrypt(v, decrypter) for k, v in obj.items()}
    return obj


def decrypted_text(value: Value, decrypter: Decrypter) -> str:
    """Value.Value(decrypter): the text the program sees (plaintext.go marshalText)."""
    if decrypter is NOP_DECRYPTER:
        return value.text
    plaintext = _decrypt(_value_object(value), decrypter)
    return plaintext if isinstance(plaintext, str) else go_json(plaintext)


def decrypt_map(config: Mapping[str, Value], decrypter: Decrypter = NOP_DECRYPTER) -> dict[str, str]:
    """config.Map.Decrypt (map.go): what the engine passes the language host, which writes it as the
    PULUMI_CONFIG JSON object (sdk/python/cmd/pulumi-language-python/main.go constructConfig) that
    pulumi.runtime.config.get_config_env reads (sdk/python/lib/pulumi/runtime/config.py)."""
    return {key: decrypted_text(value, decrypter) for key, value in config.items()}


def secure_keys(config: Mapping[str, Value]) -> list[str]:
    """config.Map.SecureKeys (map.go): PULUMI_CONFIG_SECRET_KEYS."""
    return sorted(key for key, value in config.items() if value.secure)


# --- config keys and paths (config/key.go ParseKey, config/map.go Get/Set, resource/properties_path.go) -------


class StackConfigError(ValueError):
    """What the CLI reports before the program starts; the message is the CLI's."""


def parse_key(text: str) -> str:
    """key.go ParseKey: `<namespace>:<name>`, or the old `<namespace>:config:<name>`; as "ns:name"."""
    parts = text.split(":")
    if len(parts) == 2:
        return text
    if len(parts) == 3 and parts[1] == "config":  # tokens.ParseModuleMember, module "config"
        return f"{parts[0]}:{parts[2]}"
    raise StackConfigError(
        f"could not parse {text} as a configuration key "
        "(configuration keys should be of the form `<namespace>:<name>`)"
    )


def parse_property_path_strict(path: str) -> list[str | int]:
    """properties_path.go parsePropertyPath(path, strict=true)."""
    elements: list[str | int] = []
    if path.startswith("."):
        raise StackConfigError("expected property path to start with a name or index")
    while path:
        if path[0] == ".":
            path = path[1:]
            if not path:
                raise StackConfigError("expected property path to end with a name or index")
            if path[0] == "[":
                raise StackConfigError("expected property name after '.'")
        elif path[0] == "[":
            if len(path) > 1 and path[1] == '"':
                key, i = [], 2
                while True:
                    if i >= len(path):
                        raise StackConfigError("missing closing quote in property name")
                    if path[i] == '"':
                        i += 1
                        break
                    if path[i] == "\\" and i + 1 < len(path) and path[i + 1] == '"':
                        key.append('"')
                        i += 2
                    else:
                        key.append(path[i])
                        i += 1
                if i >= len(path) or path[i] != "]":
                    raise StackConfigError("missing closing bracket in property access")
                element: str | int = "".join(key)
                path = path[i:]
            else:
                close = path.find("]")
                if close == -1:
                    raise StackConfigError("missing closing bracket in array index")
                segment = path[1:close]
                if segment == "*":
                    element = "*"
                elif re.fullmatch(r"[+-]?[0-9]+", segment):
                    element = int(segment)
                else:
                    raise StackConfigError(
                        f'invalid array index: strconv.ParseInt: parsing "{segment}": invalid syntax'
                    )
                path = path[close:]
            elements.append(element)
            path = path[1:]
        else:
            end = next((i for i, c in enumerate(path) if c in ".["), len(path))
            elements.append(path[:end])
            path = path[end:]
    return elements


def _split_key_path(key: str) -> tuple[list[str | int], str]:
    """map.go parseKeyPath: the key's name as a path, and the key of its first segment."""
    namespace, name = key.split(":", 1)
    path = parse_property_path_strict(name)
    if not path:
        raise StackConfigError("empty config key path")
    if not isinstance(path[0], str):
        raise StackConfigError("first path segement of config key must be a string")
    if path[0] == "":
        raise StackConfigError("config key is empty")
    return path, f"{namespace}:{path[0]}"


def map_get(config: Mapping[str, Value], key: str) -> Value | None:
    """config.Map.Get(key, path=true) (map.go): None where Go reports not found."""
    path, root_key = _split_key_path(key)
    root = config.get(root_key)
    if len(path) == 1:
        return root
    obj = _value_object(root or Value(""))
    for element in path[1:]:
        in_list = isinstance(obj, list) and isinstance(element, int) and 0 <= element < len(obj)
        in_map = isinstance(obj, dict) and isinstance(element, str) and element in obj
        if not (in_list or in_map):
            return None
        obj = obj[element]
    return _marshal_string(obj)


def format_property_path(path: list[str | int]) -> str:
    """How a property path prints in the CLI's errors (`a.b[0]["c.d"]`): names joined by dots,
    indices in brackets, names that are not plain identifiers quoted in brackets."""
    out = ""
    for segment in path:
        if isinstance(segment, int):
            out += f"[{segment}]"
        elif re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$]*", segment):
            out += f".{segment}" if out else segment
        else:
            out += '["' + segment.replace('"', '\\"') + '"]'
    return out


def _adjust_object_value(value: Value) -> Any:
    """map.go adjustObjectValue: what a value set at a nested path becomes inside the object ("true"
    and "false" booleans, base-10 integers without a leading zero ints, anything else as it is)."""
    if value.secure or value.object:
        return _value_object(value)
    if value.text in ("true", "false"):
        return value.text == "true"
    if len(value.text) > 1 and value.text[0] == "0":
        return _value_object(value)
    if re.fullmatch(r"[+-]?[0-9]+", value.text) and _INT64[0] <= int(value.text) <= _INT64[1]:
        return int(value.text)  # strconv.Atoi (int is 64-bit where the CLI runs)
    return _value_object(value)


def _new_container(segment: str | int) -> Any:
    """object.go newContainer: an array long enough for the index, or a map."""
    return [None] * (segment + 1) if isinstance(segment, int) else {}


def _object_set(obj: Any, prefix: list[str | int], path: list[str | int], new: Any) -> Any:
    """object.go (*object).Set, returning the updated object; errors carry Go's messages."""
    if not path:
        return new
    head = path[0]
    if obj is None or not isinstance(obj, (list, dict)):
        if obj is not None and len(prefix) != 1:  # COMPAT: only the first level is overwritten
            kind = "an array" if isinstance(head, int) else "a map"
            raise StackConfigError(f"{format_property_path(prefix)}: expected {kind}")
        obj = _new_container(head)
    prefix = [*prefix, head]
    if isinstance(obj, list):
        if not isinstance(head, int):
            raise StackConfigError(f"{format_property_path(prefix)}: key for an array must be an int")
        if head < 0 or head > len(obj):
            raise StackConfigError(f"{format_property_path(prefix)}: array index out of range")
        if head == len(obj):
            obj.append(None)
        obj[head] = _object_set(obj[head], prefix, path[1:], new)
        return obj
    if not isinstance(head, str):
        raise StackConfigError(f"{format_property_path(prefix)}: key for a map must be a string")
    if len(path) == 1 and not obj and head == "secure" and isinstance(new, str):
        raise StackConfigError('maps with the single key "secure" are reserved')
    obj[head] = _object_set(obj.get(head), prefix, path[1:], new)
    return obj


def map_set(config: dict[str, Value], key: str, value: Value) -> None:
    """config.Map.Set(key, value, path=true) (map.go): a one-segment key is set as it is; a nested one
    (`motion:a.b`, `motion:list[0]`) is set inside its root's object, creating containers."""
    path, root_key = _split_key_path(key)
    if len(path) == 1:
        config[root_key] = value
        return
    new = _adjust_object_value(value)
    root = config.get(root_key)
    obj = _value_object(root) if root is not None else _new_container(path[1])
    config[root_key] = _marshal_string(_object_set(obj, path[:1], path[1:], new))


# --- the project's config schema (sdk/go/common/workspace/project.go, loaders.go) ------------------------------


@dataclass(frozen=True, slots=True)
class ItemsType:
    """ProjectConfigItemsType."""

    type: str
    items: ItemsType | None = None


@dataclass(frozen=True, slots=True)
class ConfigType:
    """ProjectConfigType; `default`/`value` None means absent (Go's nil `any`)."""

    type: str | None = None
    items: ItemsType | None = None
    default: Any = None
    value: Any = None
    secret: bool = False
    description: str = ""


@dataclass(frozen=True, slots=True)
class Project:
    name: str
    config: Mapping[str, ConfigType]


def _items(raw: Any) -> ItemsType | None:
    if raw is None:
        return None
    return ItemsType(str(raw.get("type", "")), _items(raw.get("items")))


def infer_full_type_name(type_name: str, items: ItemsType | None) -> str:
    """project.go InferFullTypeName: `array<string>`, `array<array<string>>`."""
    if items is not None:
        return f"array<{infer_full_type_name(items.type, items.items)}>"
    return type_name


def _go_atoi(text: str) -> bool:
    # strconv.Atoi: optional sign, decimal digits only, within int64.
    return bool(re.fullmatch(r"[+-]?[0-9]+", text)) and _INT64[0] <= int(text) <= _INT64[1]


def validate_config_value(type_name: str, items: ItemsType | None, value: Any) -> bool:
    """project.go ValidateConfigValue, the type rule for defaults and stack values alike."""
    if type_name == "string":
        return isinstance(value, str)
    if type_name == "integer":
        if isinstance(value, bool):
            return False
        if isinstance(value, int):
            return True
        # YAML/JSON numbers can arrive as float64: whole ones count as integers.
        if isinstance(value, float):
            return math.isfinite(value) and value == math.trunc(value)
        if isinstance(value, str):
            return _go_atoi(value)
        return False
    if type_name == "boolean":
        return value in ("true", "false") if isinstance(value, str) else isinstance(value, bool)
    if type_name == "object":
        return isinstance(value, dict)
    # Anything else (also an unknown type name) must be an array whose items pass.
    if not isinstance(value, list) or items is None:
        return False
    return all(validate_config_value(items.type, items.items, item) for item in value)


def _namespaced_by_project(project_name: str, key: str) -> bool:
    """project.go configKeyIsNamespacedByProject."""
    return ":" not in key or key.startswith(project_name + ":")


def _rewrite_shorthand(project_name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """project.go RewriteShorthandConfigValues: `key: value` is a default for the project's own keys and a
    value for other namespaces. isPrimitiveValue takes string, int and bool (not float), or an array."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        primitive = isinstance(value, (str, bool)) or (
            isinstance(value, int) and _INT64[0] <= value <= _INT64[1]
        )
        if primitive or isinstance(value, list):
            value = {"default" if _namespaced_by_project(project_name, key) else "value": value}
        out[key] = value
    return out


def validate_project(project: Project) -> None:
    """project.go (*Project).Validate. Go walks a map (random order) and stops at the first problem;
    keys are taken in sorted order here so the error is stable."""
    for key, ctype in sorted(project.config.items()):
        if ctype.default is not None and ctype.value is not None:
            raise StackConfigError(
                f"project config '{key}' cannot have both a 'default' and 'value' attribute"
            )
        if _namespaced_by_project(project.name, key):
            if ctype.type == "array" and ctype.items is None:
                raise StackConfigError(
                    f"The configuration key '{key}' declares an array "
                    "but does not specify the underlying type via the 'items' attribute"
                )
            typed_default = ctype.type is not None and ctype.default is not None
            if typed_default and not validate_config_value(ctype.type or "", ctype.items, ctype.default):
                raise StackConfigError(
                    f"The default value specified for configuration key '{key}' is not of the "
                    f"expected type '{infer_full_type_name(ctype.type or '', ctype.items)}'"
                )
        else:
            if ctype.type is not None:
                raise StackConfigError(
                    f"Configuration key '{key}' is not namespaced by the project and should not define a type"
                )
            if ctype.default is not None:
                raise StackConfigError(
                    f"Configuration key '{key}' is not namespaced by the project and "
                    "should not define a default value. "
                    "Did you mean to use the 'value' attribute instead of 'default'?"
                )
            if ctype.value is None:
                raise StackConfigError(
                    f"Configuration key '{key}' is namespaced and must provide an attribute 'value'"
                )


def load_project(text: str) -> Project:
    """loaders.go LoadProjectBytes: decode, rewrite shorthand config, then Project.Validate."""
    raw = load_yaml(text)
    if not isinstance(raw, dict):
        raise StackConfigError(f"expected project to be an object, was '{type(raw).__name__}'")
    if "name" not in raw:  # ValidateProject
        raise StackConfigError("project is missing a 'name' attribute")
    name = raw["name"]
    if not isinstance(name, str) or not name:
        raise StackConfigError("project is missing a non-empty string 'name' attribute")
    config = raw.get("config")
    types: dict[str, ConfigType] = {}
    # `config: <string>` is the old spelling of stackConfigDir (RewriteConfigPathIntoStackConfigDir).
    if isinstance(config, dict):
        for key, entry in _rewrite_shorthand(name, config).items():
            if not isinstance(entry, dict):
                raise StackConfigError(f"cannot unmarshal {entry!r} into workspace.ProjectConfigType ({key})")
            types[key] = ConfigType(
                type=entry.get("type"),
                items=_items(entry.get("items")),
                default=entry.get("default"),
                value=entry.get("value"),
                secret=bool(entry.get("secret", False)),
                description=str(entry.get("description", "")),
            )
    project = Project(name, types)
    validate_project(project)
    return project


def load_stack(project: Project, text: str) -> tuple[dict[str, Value], str | None]:
    """loaders.go LoadProjectStackBytes with config.Map/Value.UnmarshalYAML: the stack's config (keys
    without a namespace take the project's, stackConfigNamespacedWithProject) and the warning
    checkForEmptyConfig prints for keys left empty, if any."""
    raw = load_yaml(text)
    if raw is None:
        return {}, None
    if not isinstance(raw, dict):
        raise StackConfigError(f"expected project to be an object, was '{type(raw).__name__}'")
    document = raw.get("config") or {}
    if not isinstance(document, dict):
        raise StackConfigError("could not unmarshal map: the stack's config is not a map")
    return config_from_document(project, document), empty_config_warning(document)


def config_from_document(project: Project, document: Mapping[str, Any]) -> dict[str, Value]:
    """A stack file's decoded `config:` mapping as the config.Map the CLI builds from it."""
    config: dict[str, Value] = {}
    for raw_key, raw_value in document.items():
        key = str(raw_key) if ":" in str(raw_key) else f"{project.name}:{raw_key}"
        config[parse_key(key)] = value_from_yaml(raw_value)
    return config


def empty_config_warning(document: Mapping[str, Any]) -> str | None:
    """loaders.go checkForEmptyConfig (Go lists the keys in map order; sorted here)."""
    keys = [f'"{k}"' for k in sorted(map(str, document)) if document[k] is None]
    if not keys:
        return None
    plural = "s" if len(keys) > 1 else ""
    joined = keys[0] if len(keys) == 1 else (" and " if len(keys) == 2 else ", ").join(keys)
    return (
        f"No value for configuration key{plural} {joined}. "
        'This is currently treated as an empty string `""`, '
        "but will be treated as `null` in a future version of pulumi.\n"
        f'Set the value{plural} to `""` to avoid this warning.'
    )


# --- ValidateStackConfigAndApplyProjectConfig (pkg/workspace/config.go) ----------------------------------------


def _format_missing_keys(keys: list[str]) -> str:
    """config.go formatMissingKeys."""
    if len(keys) == 1:
        return f"'{keys[0]}'"
    keys = sorted(keys)
    return (
        ", ".join(f"'{k}'" for k in keys[:-2])
        + (", " if len(keys) > 2 else "")
        + (f"'{keys[-2]}' and '{keys[-1]}'")
    )


def _project_key(project_name: str, key: str) -> str:
    """config.go parseConfigKey: a key without a namespace is the project's."""
    return parse_key(key) if ":" in key else f"{project_name}:{key}"


def _config_value(raw: Any) -> Value:
    """config.go createConfigValue: string/int/bool defaults as their %v text, the rest as JSON objects."""
    if isinstance(raw, bool):
        return Value("true" if raw else "false")
    if isinstance(raw, str) or (isinstance(raw, int) and _INT64[0] <= raw <= _INT64[1]):
        return Value(str(raw))
    return Value(go_json(_unmarshal_object(raw)), object=True)


def _validate_stack_config_value(
    stack_name: str, key: str, ctype: ConfigType, stack_value: Value, decrypted: str
) -> None:
    """config.go validateStackConfigValue."""
    if ctype.secret and not stack_value.secure:
        raise StackConfigError(
            f"Stack '{stack_name}' with configuration key '{key}' must be encrypted as it's secret"
        )
    content: Any = decrypted
    if stack_value.object:
        # json.Unmarshal into `any`: numbers are float64. Go's JSON error text is not reproduced; object
        # values read from YAML are always valid JSON, so only hand-made Values can fail here.
        try:
            content = json.loads(decrypted, parse_int=float, parse_constant=_reject_constant)
        except ValueError as err:
            raise StackConfigError(f"invalid character in JSON config value: {err}") from err
    assert ctype.type is not None
    if not validate_config_value(ctype.type, ctype.items, content):
        raise StackConfigError(
            f"Stack '{stack_name}' with configuration key '{key}' must be of type "
            f"'{infer_full_type_name(ctype.type, ctype.items)}'"
        )


def merge_config(
    stack_name: str,
    project: Project,
    config: dict[str, Value],
    decrypter: Decrypter | None = NOP_DECRYPTER,
    *,
    validate: bool = True,
) -> None:
    """config.go mergeConfig: applies project defaults/values to `config` in place and, with `validate`,
    raises the CLI's error. A `decrypter` of None skips the value checks, as Go does for a nil one."""
    missing: list[str] = []
    for project_key in sorted(project.config):
        ctype = project.config[project_key]
        key = _project_key(project.name, project_key)
        found = map_get(config, key) is not None
        has_default, has_value = ctype.default is not None, ctype.value is not None
        if not found and not has_value and not has_default and key.split(":", 1)[0] == project.name:
            missing.append(project_key)
            continue
        if not found and (has_value or has_default):
            # Go takes `value`, then lets `default` win; Validate forbids both at once.
            map_set(config, key, _config_value(ctype.default if has_default else ctype.value))
    if not validate:
        return
    if missing:
        noun = "values" if len(missing) > 1 else "value"
        raise StackConfigError(
            f"Stack '{stack_name}' is missing configuration {noun} {_format_missing_keys(missing)}"
        )
    if decrypter is None:  # validateStackConfigValues returns early without a decrypter
        return
    for project_key in sorted(project.config):
        ctype = project.config[project_key]
        key = _project_key(project.name, project_key)
        stack_value = map_get(config, key) or Value("")
        if ctype.type is not None:  # IsExplicitlyTyped
            _validate_stack_config_value(
                stack_name, project_key, ctype, stack_value, decrypted_text(stack_value, decrypter)
            )


def validate_stack_config_and_apply_project_config(
    stack_name: str, project: Project, config: dict[str, Value], decrypter: Decrypter | None = NOP_DECRYPTER
) -> None:
    """config.go ValidateStackConfigAndApplyProjectConfig (`pulumi up`/`preview` wrap its error as
    "validating stack config: ...")."""
    merge_config(stack_name, project, config, decrypter, validate=True)


def apply_project_config(
    stack_name: str, project: Project, config: dict[str, Value], decrypter: Decrypter | None = NOP_DECRYPTER
) -> None:
    """config.go ApplyProjectConfig: defaults without validation (`--skip-config-validation`)."""
    merge_config(stack_name, project, config, decrypter, validate=False)
