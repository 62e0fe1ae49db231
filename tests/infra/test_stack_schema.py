"""The port of the CLI's stack-config validation (stacktools/stack_schema.py), proven against the cases of
pulumi/pulumi's own Go tests: pkg/workspace/config_project_test.go (CP), pkg/workspace/config_test.go
(CT) and sdk/go/common/workspace/project_test.go (PT). Each test names the Go test it ports."""

from __future__ import annotations

import base64
import math
from typing import Any

import pytest

from stacktools import stack_schema as s
from stacktools.stack_schema import ItemsType, StackConfigError, Value


def validate(
    project_yaml: str, stack_yaml: str, decrypter: s.Decrypter | None = s.NOP_DECRYPTER
) -> dict[str, str]:
    """LoadProject + LoadProjectStack + ValidateStackConfigAndApplyProjectConfig, then the values as
    the engine's Map.Decrypt hands them over (`getConfigValue` in the Go tests, with NopDecrypter)."""
    project = s.load_project(project_yaml)
    config, _ = s.load_stack(project, stack_yaml)
    s.validate_stack_config_and_apply_project_config("dev", project, config, decrypter)
    return s.decrypt_map(config, decrypter or s.NOP_DECRYPTER)


def rejected(project_yaml: str, stack_yaml: str, decrypter: s.Decrypter | None = s.NOP_DECRYPTER) -> str:
    with pytest.raises(StackConfigError) as err:
        validate(project_yaml, stack_yaml, decrypter)
    return str(err.value)


def b64_decrypter(ciphertext: str) -> str:  # config.Base64Crypter
    return base64.b64decode(ciphertext).decode()


# --- CP: ValidateStackConfigAndApplyProjectConfig ----------------------------------------------------------


def test_stack_config_is_inherited_from_project_config() -> None:
    """CP TestStackConfigIsInheritedFromProjectConfig"""
    values = validate(
        "name: test\nruntime: dotnet\nconfig:\n  instanceSize: t3.micro\n  instanceCount: 20\n  protect: true",
        "config:\n  test:instanceSize: t4.large",
    )
    assert values == {"test:instanceSize": "t4.large", "test:instanceCount": "20", "test:protect": "true"}


def test_namespaced_config_values_are_inherited() -> None:
    """CP TestNamespacedConfigValuesAreInheritedCorrectly"""
    values = validate(
        'name: test\nruntime: dotnet\nconfig:\n  aws:region: us-west-1\n  pulumi:disable-default-providers: ["*"]\n'
        "  instanceSize: t3.micro",
        "config:\n  test:instanceSize: t4.large",
    )
    assert values == {
        "test:instanceSize": "t4.large",
        "aws:region": "us-west-1",
        "pulumi:disable-default-providers": '["*"]',
    }


def test_stack_keys_without_namespace_take_the_projects() -> None:
    """CP TestLoadingStackConfigWithoutNamespacingTheProject"""
    values = validate(
        "name: test\nruntime: dotnet\nconfig:\n  aws:region: us-west-1\n  instanceSize: t3.micro",
        "config:\n  instanceSize: t4.large",
    )
    assert values == {"test:instanceSize": "t4.large", "aws:region": "us-west-1"}


def test_untyped_project_config_is_not_validated() -> None:
    """CP TestUntypedProjectConfigValuesAreNotValidated"""
    values = validate(
        "name: test\nruntime: dotnet\nconfig:\n  instanceSize: t3.micro\n  aws:region: us-west-1",
        "config:\n  instanceSize: 9999\n  aws:region: 42",
    )
    assert values == {"test:instanceSize": "9999", "aws:region": "42"}


def test_only_default_or_only_value() -> None:
    """CP TestUntypedProjectConfigValuesWithOnlyDefaultOrOnlyValue"""
    values = validate(
        "name: test\nruntime: dotnet\nconfig:\n  instanceSize:\n    default: t3.micro\n  region:\n"
        "    value: us-west-1",
        "config:\n  aws:answer: 42",
    )
    assert values == {"test:instanceSize": "t3.micro", "test:region": "us-west-1", "aws:answer": "42"}


def test_undeclared_stack_keys_pass() -> None:
    """CP TestUntypedStackConfigValuesDoNeedProjectDeclaration"""
    values = validate(
        "name: test\nruntime: dotnet\nconfig:\n  createVpc: true", "config:\n  instanceSize: 42"
    )
    assert values == {"test:instanceSize": "42", "test:createVpc": "true"}


