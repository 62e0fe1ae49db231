"""The typed service facts (components/facts.py): read from the services' own modules, each name checked
as it is read, so a renamed or retyped fact fails naming the file and the name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from components import facts

MODULES = (
    facts.CHAT_MODULE,
    facts.CHAT_SCHEMA_MODULE,
    facts.FILES_ROUTES_MODULE,
    facts.FILES_DATABASE_MODULE,
    facts.MAILER_MODULE,
    facts.MAILER_SCHEMA_MODULE,
    facts.CHAT_METRICS_MODULE,
    facts.FILES_METRICS_MODULE,
    facts.MAILER_METRICS_MODULE,
)


@pytest.fixture
def app_code(tmp_path: Path) -> Path:
    """A copy of just the facts modules, to break one at a time."""
    for relative in MODULES:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(facts.APP_CODE / relative, tmp_path / relative)
    return tmp_path


def test_the_facts_are_the_services_values() -> None:
    chat = facts.load_app_module(facts.CHAT_MODULE)
    routes = facts.load_app_module(facts.FILES_ROUTES_MODULE)
    mailer = facts.load_app_module(facts.MAILER_MODULE)
    assert facts.CHAT.ws_path == chat.WS_PATH and facts.CHAT.default_port == chat.DEFAULT_PORT
    assert facts.CHAT.alb_path_patterns == tuple(chat.ALB_PATH_PATTERNS)
    assert facts.FILES.api_prefix == routes.API_PREFIX
    assert facts.FILES.alb_path_patterns == {k: tuple(v) for k, v in routes.ALB_PATH_PATTERNS.items()}
    assert facts.MAILER.webhook_route == mailer.WEBHOOK_ROUTE
    assert facts.CHAT.create_table_kwargs("t")["TableName"] == "t"
    chat_metrics = facts.load_app_module(facts.CHAT_METRICS_MODULE)
    assert facts.CHAT.metrics.names == chat_metrics.ALL and facts.CHAT.metrics_service == chat_metrics.SERVICE
    assert facts.FILES.metrics_dimension_value("upload") == "files-upload"
    assert facts.MAILER.metrics.namespace == "Motion/Mail" and "EmailsSent" in facts.MAILER.metrics.names


def test_a_missing_name_fails_naming_the_file_and_the_name(app_code: Path) -> None:
    module = app_code / facts.CHAT_MODULE
    module.write_text(module.read_text().replace("WS_PATH: Final =", "WEBSOCKET_PATH: Final ="))
    with pytest.raises(facts.FactsError, match=r"app_code/chat/chat_service/__init__.py: has no WS_PATH"):
        facts.load_chat(app_code)


@pytest.mark.parametrize(
    ("relative", "old", "new", "name"),
    [
        (facts.CHAT_MODULE, "DEFAULT_PORT: Final = 8080", 'DEFAULT_PORT: Final = "8080"', "DEFAULT_PORT"),
        (facts.CHAT_MODULE, "DEFAULT_PORT: Final = 8080", "DEFAULT_PORT: Final = True", "DEFAULT_PORT"),
        (facts.FILES_DATABASE_MODULE, 'APP_ROLE = "files_app"', "APP_ROLE = None", "APP_ROLE"),
        (
            facts.MAILER_MODULE,
            "REQUEST_HEADERS: tuple[str, ...] = (IDEMPOTENCY_KEY_HEADER,)",
            "REQUEST_HEADERS = IDEMPOTENCY_KEY_HEADER",
            "REQUEST_HEADERS",
        ),
    ],
)
def test_a_fact_of_another_type_fails_naming_it(
    app_code: Path, relative: str, old: str, new: str, name: str
) -> None:
    module = app_code / relative
    text = module.read_text()
    assert old in text
    module.write_text(text.replace(old, new))
    loaders = {facts.CHAT_MODULE: facts.load_chat, facts.FILES_DATABASE_MODULE: facts.load_files}
    with pytest.raises(facts.FactsError, match=rf"app_code/{relative}: {name} is "):
        loaders.get(relative, facts.load_mailer)(app_code)
