"""Facts the services state about themselves (routes, table schemas, ports), read by the program, the
local backend and the tests: loaded here, once, into typed objects (`CHAT`, `FILES`, `MAILER`).

Loaded by file path, not imported as packages: these modules are plain data (standard library
only), and the program must not pull in the services' dependencies. Each name is checked as it is
read: a service module that loses a name, or gives it another type, fails here with the file and the
name, before any resource is registered.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar, cast

from components.aws.dynamo import TableSchema

APP_CODE = Path(__file__).resolve().parents[1] / "app_code"
# The service modules the facts come from, relative to app_code/.
CHAT_MODULE = "chat/chat_service/__init__.py"
CHAT_SCHEMA_MODULE = "chat/chat_service/schema.py"
FILES_ROUTES_MODULE = "files/files_service/routes.py"
FILES_DATABASE_MODULE = "files/files_service/database_roles.py"
MAILER_MODULE = "mailer/mailer/__init__.py"
MAILER_SCHEMA_MODULE = "mailer/mailer/schema.py"
CHAT_METRICS_MODULE = "chat/chat_service/metric_names.py"
FILES_METRICS_MODULE = "files/files_service/metric_names.py"
MAILER_METRICS_MODULE = "mailer/mailer/metrics.py"

T = TypeVar("T")


class FactsError(RuntimeError):
    """A service's facts module lacks a name the program reads, or holds it with another type."""


def load_app_module(relative: str, app_code: Path | None = None) -> ModuleType:
    """e.g. `load_app_module("files/files_service/routes.py")`.

    Compiled from source and never cached: importing by path (importlib's SourceLoader) would write
    `__pycache__/*.pyc` into app_code/, which is the images' build context, and a program run must
    leave the tree it deploys from unchanged. These modules are a few hundred lines, so compiling
    them on every run costs nothing measurable.
    """
    path = (app_code or APP_CODE) / relative
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


class _Reader:
    """Reads names of one loaded module, failing with the file and the name."""

    def __init__(self, relative: str, app_code: Path | None) -> None:
        self.relative = relative
        self.module = load_app_module(relative, app_code)

    def _get(self, name: str) -> object:
        if not hasattr(self.module, name):
            raise FactsError(f"app_code/{self.relative}: has no {name}, which the program reads")
        return cast(object, getattr(self.module, name))

    def _wrong(self, name: str, value: object, expected: str) -> FactsError:
        return FactsError(
            f"app_code/{self.relative}: {name} is {type(value).__name__} {value!r}, expected {expected}"
        )

    def of(self, name: str, kind: type[T]) -> T:
        value = self._get(name)
        # bool is an int to isinstance; a flag where a number belongs is still wrong.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self._wrong(name, value, kind.__name__)
        return value

    def strings(self, name: str) -> tuple[str, ...]:
        value = self._get(name)
        if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
            raise self._wrong(name, value, "a list of strings")
        return tuple(value)

    def strings_by_key(self, name: str) -> Mapping[str, tuple[str, ...]]:
        value = self._get(name)
        if not isinstance(value, dict) or not all(
            isinstance(key, str)
            and isinstance(items, list | tuple)
            and all(isinstance(item, str) for item in items)
            for key, items in value.items()
        ):
            raise self._wrong(name, value, "a dict of lists of strings")
        return {key: tuple(items) for key, items in value.items()}

    def table(self, name: str) -> TableSchema:
        """A table in `create_table` shape: the keys and attributes are what every table has."""
        value = self._get(name)
        if not isinstance(value, dict) or not all(
            isinstance(value.get(part), list) for part in ("KeySchema", "AttributeDefinitions")
        ):
            raise self._wrong(name, value, "a create_table dict with KeySchema and AttributeDefinitions")
        return cast(TableSchema, value)

    def function(self, name: str) -> Callable[..., object]:
        value = self._get(name)
        if not callable(value):
            raise self._wrong(name, value, "a function")
        return cast(Callable[..., object], value)


@dataclass(frozen=True, slots=True)
class MetricsFacts:
    """A service's own metrics, as its EMF documents declare them: one namespace, one dimension."""

    namespace: str
    dimension: str
    names: tuple[str, ...]


def _metrics(relative: str, app_code: Path | None) -> tuple[_Reader, MetricsFacts]:
    reader = _Reader(relative, app_code)
    return reader, MetricsFacts(
        namespace=reader.of("NAMESPACE", str),
        dimension=reader.of("DIMENSION", str),
        names=reader.strings("ALL"),
    )


@dataclass(frozen=True, slots=True)
class ChatFacts:
    """app_code/chat/chat_service/__init__.py and schema.py."""

    default_port: int
    ws_path: str
    liveness_path: str
    readiness_path: str
    alb_path_patterns: tuple[str, ...]
    ping_interval_seconds: int
    min_alb_idle_timeout_seconds: int
    shutdown_grace_seconds: int
    alb_deregistration_delay_seconds: int
    table_actions: tuple[str, ...]
    table: TableSchema
    # `create_table_kwargs(table_name)`: the table's `dynamodb.create_table` arguments (the local backend).
    create_table_kwargs: Callable[[str], dict[str, Any]]
    # Its own metrics (chat_service/metric_names.py), published with `Service` = `metrics_service`.
    metrics: MetricsFacts
    metrics_service: str