def test_object_values_pass_down_as_json() -> None:
    """CP TestUntypedProjectConfigObjectValuesPassedDownToStack"""
    values = validate(
        "name: test\nruntime: dotnet\nconfig:\n  instanceSize:\n    value:\n      hello: world\n"
        "  aws:config:\n    value:\n      region: us-west-1",
        "config:\n  aws:whatever: 42",
    )
    assert values == {
        "test:instanceSize": '{"hello":"world"}',
        "aws:config": '{"region":"us-west-1"}',
        "aws:whatever": "42",
    }


def test_a_string_is_not_an_array() -> None:
    """CP TestStackConfigErrorsWhenStackValueIsNotCorrectlyTyped"""
    project = (
        "name: test\nruntime: dotnet\nconfig:\n  values:\n    type: array\n    items:\n      type: string\n"
    )
    project += "    default: [value]"
    message = rejected(project, "config:\n  test:values: someValue\n")
    assert message == "Stack 'dev' with configuration key 'values' must be of type 'array<string>'"
    # What the issue was about: a JSON list in a string is still a string.
    assert rejected(project, "config:\n  test:values: '[\"a\"]'\n") == message
    assert validate(project, "config:\n  test:values:\n    - a\n") == {"test:values": '["a"]'}


def test_integer_type() -> None:
    """CP TestStackConfigIntegerTypeIsCorrectlyValidated"""
    project = "name: test\nruntime: dotnet\nconfig:\n  importantNumber:\n    type: integer\n"
    assert validate(project, "config:\n  test:importantNumber: 20\n") == {"test:importantNumber": "20"}
    assert (
        rejected(project, "config:\n  test:importantNumber: hello\n")
        == "Stack 'dev' with configuration key 'importantNumber' must be of type 'integer'"
    )


ARRAY = "    type: array\n    items:\n      type: string\n"


@pytest.mark.parametrize(
    ("config", "message"),
    [  # CP TestStackConfigErrorsWhenMissing{,Two,Multiple}StackValue...ForConfigTypeWithNoDefault
        ("  values:\n" + ARRAY, "Stack 'dev' is missing configuration value 'values'"),
        (
            "  another:\n    type: string\n  values:\n" + ARRAY,
            "Stack 'dev' is missing configuration values 'another' and 'values'",
        ),
        (
            "  hello:\n    type: integer\n  values:\n" + ARRAY + "  world:\n    type: string",
            "Stack 'dev' is missing configuration values 'hello', 'values' and 'world'",
        ),
    ],
)
def test_missing_required_keys(config: str, message: str) -> None:
    assert rejected("name: test\nruntime: dotnet\nconfig:\n" + config, "") == message


def test_no_project_config_means_no_checks() -> None:
    """CP TestStackConfigDoesNotErrorWhenProjectHasNotDefinedConfig"""
    values = validate("name: test\nruntime: dotnet", "config:\n  hello: 21\n  world: 42\n  another: 42")
    assert values == {"test:hello": "21", "test:world": "42", "test:another": "42"}


def test_secret_keys_need_secure_values() -> None:
    """CP TestStackConfigSecretIsCorrectlyValidated"""
    project = (
        "name: test\nruntime: dotnet\nconfig:\n  importantNumber:\n    type: integer\n    secret: true\n"
    )
    secure = f"config:\n  test:importantNumber:\n    secure: {base64.b64encode(b'20').decode()}\n"
    values = validate(project, secure, b64_decrypter)
    assert values == {"test:importantNumber": "20"}  # the engine's Decrypt hands over the plaintext
    assert (
        rejected(project, "config:\n  test:importantNumber: 20\n", b64_decrypter)
        == "Stack 'dev' with configuration key 'importantNumber' must be encrypted as it's secret"
    )


def test_uint64_values() -> None:
    """CP TestStackConfigUInt64"""
    values = validate("name: test\nruntime: dotnet", "config:\n  test:instanceSize: 18446744073709551615")
    assert values == {"test:instanceSize": "18446744073709551615"}


