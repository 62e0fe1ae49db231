"""Settings, event contract, table schema, logs and the Lambda archive of the mailing service."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest
from mailer.logs import JsonFormatter
from mailer.message import MailMessage, MalformedEvent, Recipient, new_message_id
from mailer.schema import TABLE, create_table_kwargs
from mailer.settings import Settings, SettingsError
from mailer.validation import SendRequest, decode_cursor, encode_cursor

from components.app_code import MAILER_ROOT, mailer_files
from components.aws.lambda_archive import build_zip, source_code_hash
from devstack.mail_resources import create_mail_resources
from tests.services.mailer.support import Clients

BASE_ENV = {
    "MESSAGES_TABLE": "messages",
    "MAIL_QUEUE_URL": "https://sqs.example/q",
    "SENDER_ADDRESS": "Motion <no-reply@mail.example.com>",
    "USERS_TABLE": "users",
    "QUOTAS_TABLE": "quotas",
}


def test_settings_defaults_and_optional_values() -> None:
    worker = Settings.from_env("worker", BASE_ENV)
    assert (worker.max_recipients, worker.log_level, worker.ses_configuration_set) == (50, "INFO", None)
    tuned = Settings.from_env(
        "api",
        {**BASE_ENV, "MAX_RECIPIENTS": "10", "LOG_LEVEL": "debug", "SES_CONFIGURATION_SET": "motion-mail"},
    )
    assert (tuned.max_recipients, tuned.log_level, tuned.ses_configuration_set) == (
        10,
        "DEBUG",
        "motion-mail",
    )


@pytest.mark.parametrize(
    ("role", "env", "names"),
    [
        ("api", {"MAIL_QUEUE_URL": "q"}, "MESSAGES_TABLE"),
        ("api", {"MESSAGES_TABLE": "t"}, "MAIL_QUEUE_URL"),
        ("worker", {"MESSAGES_TABLE": "t", "SENDER_ADDRESS": " "}, "SENDER_ADDRESS"),
        ("worker", {**BASE_ENV, "SENDER_ADDRESS": "no address here"}, "SENDER_ADDRESS"),
        ("api", {**BASE_ENV, "MAX_RECIPIENTS": "many"}, "MAX_RECIPIENTS"),
        ("api", {**BASE_ENV, "MAX_RECIPIENTS": "0"}, "MAX_RECIPIENTS"),
        ("api", {**BASE_ENV, "MAX_RECIPIENTS": "51"}, "MAX_RECIPIENTS"),
        ("worker", {**BASE_ENV, "LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ("api", {"MESSAGES_TABLE": "t", "MAIL_QUEUE_URL": "q"}, "USERS_TABLE"),
        ("webhook", {"USERS_TABLE": "u"}, "WEBHOOK_SECRET_ARN"),
        ("api", {**BASE_ENV, "QUOTAS_TABLE": ""}, "QUOTAS_TABLE"),
        ("api", {**BASE_ENV, "QUOTA_PER_HOUR": "0"}, "QUOTA_PER_HOUR"),
        ("api", {**BASE_ENV, "QUOTA_PER_DAY": "lots"}, "QUOTA_PER_DAY"),
        (
            "api",
            {**BASE_ENV, "QUOTA_PER_HOUR": "20", "QUOTA_PER_DAY": "10"},
            "QUOTA_PER_HOUR must not exceed",
        ),
        ("webhook", {"WEBHOOK_SECRET_ARN": "arn:aws:secretsmanager:x"}, "USERS_TABLE"),
    ],
)
def test_bad_settings_name_the_variable(role: str, env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names):
        Settings.from_env(role, env)  # type: ignore[arg-type]


def test_every_bad_setting_is_named_in_one_error() -> None:
    env = {"SENDER_ADDRESS": "nobody", "MAX_RECIPIENTS": "many", "LOG_LEVEL": "loud"}
    with pytest.raises(SettingsError) as raised:
        Settings.from_env("worker", env)
    message = str(raised.value)
    assert message.startswith("invalid mail worker settings: ")
    problems = message.removeprefix("invalid mail worker settings: ").split("; ")
    assert [p.split()[0] for p in problems] == [
        "MESSAGES_TABLE",
        "SENDER_ADDRESS",
        "MAX_RECIPIENTS",
        "LOG_LEVEL",
    ]


def message() -> MailMessage:
    request = SendRequest(recipients=("user_bob",), subject="Hi", body="Body\n")
    return MailMessage.accept(
        request,
        sender_id="user_alice",
        sender_email="alice@example.org",
        sender_name="Alice",
        recipients=(Recipient("user_bob", "bob@example.org"),),
    )


def test_events_round_trip() -> None:
    original = message()
    assert MailMessage.from_event(original.to_event()) == original


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"version": 1}, "version"),
        ({"message_id": "../../etc"}, "message_id"),
        ({"message_id": "a" * 32 + "\n"}, "message_id"),
        ({"created_at": "\uff12\uff10\uff12\uff15-01-31T12:00:00.000Z"}, "created_at"),  # full-width digits
        ({"sender_id": ""}, "sender_id"),
        ({"sender_email": "Alice@Example.org"}, "sender_email"),
        ({"created_at": "yesterday"}, "created_at"),
        ({"recipients": ["bob@example.org"]}, "recipients[0].user_id"),
        ({"recipients": [{"user_id": "user_bob", "email": "Bob@x.org"}]}, "recipients[0].email"),
        ({"recipients": [{"user_id": "u", "email": "b@x.org"}] * 2}, "recipients[1]"),
        ({"recipients": [{"user_id": f"u{i}", "email": "b@x.org"} for i in range(51)]}, "recipients"),
        ({"sender_name": "Eve\r\nBcc: x"}, "sender_name"),
        ({"subject": "a\nb"}, "subject"),
        ({"body": None}, "body"),
    ],
)
def test_malformed_events_are_rejected_with_the_reason(change: dict[str, object], reason: str) -> None:
    event = {**json.loads(message().to_event()), **change}
    with pytest.raises(MalformedEvent, match=re.escape(reason)):
        MailMessage.from_event(json.dumps(event))


@pytest.mark.parametrize("raw", [None, 7, "", "[]", "null", "{"])
def test_non_object_events_are_malformed(raw: object) -> None:
    with pytest.raises(MalformedEvent):
        MailMessage.from_event(raw)


def test_message_ids_sort_by_time_and_do_not_collide() -> None:
    ids = [new_message_id(1_700_000_000 + i) for i in range(3)]
    assert ids == sorted(ids) and all(len(i) == 32 for i in ids)
    assert len({new_message_id(1_700_000_000) for _ in range(1000)}) == 1000


def test_cursor_round_trip() -> None:
    sort_key = "2025-01-31T12:00:00.000Z#" + "a" * 32
    assert decode_cursor(encode_cursor(sort_key)) == sort_key
    assert decode_cursor(encode_cursor("MSG#x")) is None


def test_table_schema_is_complete_create_table_input() -> None:
    kwargs = create_table_kwargs("motion-mail-messages")
    assert kwargs["TableName"] == "motion-mail-messages"
    defined = {a["AttributeName"] for a in kwargs["AttributeDefinitions"]}
    assert {k["AttributeName"] for k in kwargs["KeySchema"]} <= defined
    assert [k["KeyType"] for k in kwargs["KeySchema"]] == ["HASH", "RANGE"]
    # No index (mailbox entries carry their content); callers must not be able to mutate the shared data.
    assert "GlobalSecondaryIndexes" not in kwargs
    kwargs["KeySchema"][0]["AttributeName"] = "changed"
    assert TABLE["KeySchema"][0]["AttributeName"] == "pk"


def test_logs_are_one_json_object_with_the_fields() -> None:
    logger = logging.getLogger("test.mailer")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logger.makeRecord(
            "mailer",
            logging.ERROR,
            __file__,
            1,
            "sent %s",
            ("x",),
            sys.exc_info(),
            extra={"fields": {"message_id": "m1"}},
        )
    document = json.loads(JsonFormatter().format(record))
    assert document["message"] == "sent x" and document["level"] == "ERROR"
    assert document["message_id"] == "m1" and "ValueError: boom" in document["error"]


def test_handler_modules_import_without_boto3() -> None:
    # boto3 alone costs more than the cold-import budget; it must wait for the first request.
    code = "import sys, mailer.api, mailer.worker; print('boto3' in sys.modules, 'botocore' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(MAILER_ROOT)},
    )
    assert out.stdout.split() == ["False", "False"]


def test_archive_holds_exactly_the_package_sources() -> None:
    files = mailer_files(MAILER_ROOT)
    names = [p.as_posix() for p in files]
    assert names == sorted(names)
    assert {"mailer/__init__.py", "mailer/api.py", "mailer/worker.py", "mailer/schema.py"} <= set(names)
    assert all(n.startswith("mailer/") and n.endswith(".py") for n in names)
    with zipfile.ZipFile(io.BytesIO(build_zip(MAILER_ROOT, mailer_files()))) as archive:
        assert archive.namelist() == names
        assert all((info.external_attr >> 16) & 0o777 == 0o644 for info in archive.infolist())


def test_archive_is_reproducible_and_ignores_junk(tmp_path: Path) -> None:
    root = tmp_path / "mailer-copy"
    shutil.copytree(MAILER_ROOT / "mailer", root / "mailer", ignore=shutil.ignore_patterns("__pycache__"))
    before = build_zip(root, mailer_files(root))
    files_before = mailer_files(root)

    # Timestamps, caches and editor files change nothing.
    for path in (root / "mailer").iterdir():
        os.utime(path, (1_900_000_000, 1_900_000_000))
    (root / "mailer" / "__pycache__").mkdir()
    (root / "mailer" / "__pycache__" / "api.cpython-313.py").write_text("cached")
    (root / "mailer" / ".#api.py").write_text("lock")
    (root / "mailer" / "notes.txt").write_text("notes")
    (root / "tests").mkdir()
    (root / "tests" / "test_x.py").write_text("")
    assert mailer_files(root) == files_before
    assert build_zip(root, mailer_files(root)) == before

    # A code change changes the archive and its hash.
    (root / "mailer" / "api.py").write_text((root / "mailer" / "api.py").read_text() + "\n# changed\n")
    after = build_zip(root, mailer_files(root))
    assert after != before and source_code_hash(after) != source_code_hash(before)


def test_resources_can_be_created_again(aws_env: dict[str, str], aws_clients: Clients) -> None:
    # `make run` may start against a local AWS API that already has them.
    prefix = f"again-{uuid.uuid4().hex[:8]}"
    first = create_mail_resources(prefix, session=aws_clients, max_receive_count=3)
    again = create_mail_resources(prefix, session=aws_clients, max_receive_count=3)
    assert again == first
    redrive = aws_clients.client("sqs").get_queue_attributes(
        QueueUrl=first.queue_url, AttributeNames=["RedrivePolicy"]
    )["Attributes"]["RedrivePolicy"]
    assert json.loads(redrive) == {"deadLetterTargetArn": first.dlq_arn, "maxReceiveCount": 3}
    assert first.api_env() == {
        "MESSAGES_TABLE": first.table_name,
        "MAIL_QUEUE_URL": first.queue_url,
        "USERS_TABLE": first.users_table,
        "QUOTAS_TABLE": first.quotas_table,
    }
    assert first.webhook_env() == {
        "USERS_TABLE": first.users_table,
        "WEBHOOK_SECRET_ARN": first.webhook_secret_arn,
    }
    assert first.webhook_secret.startswith("whsec_")
    assert first.worker_env() == {
        "MESSAGES_TABLE": first.table_name,
        "SENDER_ADDRESS": first.sender_address,
        "SES_CONFIGURATION_SET": first.configuration_set,
    }
    assert first.ses_identity == "mail.motion.local"