@dataclass(frozen=True, slots=True)
class FilesFacts:
    """app_code/files/files_service/routes.py and database_roles.py."""

    default_port: int
    api_prefix: str
    liveness_path: str
    readiness_path: str
    openapi_path: str
    object_key_prefix: str
    # The listener's path patterns, by service role ("upload", "download").
    alb_path_patterns: Mapping[str, tuple[str, ...]]
    # What each role's task role may do on the bucket's objects, and on the bucket itself.
    s3_object_actions: Mapping[str, tuple[str, ...]]
    s3_bucket_actions: Mapping[str, tuple[str, ...]]
    # The database role the services log in as, the migration's module, the image's RDS CA bundle.
    app_role: str
    migrate_module: str
    rds_ca_bundle: str
    # Its own metrics (files_service/metric_names.py), one `Service` value per role.
    metrics: MetricsFacts
    metrics_dimension_value: Callable[[str], str]


@dataclass(frozen=True, slots=True)
class MailerFacts:
    """app_code/mailer/mailer/__init__.py and schema.py."""

    request_headers: tuple[str, ...]
    # The routes behind the JWT authorizer ("METHOD /path"), all on messages_path.
    api_routes: tuple[str, ...]
    messages_path: str
    webhook_method: str
    webhook_path: str
    webhook_route: str
    table: TableSchema
    users_table: TableSchema
    quotas_table: TableSchema
    # Its functions' own metrics (mailer/metrics.py), with `FunctionName` their function's name.
    metrics: MetricsFacts


def load_chat(app_code: Path | None = None) -> ChatFacts:
    service, schema = _Reader(CHAT_MODULE, app_code), _Reader(CHAT_SCHEMA_MODULE, app_code)
    create = schema.function("create_table_kwargs")
    metric_names, metrics = _metrics(CHAT_METRICS_MODULE, app_code)
    return ChatFacts(
        default_port=service.of("DEFAULT_PORT", int),
        ws_path=service.of("WS_PATH", str),
        liveness_path=service.of("LIVENESS_PATH", str),
        readiness_path=service.of("READINESS_PATH", str),
        alb_path_patterns=service.strings("ALB_PATH_PATTERNS"),
        ping_interval_seconds=service.of("PING_INTERVAL_SECONDS", int),
        min_alb_idle_timeout_seconds=service.of("MIN_ALB_IDLE_TIMEOUT_SECONDS", int),
        shutdown_grace_seconds=service.of("SHUTDOWN_GRACE_SECONDS", int),
        alb_deregistration_delay_seconds=service.of("ALB_DEREGISTRATION_DELAY_SECONDS", int),
        table_actions=service.strings("TABLE_ACTIONS"),
        table=schema.table("TABLE"),
        create_table_kwargs=lambda table_name: cast(dict[str, Any], create(table_name)),
        metrics=metrics,
        metrics_service=metric_names.of("SERVICE", str),
    )


def load_files(app_code: Path | None = None) -> FilesFacts:
    routes, database = _Reader(FILES_ROUTES_MODULE, app_code), _Reader(FILES_DATABASE_MODULE, app_code)
    metric_names, metrics = _metrics(FILES_METRICS_MODULE, app_code)
    dimension_value = metric_names.function("dimension_value")
    return FilesFacts(
        default_port=routes.of("DEFAULT_PORT", int),
        api_prefix=routes.of("API_PREFIX", str),
        liveness_path=routes.of("LIVENESS_PATH", str),
        readiness_path=routes.of("READINESS_PATH", str),
        openapi_path=routes.of("OPENAPI_PATH", str),
        object_key_prefix=routes.of("OBJECT_KEY_PREFIX", str),
        alb_path_patterns=routes.strings_by_key("ALB_PATH_PATTERNS"),
        s3_object_actions=routes.strings_by_key("S3_OBJECT_ACTIONS"),
        s3_bucket_actions=routes.strings_by_key("S3_BUCKET_ACTIONS"),
        app_role=database.of("APP_ROLE", str),
        migrate_module=database.of("MIGRATE_MODULE", str),
        rds_ca_bundle=database.of("RDS_CA_BUNDLE", str),
        metrics=metrics,
        metrics_dimension_value=lambda role: str(dimension_value(role)),
    )


def load_mailer(app_code: Path | None = None) -> MailerFacts:
    mailer, schema = _Reader(MAILER_MODULE, app_code), _Reader(MAILER_SCHEMA_MODULE, app_code)
    return MailerFacts(
        request_headers=mailer.strings("REQUEST_HEADERS"),
        api_routes=mailer.strings("API_ROUTES"),
        messages_path=mailer.of("MESSAGES_PATH", str),
        webhook_method=mailer.of("WEBHOOK_METHOD", str),
        webhook_path=mailer.of("WEBHOOK_PATH", str),
        webhook_route=mailer.of("WEBHOOK_ROUTE", str),
        table=schema.table("TABLE"),
        users_table=schema.table("USERS_TABLE"),
        quotas_table=schema.table("QUOTAS_TABLE"),
        metrics=_metrics(MAILER_METRICS_MODULE, app_code)[1],
    )


CHAT = load_chat()
FILES = load_files()
MAILER = load_mailer()