def test_stack_values_of_every_shape() -> None:  # the stack half of CP TestEnvironmentMerge (no environment)
    stack = (
        "config:\n  test:boolean: true\n  test:number: 42\n  test:string: foo\n  test:array:\n    - first\n"
        "    - second\n  test:object:\n    foo: bar\n    object:\n      baz: 42"
    )
    assert validate("name: test\nruntime: nodejs", stack, b64_decrypter) == {
        "test:boolean": "true",
        "test:number": "42",
        "test:string": "foo",
        "test:array": '["first","second"]',
        "test:object": '{"foo":"bar","object":{"baz":42}}',
    }


# --- CT: validateStackConfigValues / validateStackConfigValue ------------------------------------------------


def test_no_decrypter_skips_the_value_checks() -> None:
    """CT TestValidateStackConfigValues: No Decrypter Returns Nil"""
    project = "name: test\nruntime: dotnet\nconfig:\n  n:\n    type: integer\n"
    assert validate(project, "config:\n  test:n: hello", decrypter=None) == {"test:n": "hello"}


def test_typed_nested_and_secret_values() -> None:
    """CT TestValidateStackConfigValues: Typed Config Validates"""
    project = s.Project(
        "testProject",
        {
            "testInt": s.ConfigType(type="integer"),
            "testNested1.float": s.ConfigType(type="integer"),
            "testNested2.bool": s.ConfigType(type="boolean"),
            "testSecret": s.ConfigType(type="string", secret=True),
        },
    )
    config = {
        "testProject:testInt": Value("1"),
        "testProject:testNested1": Value('{"float":1.0}', object=True),
        "testProject:testNested2": Value('{"bool":true}', object=True),
        "testProject:testSecret": Value("dGVzdFZhbHVl", secure=True),
    }
    s.validate_stack_config_and_apply_project_config("stackA", project, config, b64_decrypter)
    assert s.decrypt_map(config, b64_decrypter)["testProject:testSecret"] == "testValue"


def test_secret_enforced() -> None:
    """CT TestValidateStackConfigValues: Secret Enforced"""
    project = s.Project("proj", {"proj:secretKey": s.ConfigType(type="string", secret=True)})
    with pytest.raises(StackConfigError, match="must be encrypted"):
        s.validate_stack_config_and_apply_project_config(
            "stack1", project, {"proj:secretKey": Value("plain")}
        )


def test_object_unmarshal_error() -> None:
    """CT TestValidateStackConfigValues: Object Unmarshal Error"""
    project = s.Project("proj", {"proj:objKey": s.ConfigType(type="object")})
    with pytest.raises(StackConfigError, match="invalid character"):
        s.validate_stack_config_and_apply_project_config(
            "stackX", project, {"proj:objKey": Value("not-a-json", object=True)}
        )


def test_unknown_type_names_never_validate() -> None:
    """CT TestValidateStackConfigValues: Type Mismatch"""
    project = s.Project("proj", {"proj:typeKey": s.ConfigType(type="number")})
    with pytest.raises(StackConfigError, match="must be of type 'number'"):
        s.validate_stack_config_and_apply_project_config(
            "stackX", project, {"proj:typeKey": Value("not-a-number")}
        )


# --- PT: Project.Validate, ValidateConfigValue, config schema loading ------------------------------------------


def test_object_default() -> None:
    """PT TestProjectValidationSucceedsForObjectConfigType"""
    s.validate_project(
        s.Project("test", {"example": s.ConfigType(type="object", default={"hello": "world"})})
    )


@pytest.mark.parametrize(
    ("ctype", "message"),
    [  # PT TestProjectValidationFailsForIncorrectDefaultValueType
        (
            s.ConfigType(type="integer", default="hello"),
            "The default value specified for configuration key 'k' is not of the expected type 'integer'",
        ),
        (
            s.ConfigType(type="array", items=ItemsType("array", ItemsType("string")), default=["hello"]),
            "The default value specified for configuration key 'k' is not of the expected type "
            "'array<array<string>>'",
        ),
    ],
)
def test_default_of_the_wrong_type(ctype: s.ConfigType, message: str) -> None:
    with pytest.raises(StackConfigError) as err:
        s.validate_project(s.Project("test", {"k": ctype}))
    assert str(err.value) == message


