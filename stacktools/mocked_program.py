"""Runs the real program under Pulumi mocks (for tests and the offline plan) with the config read from the real `Pulumi.<stack>.yaml`,
and records every registered resource (type, name, inputs, parent) for tests to query.

Mocks see inputs in camelCase with ints as floats; secrets are unwrapped here and their property paths
remembered, so tests can assert values and the snapshot can redact them.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.config import set_all_config
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "123456789012"
SECRET_SIG = rpc._special_sig_key  # type: ignore[attr-defined]
SECRET_VALUE = rpc._special_secret_sig  # type: ignore[attr-defined]


@dataclass(frozen=True)
class RecordedResource:
    type: str
    name: str
    urn: str
    inputs: dict[str, Any]
    parent: str | None
    provider: str | None
    id: str
    custom: bool
    secret_paths: frozenset[str] = frozenset()
    # URNs this resource waits for: `depends_on` plus every resource whose outputs its inputs use.
    dependencies: frozenset[str] = frozenset()
    # Per input (camelCase), the URNs of the resources whose outputs that input is made of.
    property_dependencies: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # The `ignore_changes` option: inputs the engine keeps at their old values on an update.
    ignore_changes: frozenset[str] = frozenset()
    # URNs it was known by before (`aliases`): the engine moves that state to it instead of replacing.
    alias_urns: frozenset[str] = frozenset()
    # The `delete_before_replace` option: a replacement deletes the old resource before creating the
    # new one (needed when the new one must take the old one's fixed name).
    delete_before_replace: bool = False

    def json(self, key: str) -> Any:
        """An input that holds a JSON document (IAM policies, container definitions), parsed."""
        value = self.inputs.get(key)
        return json.loads(value) if isinstance(value, str) else value


@dataclass
class StackRun:
    stack: str
    config: Any
    resources: list[RecordedResource]
    outputs: dict[str, Any]
    # Every invoke (data source) token the program called: what a preview asks of the cloud.
    calls: list[str] = field(default_factory=list)
    by_urn: dict[str, RecordedResource] = field(init=False)

    def __post_init__(self) -> None:
        self.by_urn = {r.urn: r for r in self.resources}

    def of_type(self, type_: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name_contains: str = "") -> RecordedResource:
        found = [r for r in self.of_type(type_) if name_contains in r.name]
        assert len(found) == 1, (
            f"expected one {type_} named *{name_contains}*, found {[r.name for r in found]}"
        )
        return found[0]

    def parent_of(self, resource: RecordedResource) -> RecordedResource | None:
        return self.by_urn.get(resource.parent or "")

    def ancestors(self, resource: RecordedResource) -> Iterator[RecordedResource]:
        parent = self.parent_of(resource)
        while parent is not None:
            yield parent
            parent = self.parent_of(parent)

    def component_of(self, resource: RecordedResource) -> RecordedResource | None:
        return next((a for a in self.ancestors(resource) if a.type.startswith("motion:")), None)


def _unwrap(value: Any, path: str, secrets: set[str]) -> Any:
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == SECRET_VALUE:
            secrets.add(path)
            return _unwrap(value.get("value"), path, secrets)
        return {k: _unwrap(v, f"{path}.{k}" if path else k, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v, f"{path}[{i}]", secrets) for i, v in enumerate(value)]
    return value


# --- what the mocked cloud computes ---------------------------------------------------------------


def _service(type_: str) -> str:
    module = type_.split(":")[1].split("/")[0]
    return {
        "lb": "elasticloadbalancing",
        "cloudwatch": "logs",
        "vpc": "ec2",
        "appautoscaling": "application-autoscaling",
        "sesv2": "ses",
        "apigatewayv2": "apigateway",
        "rds": "rds",
        "elasticache": "elasticache",
    }.get(module, module)


def computed_outputs(type_: str, name: str, inputs: Mapping[str, Any], region: str) -> dict[str, Any]:
    """Plausible values for the outputs a provider computes, derived from the resource's name."""
    arn = f"arn:aws:{_service(type_)}:{region}:{ACCOUNT}:{name}"
    out: dict[str, Any] = {"arn": arn}
    if type_ == "aws:s3/bucket:Bucket":
        bucket = inputs.get("bucket") or f"{inputs.get('bucketPrefix', name + '-')}0123abcd"
        out.update(
            bucket=bucket,
            arn=f"arn:aws:s3:::{bucket}",
            bucketRegionalDomainName=f"{bucket}.s3.{region}.amazonaws.com",
        )
    elif type_ == "aws:lb/loadBalancer:LoadBalancer":
        out.update(
            dnsName=f"{name}-123456.{region}.elb.amazonaws.com",
            arnSuffix=f"app/{name}/0123456789abcdef",
            zoneId="Z35SXDOTRQ7X7K",
        )
    elif type_ == "aws:lb/targetGroup:TargetGroup":
        out.update(arnSuffix=f"targetgroup/{name}/0123456789abcdef")
    elif type_ == "aws:sqs/queue:Queue":
        queue = inputs.get("name") or name
        out.update(
            url=f"https://sqs.{region}.amazonaws.com/{ACCOUNT}/{queue}",
            arn=f"arn:aws:sqs:{region}:{ACCOUNT}:{queue}",
        )
    elif type_ == "aws:sns/topic:Topic":
        out.update(arn=f"arn:aws:sns:{region}:{ACCOUNT}:{inputs.get('name') or name}")
    elif type_ == "aws:dynamodb/table:Table":
        table = inputs.get("name") or name
        out.update(arn=f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{table}")
    elif type_ == "aws:ecr/repository:Repository":
        repo = inputs.get("name") or name
        out.update(
            repositoryUrl=f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{repo}",
            registryId=ACCOUNT,
            arn=f"arn:aws:ecr:{region}:{ACCOUNT}:repository/{repo}",
        )
    elif type_ == "docker-build:index:Image":
        # What the provider reports after a push (pulumi-docker-build image.go `Create`): the
        # manifest digest, and `ref` = the first tag with that digest.
        digest = f"sha256:{'ab' * 32}"
        tags = inputs.get("tags") or [name]
        out.update(digest=digest, ref=f"{tags[0]}@{digest}")
    elif type_ == "aws:rds/instance:Instance":
        out.update(
            identifier=inputs.get("identifier") or f"{inputs.get('identifierPrefix', name + '-')}0123abcd",
            address=f"{name}.cluster.{region}.rds.amazonaws.com",
            port=5432,
            # DbiResourceId: "db-" and 26 upper-case letters and digits, as in the RDS User Guide's
            # examples (db-12ABC34DEFG5HIJ6KLMNOP78QR); stable per name, unlike the real one.
            resourceId="db-" + hashlib.sha256(name.encode()).hexdigest()[:26].upper(),
            masterUserSecrets=[
                {
                    "secretArn": f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:rds!{name}-AbCdEf",
                    "secretStatus": "active",
                    "kmsKeyId": "",
                }
            ],
        )
    elif type_ == "aws:elasticache/replicationGroup:ReplicationGroup":
        out.update(primaryEndpointAddress=f"master.{name}.cache.amazonaws.com", port=6379)
    elif type_ == "aws:lambda/function:Function":
        arn = f"arn:aws:lambda:{region}:{ACCOUNT}:function:{inputs.get('name') or name}"
        out.update(arn=arn, invokeArn=f"arn:aws:apigateway:{region}:lambda:path/functions/{arn}/invocations")
    elif type_ == "aws:lambda/layerVersion:LayerVersion":
        # The provider's `arn` is the version's ARN (`layer_arn` without the version number).
        layer_arn = f"arn:aws:lambda:{region}:{ACCOUNT}:layer:{inputs['layerName']}"
        out.update(arn=f"{layer_arn}:1", layerArn=layer_arn, version="1")
    elif type_ == "aws:apigatewayv2/api:Api":
        out.update(apiEndpoint=f"https://{name}.execute-api.{region}.amazonaws.com", executionArn=arn)
    elif type_ == "aws:secretsmanager/secret:Secret":
        out.update(arn=f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:{name}-AbCdEf")
    elif type_ == "aws:sesv2/emailIdentity:EmailIdentity":
        out.update(dkimSigningAttributes={"tokens": [f"dkim{i}token" for i in range(3)], "status": "PENDING"})
    elif type_ == "aws:acm/certificate:Certificate":
        # ACM's DNS validation record for the domain (ACM User Guide, "DNS validation": a CNAME from
        # _<hash>.<domain>. onto _<hash>.<token>.acm-validations.aws.).
        domain = str(inputs.get("domainName", ""))
        digest = hashlib.sha256(domain.encode()).hexdigest()
        out.update(
            arn=f"arn:aws:acm:{region}:{ACCOUNT}:certificate/{digest[:8]}-{digest[8:12]}-{digest[12:16]}-"
            f"{digest[16:20]}-{digest[20:32]}",
            domainValidationOptions=[
                {
                    "domainName": domain,
                    "resourceRecordName": f"_{digest[:32]}.{domain}.",
                    "resourceRecordType": "CNAME",
                    "resourceRecordValue": f"_{digest[32:]}.abcdefghij.acm-validations.aws.",
                }
            ],
        )
    elif type_ == "aws:route53/record:Record":
        # The record's full name, without the trailing dot (the provider's `fqdn`).
        out.update(fqdn=str(inputs.get("name", "")).rstrip("."))
    elif type_ == "aws:cloudwatch/logGroup:LogGroup":
        out.update(arn=f"arn:aws:logs:{region}:{ACCOUNT}:log-group:{inputs.get('name') or name}")
    elif type_ == "vercel:index/project:Project":
        out.update(id=f"prj_{name}")
    elif type_ == "aws:ecs/cluster:Cluster":
        out.update(arn=f"arn:aws:ecs:{region}:{ACCOUNT}:cluster/{inputs.get('name') or name}")
    elif type_ == "aws:ecs/taskDefinition:TaskDefinition":
        # A new task definition is revision 1 of its family (ECS: family:revision).
        family = inputs.get("family") or name
        out.update(
            arn=f"arn:aws:ecs:{region}:{ACCOUNT}:task-definition/{family}:1",
            arnWithoutRevision=f"arn:aws:ecs:{region}:{ACCOUNT}:task-definition/{family}",
            revision=1,
        )
    elif type_ == "aws:iam/role:Role":
        # IAM is global: no region in its ARNs; a role without a name gets the provider's generated one.
        out.update(arn=f"arn:aws:iam::{ACCOUNT}:role/{inputs.get('name') or name + '-0123abcd'}")
    elif type_ == "aws:kms/key:Key":
        out.update(keyId=f"{name}-key-id", arn=f"arn:aws:kms:{region}:{ACCOUNT}:key/{name}")
    elif type_ == RANDOM_PASSWORD:
        out.update(result=mock_random_password(name, inputs), id="none")
    return out


# --- random:index/randomPassword:RandomPassword -------------------------------------------------
# The provider draws `result` once, on create, and keeps it in the state: every input requires
# replacement and `result` is UseStateForUnknown (terraform-provider-random
# internal/provider/resource_password.go), so the same name with the same inputs gives the same value
# on every later run. The mock models that state with a value derived from the name and the inputs
# alone: a run with unchanged inputs sees the same password, a changed input (a replacement) a new one.
# The characters come from the provider's own rule (internal/random/string.go, CreateString).

RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
RANDOM_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
RANDOM_LOWER = "abcdefghijklmnopqrstuvwxyz"
RANDOM_NUMERIC = "0123456789"
# The `special` set when `override_special` is unset or empty.
RANDOM_DEFAULT_SPECIAL = "!@#$%&*()-_=+[]{}<>:?"


def random_password_classes(inputs: Mapping[str, Any]) -> list[tuple[str, bool, int]]:
    """(characters, drawn for the bulk of the password, minimum count) per class, as CreateString
    uses them: upper, lower, numeric and special default to true, minimums to 0 (resource_password.go
    schema defaults; `number` is the deprecated alias of `numeric`); a minimum draws from its class even
    when the class is off."""
    numeric = inputs.get("numeric", inputs.get("number", True))
    special_chars = inputs.get("overrideSpecial") or RANDOM_DEFAULT_SPECIAL
    return [
        (RANDOM_UPPER, bool(inputs.get("upper", True)), int(inputs.get("minUpper", 0))),
        (RANDOM_LOWER, bool(inputs.get("lower", True)), int(inputs.get("minLower", 0))),
        (RANDOM_NUMERIC, bool(numeric), int(inputs.get("minNumeric", 0))),
        (special_chars, bool(inputs.get("special", True)), int(inputs.get("minSpecial", 0))),
    ]


def random_password_alphabet(inputs: Mapping[str, Any]) -> str:
    """Every character a RandomPassword with these inputs can contain."""
    return "".join(chars for chars, on, minimum in random_password_classes(inputs) if on or minimum)


def mock_random_password(name: str, inputs: Mapping[str, Any]) -> str:
    seed = hashlib.sha256(f"{name}\0{json.dumps(inputs, sort_keys=True, default=str)}".encode()).digest()
    draw = random.Random(seed)  # noqa: S311 - a reproducible mock value, not a real secret
    length = int(inputs["length"])
    classes = random_password_classes(inputs)
    chars = [draw.choice(cls) for cls, _, minimum in classes for _ in range(minimum)]
    bulk = "".join(cls for cls, on, _ in classes if on)
    chars += [draw.choice(bulk) for _ in range(length - len(chars))]
    draw.shuffle(chars)
    return "".join(chars)


def _call(token: str, args: Mapping[str, Any], region: str) -> dict[str, Any]:
    if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
        return {"names": [f"{region}{s}" for s in "abcdef"], "zoneIds": [f"use1-az{i}" for i in range(1, 7)]}
    if token == "aws:index/getRegion:getRegion":
        return {"region": region, "name": region, "id": region, "endpoint": f"ec2.{region}.amazonaws.com"}
    if token == "aws:index/getCallerIdentity:getCallerIdentity":
        return {
            "accountId": ACCOUNT,
            "arn": f"arn:aws:iam::{ACCOUNT}:user/ci",
            "userId": "AIDA",
            "id": ACCOUNT,
        }
    if token == "aws:index/getPartition:getPartition":
        return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
    if token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
        return {
            "userName": "AWS",
            "password": "mock-ecr-password",
            "authorizationToken": "bW9jaw==",
            "proxyEndpoint": f"https://{ACCOUNT}.dkr.ecr.{region}.amazonaws.com",
            "id": region,
        }
    if token == "aws:elb/getServiceAccount:getServiceAccount":
        return {"arn": "arn:aws:iam::127311923021:root", "id": "127311923021"}
    if token == "vercel:index/getDomainConfig:getDomainConfig":
        # The values Vercel's guide shows for a domain (https://vercel.com/docs/domains/set-up-custom-domain).
        return {
            **args,
            "recommendedIpv4s": ["76.76.21.21"],
            "recommendedCname": "cname.vercel-dns-0.com",
            "misconfigured": True,
            "id": args.get("domain", ""),
        }
    return {}


class _Mocks(pulumi.runtime.Mocks):
    def __init__(self, region: str) -> None:
        self.region = region
        self.calls: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        outputs = {**args.inputs, **computed_outputs(args.typ, args.name, args.inputs, self.region)}
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        self.calls.append(args.token)
        return _call(args.token, args.args, self.region), []


def _alias_urns(request: Any, project: str, stack: str) -> frozenset[str]:
    """The URNs a registration's aliases stand for, computed as the engine does: a spec's missing
    name or type is the resource's own, and the type is qualified by its parent's (pulumi/pulumi
    `resource.NewURN`: parent type `$` own type)."""
    found: set[str] = set()
    for alias in request.aliases:
        if alias.urn:
            found.add(alias.urn)
            continue
        spec = alias.spec
        name, type_ = spec.name or request.name, spec.type or request.type
        parent = "" if spec.noParent else (spec.parentUrn or request.parent)
        parent_type = parent.split("::")[2] if parent.count("::") >= 3 else ""
        qualified = (
            type_ if not parent_type or parent_type == "pulumi:pulumi:Stack" else f"{parent_type}${type_}"
        )
        found.add(f"urn:pulumi:{spec.stack or stack}::{spec.project or project}::{qualified}::{name}")
    return frozenset(found)


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: _Mocks, project: str, stack: str) -> None:
        super().__init__(mocks)
        self.recorded: list[RecordedResource] = []
        self.project, self.stack = project, stack

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            secrets: set[str] = set()
            inputs = _unwrap(rpc.deserialize_properties(request.object), "", secrets)
            self.recorded.append(
                RecordedResource(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    inputs=inputs,
                    parent=request.parent or None,
                    provider=request.provider or None,
                    id=response.id or "",
                    custom=bool(request.custom),
                    secret_paths=frozenset(secrets),
                    dependencies=frozenset(request.dependencies),
                    property_dependencies={
                        key: frozenset(deps.urns) for key, deps in request.propertyDependencies.items()
                    },
                    ignore_changes=frozenset(request.ignoreChanges),
                    delete_before_replace=bool(request.deleteBeforeReplace),
                    alias_urns=_alias_urns(request, self.project, self.stack),
                )
            )
        return response


def stack_config_values(stack: str) -> dict[str, str]:
    """The stack's config as the engine hands it to the program: `Pulumi.<stack>.yaml` validated by
    the CLI's rule, with `Pulumi.yaml` defaults applied, as strings (stacktools/stack_files.py)."""
    from stacktools.stack_files import read_stack_file

    return read_stack_file(stack)


_LOOP: asyncio.AbstractEventLoop | None = None


def _mock_loop() -> asyncio.AbstractEventLoop:
    """One event loop for every mock run in this process."""
    global _LOOP
    if _LOOP is None or _LOOP.is_closed():
        _LOOP = asyncio.new_event_loop()
    return _LOOP


def run_program(stack: str, config: Mapping[str, str], program: Callable[[], Any] | None = None) -> StackRun:
    """Run the program once under mocks with this config; raises what the program raises."""
    from components.config.loader import load_stack_config
    from components.program import build

    region = str(config.get("aws:region", "us-east-1"))
    # Pulumi's runtime drives the current thread's event loop; `asyncio.run` elsewhere in the same
    # process (service tests) leaves none set, so set ours each time (asking the policy for the
    # current one is deprecated when there is none).
    asyncio.set_event_loop(_mock_loop())
    mocks = _Mocks(region)
    monitor = _RecordingMonitor(mocks, "motion", stack)
    pulumi.runtime.set_mocks(mocks, project="motion", stack=stack, preview=False, monitor=monitor)
    # The one secret every stack needs; `pulumi config set --secret` puts it in the real stack file.
    config = {"vercel:apiToken": "mock-vercel-token", **config}
    set_all_config(dict(config), secret_keys=["vercel:apiToken"])
    pulumi.runtime.settings.SETTINGS.rpc_manager.clear()  # type: ignore[attr-defined]
    result: dict[str, Any] = {}

    def body() -> None:
        if program is not None:
            program()
            return
        cfg = load_stack_config()
        made = build(cfg)
        result["config"] = cfg
        result["outputs"] = made.outputs

    try:
        _sync_await(pulumi.runtime.stack.run_pulumi_func(body))  # type: ignore[attr-defined]
    except Exception as err:
        raise ProgramFailed(err, list(monitor.recorded)) from err
    outputs = {k: _resolve(v) for k, v in result.get("outputs", {}).items()}
    return StackRun(
        stack=stack,
        config=result.get("config"),
        resources=list(monitor.recorded),
        outputs=outputs,
        calls=list(mocks.calls),
    )


class ProgramFailed(Exception):
    """The program raised; carries what it had registered by then (bad config must register nothing)."""

    def __init__(self, error: Exception, registered: list[RecordedResource]) -> None:
        super().__init__(str(error))
        self.error = error
        self.registered = registered


def _resolve(value: Any) -> Any:
    if isinstance(value, pulumi.Output):
        return _sync_await(value.future())
    return value


@functools.cache
def run_stack(stack: str) -> StackRun:
    """Both stacks from their real config files; cached, since the program is deterministic."""
    return run_program(stack, stack_config_values(stack))


def run_with(stack: str, /, *, skip_config_validation: bool = False, **overrides: Any) -> StackRun:
    """A stack's real config with some keys overridden (for bad-config cases). Overrides are stack-file
    values as YAML decodes them (`azCount=3`, `frontendDomains=["a.example"]`, `dbMultiAz="yes"` for
    the quoted string) and go through the CLI's check, as if written in `Pulumi.<stack>.yaml`: a value
    the CLI rejects raises `StackConfigError` before the program runs, unless `skip_config_validation`
    (`pulumi up --skip-config-validation`), which still applies the defaults."""
    from stacktools.stack_files import engine_config, stack_document

    document = stack_document(stack)
    document.update({f"motion:{k}" if ":" not in k else k: v for k, v in overrides.items()})
    return run_program(stack, engine_config(stack, document, validate=not skip_config_validation))
