"""The local event source mapping: SQS batches in, ReportBatchItemFailures semantics out."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from devstack.sqs_poller import LambdaContext, SqsPoller, failed_ids
from tests.services.mailer.support import MailEnv

IDS = ["m-1", "m-2"]


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (None, set()),
        ({}, set()),
        ("ok", set()),
        ({"batchItemFailures": None}, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "m-2"}]}, {"m-2"}),
        ({"batchItemFailures": [{"itemIdentifier": "m-3"}]}, None),
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, None),
        ({"batchItemFailures": [{}]}, None),
        ({"batchItemFailures": "m-1"}, None),
    ],
)
def test_batch_item_failures_are_read_like_lambda_does(response: Any, expected: set[str] | None) -> None:
    assert failed_ids(response, IDS) == expected


class ScriptedHandler:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.fail_bodies: set[str] = set()
        self.raise_error = False
        self.invalid = False

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.events.append(event)
        if self.raise_error:
            raise RuntimeError("function crashed")
        if self.invalid:
            return {"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]}
        failures = [
            {"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] in self.fail_bodies
        ]
        return {"batchItemFailures": failures}


def send(env: MailEnv, *bodies: str) -> None:
    for body in bodies:
        env.sqs.send_message(
            QueueUrl=env.resources.queue_url,
            MessageBody=body,
            MessageAttributes={
                "kind": {"DataType": "String", "StringValue": "test"},
                "blob": {"DataType": "Binary", "BinaryValue": b"\x01\x02"},
            },
        )


def test_successes_are_deleted_and_failures_come_back_after_the_visibility_timeout(
    make_mail_env: Any,
) -> None:
    env: MailEnv = make_mail_env(visibility_timeout=1)
    handler = ScriptedHandler()
    handler.fail_bodies = {"b"}
    send(env, "a", "b", "c")
    poller = SqsPoller(env.resources.queue_url, handler, wait_time_seconds=1)

    first = poller.run_once()
    assert first.received == 3 and len(first.succeeded) == 2 and len(first.failed) == 1
    assert env.queue_depth(env.resources.queue_url) == 1

    record = handler.events[0]["Records"][0]
    assert record["eventSource"] == "aws:sqs" and record["eventSourceARN"] == env.resources.queue_arn
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["messageAttributes"]["kind"]["stringValue"] == "test"
    assert record["messageAttributes"]["blob"]["binaryValue"] == "AQI="
    assert record["receiptHandle"] and record["md5OfBody"]

    time.sleep(1.1)
    handler.fail_bodies = set()
    second = poller.run_once()
    [again] = handler.events[1]["Records"]
    assert (again["body"], again["attributes"]["ApproximateReceiveCount"]) == ("b", "2")
    assert second.succeeded == (again["messageId"],)
    assert env.queue_depth(env.resources.queue_url) == 0


@pytest.mark.parametrize("mode", ["raise_error", "invalid"])
def test_a_crash_or_an_invalid_response_fails_the_whole_batch(make_mail_env: Any, mode: str) -> None:
    env: MailEnv = make_mail_env(visibility_timeout=30)
    handler = ScriptedHandler()
    setattr(handler, mode, True)
    send(env, "a", "b")
    poller = SqsPoller(env.resources.queue_url, handler, wait_time_seconds=1)

    result = poller.run_once()

    assert result.received == 2 and len(result.failed) == 2 and result.error
    assert env.queue_depth(env.resources.queue_url) == 2


def test_run_forever_stops_when_asked(mail_env: MailEnv) -> None:
    handler = ScriptedHandler()
    send(mail_env, "x")
    stop = threading.Event()
    thread = SqsPoller(mail_env.resources.queue_url, handler, wait_time_seconds=1).start_thread(stop)
    deadline = time.monotonic() + 10
    while not handler.events and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert [r["body"] for r in handler.events[0]["Records"]] == ["x"]


def test_context_counts_down_from_the_function_timeout() -> None:
    context = LambdaContext(timeout_seconds=2)
    first = context.get_remaining_time_in_millis()
    time.sleep(0.05)
    assert 0 < context.get_remaining_time_in_millis() < first <= 2000
    assert context.invoked_function_arn.endswith(":function:mailer")