def test_defaults_of_the_right_type() -> None:
    """PT TestProjectValidationSucceedsForCorrectDefaultValueType"""
    s.validate_project(s.Project("test", {"k": s.ConfigType(type="integer", default=1)}))
    nested = ItemsType("array", ItemsType("string"))
    s.validate_project(
        s.Project("test", {"k": s.ConfigType(type="array", items=nested, default=[["hello"]])})
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (  # PT TestNamespacedProjectConfigShouldNotBeExplicitlyTyped
            "  aws:region:\n    type: string\n    value:\n      region: us-west-1",
            "Configuration key 'aws:region' is not namespaced by the project and should not define a type",
        ),
        (  # PT TestProjectConfigCannotHaveBothValueAndDefault
            "  instanceSize:\n    type: string\n    default: t3.micro\n    value: t4.large",
            "project config 'instanceSize' cannot have both a 'default' and 'value' attribute",
        ),
        (  # PT TestProjectConfigCannotBeTypedArrayWithoutItems
            "  instanceSize:\n    type: array\n    default: [t3.micro, t4.large]",
            "The configuration key 'instanceSize' declares an array "
            "but does not specify the underlying type via the 'items' attribute",
        ),
        (  # PT TestNamespacedProjectConfigShouldNotBeProvideDefault
            "  aws:region:\n    default: us-west-1",
            "Configuration key 'aws:region' is not namespaced by the project and should not define a default "
            "value. Did you mean to use the 'value' attribute instead of 'default'?",
        ),
    ],
)
def test_project_validation(config: str, message: str) -> None:
    with pytest.raises(StackConfigError) as err:
        s.load_project("name: test\nruntime: dotnet\nconfig:\n" + config)
    assert str(err.value) == message


def test_project_loads_config_schemas() -> None:
    """PT TestProjectLoadsConfigSchemas"""
    project = s.load_project(
        "name: test\nruntime: dotnet\nconfig:\n  integerSchemaFull:\n    type: integer\n"
        "    description: a very important value\n    default: 1\n  integerSchemaSimple: 20\n"
        "  booleanSchemaSimple: false\n  simpleArrayOfStrings:\n    type: array\n    items:\n      type: string\n"
        "    default: [hello]\n  arrayOfArrays:\n    type: array\n    items:\n      type: array\n      items:\n"
        "        type: string\n  secretString:\n    type: string\n    secret: true\n"
    )
    c = project.config
    assert (c["integerSchemaFull"].type, c["integerSchemaFull"].default) == ("integer", 1)
    assert c["integerSchemaFull"].description == "a very important value"
    assert (c["integerSchemaSimple"].type, c["integerSchemaSimple"].default) == (None, 20)
    assert c["booleanSchemaSimple"].default is False
    assert c["simpleArrayOfStrings"].items == ItemsType("string") and c["simpleArrayOfStrings"].default == [
        "hello"
    ]
    assert c["arrayOfArrays"].items == ItemsType("array", ItemsType("string"))
    assert c["secretString"].secret and c["secretString"].default is None


@pytest.mark.parametrize(
    ("type_name", "items", "value", "ok"),
    [  # project.go ValidateConfigValue, branch by branch
        ("integer", None, 3, True),
        ("integer", None, 3.0, True),
        ("integer", None, 3.5, False),
        ("integer", None, "3", True),
        ("integer", None, "-3", True),
        ("integer", None, "3.0", False),
        ("integer", None, "", False),
        ("integer", None, True, False),
        ("boolean", None, "true", True),
        ("boolean", None, "True", False),
        ("boolean", None, False, True),
        ("string", None, "x", True),
        ("string", None, 3, False),
        ("object", None, {"a": 1}, True),
        ("object", None, "{}", False),
        ("array", ItemsType("string"), ["a"], True),
        ("array", ItemsType("string"), ["a", 1], False),
        ("array", ItemsType("string"), '["a"]', False),
        ("array", None, ["a"], False),
        ("array", ItemsType("integer"), [1.0, "2"], True),
    ],
)
def test_validate_config_value(type_name: str, items: ItemsType | None, value: Any, ok: bool) -> None:
    assert s.validate_config_value(type_name, items, value) is ok


# --- reading stack files as yaml.v3 and config.Value do ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [  # go-yaml v3 resolve.go
        ("yes", "yes"),
        ("on", "on"),
        ("True", True),
        ("FALSE", False),
        ("~", None),
        ("0o17", 15),
        ("0x1F", 31),
        ("0777", 511),
        ("1_000", 1000),
        ("08", 8.0),
        ("1e3", 1000.0),
        (".5", 0.5),
        ("2001-12-14", "2001-12-14"),
        ("18446744073709551615", 18446744073709551615),
        ("'3'", "3"),
    ],
)
def test_yaml_scalars_resolve_as_yaml_v3_does(text: str, value: Any) -> None:
    got = s.load_yaml(f"k: {text}")["k"]
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    ("raw", "value"),
    [  # config.Value.UnmarshalYAML (object.go unmarshalObject + MarshalString)
        (False, Value("false")),
        (2, Value("2")),
        (2.0, Value("2")),
        (1e21, Value("1e+21")),
        (1.5e-7, Value("1.5e-7")),
        ("x", Value("x")),
        (None, Value("")),
        (["a<b", "é"], Value('["a\\u003cb","é"]', object=True)),
        ({"b": 1, "a": [True]}, Value('{"a":[true],"b":1}', object=True)),
        ({"secure": "abc"}, Value("abc", secure=True)),
        ({"k": {"secure": "abc"}}, Value('{"k":{"secure":"abc"}}', secure=True, object=True)),
    ],
)
def test_stack_values_become_config_values(raw: Any, value: Value) -> None:
    assert s.value_from_yaml(raw) == value


def test_nan_cannot_be_a_config_value() -> None:
    with pytest.raises(s.GoJsonError, match="unsupported value: NaN"):
        s.value_from_yaml(math.nan)


def test_old_config_module_keys_and_bad_keys() -> None:  # key.go ParseKey
    assert s.parse_key("aws:config:region") == "aws:region"
    with pytest.raises(StackConfigError, match="could not parse a:b:c as a configuration key"):
        s.parse_key("a:b:c")


def test_empty_values_warn() -> None:  # loaders.go checkForEmptyConfig
    project = s.load_project("name: test")
    config, warning = s.load_stack(project, "config:\n  test:a:\n  test:b: x")
    assert config["test:a"] == Value("")
    assert warning is not None and warning.startswith('No value for configuration key "test:a". ')


# config.Map.Set with path=true (map.go Set, object.go Set/newContainer, map.go adjustObjectValue): how
# the CLI writes a project default whose key is a nested path into the stack's config.
@pytest.mark.parametrize(
    ("existing", "key", "value", "expected"),
    [
        ({}, "p:a.b", Value("true"), Value('{"b":true}', object=True)),
        ({}, "p:a.b", Value("0123"), Value('{"b":"0123"}', object=True)),  # leading zero: a string
        ({}, "p:a.b", Value("42"), Value('{"b":42}', object=True)),
        ({}, "p:list[0]", Value("x"), Value('["x"]', object=True)),
        ({"p:a": Value('{"c":1}', object=True)}, "p:a.b", Value("v"), Value('{"b":"v","c":1}', object=True)),
        # COMPAT: a plain string at the first level is replaced by a container
        ({"p:a": Value("plain")}, "p:a.b", Value("v"), Value('{"b":"v"}', object=True)),
        ({"p:a": Value('["x"]', object=True)}, "p:a[1]", Value("y"), Value('["x","y"]', object=True)),
    ],
)
def test_nested_paths_are_set_as_the_cli_sets_them(
    existing: dict[str, Value], key: str, value: Value, expected: Value
) -> None:
    config = dict(existing)
    s.map_set(config, key, value)
    root = "p:" + key[2:].replace("[", ".").split(".")[0]  # the key of the path's first segment
    assert config[root] == expected


@pytest.mark.parametrize(
    ("existing", "key", "message"),
    [
        ({"p:a": Value('{"b":"s"}', object=True)}, "p:a.b.c", "a.b: expected a map"),
        ({"p:a": Value('["x"]', object=True)}, "p:a[3]", "a[3]: array index out of range"),
        ({"p:a": Value('["x"]', object=True)}, "p:a.k", "a.k: key for an array must be an int"),
        ({}, "p:a.secure", 'maps with the single key "secure" are reserved'),
    ],
)
def test_nested_paths_the_cli_refuses(existing: dict[str, Value], key: str, message: str) -> None:
    with pytest.raises(StackConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        s.map_set(dict(existing), key, Value("v"))


def test_a_nested_project_default_reaches_the_program() -> None:
    """A project key that is a path (`settings.mode`) gets its default inside its root object."""
    values = validate(
        "name: p\nruntime: python\nconfig:\n  settings.mode:\n    default: fast\n",
        "config: {}\n",
    )
    assert values["p:settings"] == '{"mode":"fast"}'
