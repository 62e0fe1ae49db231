"""The mailer handler killed at every step of a batch, then the record redelivered once the dead
invocation's lease has run out (as SQS does after the visibility timeout). Each recipient ends
with exactly one e-mail, or, only when the handler died between writing `sending` and recording
SES's answer, with its delivery `unknown`: never sent twice, reported with its reason and counted
in `DeliveriesUnknown`. Real local DynamoDB and SES; the death is a BaseException raised at the
step, which nothing in the handler catches, as nothing runs after a killed process."""

from __future__ import annotations

import json
import threading
import time as real_time
import types
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from mailer import worker as mailer_worker
from mailer.ses_events import EventRecorder

from devstack.servers import MotoServer
from devstack.ses import SesStandIn
from tests.services.mailer.support import MailEnv, Outbox, sqs_record
from tests.services.mailer.test_mailer_ses_events import Events


class Died(BaseException):
    """The invocation's process is gone: no except clause of the handler sees it."""


class DiesAt:
    """`target` whose `method` kills the invocation on its `nth` call, before or after doing it."""

    def __init__(self, target: Any, method: str, when: str, nth: int) -> None:
        self._target, self._method, self._when, self._nth = target, method, when, nth
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if name != self._method:
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls == self._nth and self._when == "before":
                raise Died(f"before {name}")
            result = attribute(*args, **kwargs)
            if self.calls == self._nth and self._when == "after":
                raise Died(f"after {name}")
            return result

        return call


class Context:
    """A Lambda context with little time left, so the dead invocation's lease is short."""

    aws_request_id = "req-crash"

    def get_remaining_time_in_millis(self) -> int:
        return 100


# (client, method, before/after, which call, second recipient's e-mails, second recipient's state).
# The message has two recipients; the death comes while handling the second (the first is done).
STEPS = [
    ("store", "save", "before", 1, 1, "sent"),
    ("store", "claim", "before", 2, 1, "sent"),
    ("store", "claim", "after", 2, 1, "sent"),
    ("store", "begin_send", "before", 2, 1, "sent"),
    ("ses", "send_email", "before", 2, 0, "unknown"),
    ("ses", "send_email", "after", 2, 1, "unknown"),
    ("store", "mark_sent", "after", 2, 1, "sent"),
    ("store", "mark_message_sent", "before", 1, 1, "sent"),
]


@pytest.mark.parametrize(("client", "method", "when", "nth", "emails", "state"), STEPS)
def test_a_handler_killed_at_each_step_sends_once_or_reports(
    client: str,
    method: str,
    when: str,
    nth: int,
    emails: int,
    state: str,
    mail_env: MailEnv,
    outbox: Outbox,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    message = mail_env.message(recipients=("bob@example.org", "carol@example.org"))
    record = sqs_record(message.to_event(), "rec-crash")
    store, ses = mail_env.store(), mail_env.session.client("sesv2")
    dying = DiesAt(store if client == "store" else ses, method, when, nth)
    killed = mail_env.worker(
        store=dying if client == "store" else None,  # type: ignore[arg-type]
        ses=dying if client == "ses" else None,
    )
    with pytest.raises(Died):
        killed.handle({"Records": [record]}, Context())

    # SQS redelivers after the visibility timeout, by when the dead invocation's lease is over.
    later = real_time.time() + 60
    monkeypatch.setattr(
        mailer_worker, "time", types.SimpleNamespace(time=lambda: later, monotonic=real_time.monotonic)
    )
    fresh = mail_env.worker()
    results = [fresh.handle({"Records": [record]}) for _ in range(2)]

    sent = outbox.sent(mail_env.token)
    to = [m["destinations"]["ToAddresses"] for m in sent]
    assert to.count(["bob@example.org"]) == 1
    assert to.count(["carol@example.org"]) == emails
    carol = store.get_delivery_item(message.message_id, "u_carol")
    assert carol is not None and carol["send_state"]["S"] == state
    item = store.get_message_item(message.message_id)
    assert item is not None
    if state == "sent":
        assert item["send_state"]["S"] == "sent"
        assert results == [{"batchItemFailures": []}] * 2
    else:
        # Reported, not retried into a second e-mail: the record keeps failing toward the dead
        # letters, the metric counts the delivery once, and the log says why.
        assert item["send_state"]["S"] == "unknown"
        assert results == [{"batchItemFailures": [{"itemIdentifier": "rec-crash"}]}] * 2
        logs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
        reported = [line for line in logs if line.get("outcome") == "unknown"]
        assert sum(line["DeliveriesUnknown"] for line in reported) == 1
        assert all(line["reason"] and line["recipient_id"] == "u_carol" for line in reported)


def test_a_retried_step_whose_first_attempt_landed_still_counts_as_done(mail_env: MailEnv) -> None:
    # The SDK retries a call whose answer was lost; the retry then meets its own first attempt's
    # write. begin_send must not take that for a takeover (the e-mail would never be sent and later
    # be reported unknown), and mark_unknown must still report the delivery as unknown.
    message = mail_env.message()
    store = mail_env.store()
    store.save(message)
    now_ms = int(real_time.time() * 1000)
    claim = store.claim(message.message_id, "u_bob", lease_until_ms=now_ms + 60_000, now_ms=now_ms)
    assert claim.claim_id is not None
    assert store.begin_send(message.message_id, "u_bob", claim.claim_id)
    assert store.begin_send(message.message_id, "u_bob", claim.claim_id)  # the retry
    assert store.begin_send(message.message_id, "u_bob", "someone-else") is False
    assert store.mark_unknown(message.message_id, "u_bob", claim.claim_id, "test")
    assert store.mark_unknown(message.message_id, "u_bob", claim.claim_id, "test")  # the retry
    # Another outcome recorded first is not overwritten nor reported as unknown.
    other = mail_env.message(recipients=("carol@example.org",))
    store.save(other)
    taken = store.claim(other.message_id, "u_carol", lease_until_ms=now_ms + 60_000, now_ms=now_ms)
    assert taken.claim_id is not None and store.begin_send(other.message_id, "u_carol", taken.claim_id)
    store.mark_sent(other.message_id, "u_carol", taken.claim_id, "ses-1", "2030-01-01T00:00:00.000Z")
    assert store.mark_unknown(other.message_id, "u_carol", taken.claim_id, "late") is False
    item = store.get_message_item(other.message_id)
    assert item is not None and item["send_state"]["S"] != "unknown"


@pytest.fixture
def ses_stand_in(moto_server: MotoServer) -> Iterator[SesStandIn]:
    with SesStandIn(moto_server.endpoint) as server:
        yield server


def _event_type(record: dict[str, Any]) -> tuple[str, str]:
    """(eventType, recipient's position) of a queued SES event record (raw, or in an SNS envelope)."""
    document = json.loads(record["body"])
    if "eventType" not in document:
        document = json.loads(document["Message"])
    return document["eventType"], document["mail"]["tags"]["recipient"][0]


def test_a_handler_killed_after_ses_sent_ends_sent_once_by_the_send_event(
    mail_env: MailEnv,
    outbox: Outbox,
    ses_stand_in: SesStandIn,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The whole path, not a hand-made `unknown` row: the SES stand-in takes Carol's e-mail and
    # publishes its events to the queue, the handler dies before recording SES's answer, the
    # redelivered record finds the delivery in doubt and reports it, and SES's own Send event
    # then proves it went out; the record's later redeliveries send nothing more.
    events = Events(mail_env, ses_stand_in)
    message = mail_env.message(recipients=("bob@example.org", "carol@example.org"))
    record = sqs_record(message.to_event(), "rec-crash")
    ses = boto3.client("sesv2", endpoint_url=ses_stand_in.endpoint)
    killed = mail_env.worker(ses=DiesAt(ses, "send_email", "after", 2))
    with pytest.raises(Died):
        killed.handle({"Records": [record]}, Context())

    later = real_time.time() + 60
    monkeypatch.setattr(
        mailer_worker, "time", types.SimpleNamespace(time=lambda: later, monotonic=real_time.monotonic)
    )
    assert mail_env.worker(ses=ses).handle({"Records": [record]}) == {
        "batchItemFailures": [{"itemIdentifier": "rec-crash"}]
    }
    store = mail_env.store()
    carol = store.get_delivery_item(message.message_id, "u_carol")
    assert carol is not None and carol["send_state"]["S"] == "unknown"
    logs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    reported = [line for line in logs if line.get("outcome") == "unknown"]
    assert sum(line["DeliveriesUnknown"] for line in reported) == 1

    queued = events.records(at_least=4)
    kinds = [_event_type(r) for r in queued]
    assert sorted(kinds) == [("Delivery", "0"), ("Delivery", "1"), ("Send", "0"), ("Send", "1")]
    carols_send = [r for r, kind in zip(queued, kinds, strict=True) if kind == ("Send", "1")]
    handler = EventRecorder(mail_env.settings(), store)
    assert handler.handle({"Records": carols_send}) == {"batchItemFailures": []}
    carol = store.get_delivery_item(message.message_id, "u_carol")
    assert carol is not None and carol["send_state"]["S"] == "sent"
    assert carol["confirmed_by"]["S"] == "ses-event"
    item = store.get_message_item(message.message_id)
    assert item is not None and item["send_state"]["S"] == "sent"  # summed up: both sent

    # The rest of the events, and the record's redeliveries: nothing is sent again.
    assert handler.handle({"Records": queued}) == {"batchItemFailures": []}
    for _ in range(2):
        assert mail_env.worker(ses=ses).handle({"Records": [record]}) == {"batchItemFailures": []}
    to = [m["destinations"]["ToAddresses"] for m in outbox.sent(mail_env.token)]
    assert to.count(["bob@example.org"]) == 1 and to.count(["carol@example.org"]) == 1
    assert len(to) == 2 and ses_stand_in.failed_publishes == []
    item = store.get_message_item(message.message_id)
    assert item is not None and item["send_state"]["S"] == "sent"


class Process:
    """The invocation's process, shared by every client it uses: once it dies at the chosen call,
    every later call from any of its threads dies too, as nothing runs in a killed process."""

    def __init__(self, method: str, when: str, nth: int) -> None:
        self.method, self.when, self.nth = method, when, nth
        self.calls = 0
        self.dead = False
        self._lock = threading.Lock()
        # Deliveries (message id, recipient id) past begin_send whose mark_sent never completed:
        # the only ones the store may end up calling unknown.
        self.in_doubt: set[tuple[str, str]] = set()
        # Deliveries (message id, recipient position) whose SES call this process made.
        self.ses_called: set[tuple[str, str]] = set()

    def wrap(self, target: Any) -> Any:
        process = self

        class Dying:
            def __getattr__(self, name: str) -> Any:
                attribute = getattr(target, name)
                if not callable(attribute):
                    return attribute

                def call(*args: Any, **kwargs: Any) -> Any:
                    with process._lock:
                        if process.dead:
                            raise Died(f"process gone before {name}")
                        mine = name == process.method
                        if mine:
                            process.calls += 1
                        dies = mine and process.calls == process.nth
                        if dies and process.when == "before":
                            process.dead = True
                            raise Died(f"before {name}")
                    if name == "send_email":
                        tags = {t["Name"]: t["Value"] for t in kwargs["EmailTags"]}
                        with process._lock:
                            process.ses_called.add((tags["message_id"], tags["recipient"]))
                    result = attribute(*args, **kwargs)
                    with process._lock:
                        if name == "begin_send" and result:
                            process.in_doubt.add((args[0], args[1]))
                        if name == "mark_sent":
                            process.in_doubt.discard((args[0], args[1]))
                    if dies:
                        process.dead = True
                        raise Died(f"after {name}")
                    return result

                return call

        return Dying()


# Mid-batch: 10 messages x 2 recipients (20 e-mails) handled concurrently, the process killed at
# the nth call of a step, with other records' calls in flight.
BATCH_STEPS = [
    ("save", "before", 5),
    ("claim", "after", 10),
    ("begin_send", "before", 10),
    ("send_email", "before", 10),
    ("send_email", "after", 10),
    ("mark_sent", "after", 10),
    ("mark_message_sent", "before", 5),
]


@pytest.mark.parametrize(("method", "when", "nth"), BATCH_STEPS)
def test_a_handler_killed_mid_batch_loses_and_duplicates_nothing(
    method: str,
    when: str,
    nth: int,
    mail_env: MailEnv,
    outbox: Outbox,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    messages = [mail_env.message(recipients=("bob@example.org", "carol@example.org")) for _ in range(10)]
    records = [sqs_record(m.to_event(), f"rec-{i}") for i, m in enumerate(messages)]
    store, ses = mail_env.store(), mail_env.session.client("sesv2")
    process = Process(method, when, nth)
    killed = mail_env.worker(store=process.wrap(store), ses=process.wrap(ses))
    with pytest.raises(Died):
        killed.handle({"Records": records}, Context())
    assert process.dead

    later = real_time.time() + 60
    monkeypatch.setattr(
        mailer_worker, "time", types.SimpleNamespace(time=lambda: later, monotonic=real_time.monotonic)
    )
    fresh = mail_env.worker()
    results = [fresh.handle({"Records": records}) for _ in range(2)]

    emails = len(outbox.sent(mail_env.token))
    unknown: set[str] = set()
    unknown_deliveries: set[tuple[str, str]] = set()
    sent_deliveries = 0
    sent_by_the_dead = 0
    for message in messages:
        states = {}
        for position, user in enumerate(("u_bob", "u_carol")):
            delivery = store.get_delivery_item(message.message_id, user)
            assert delivery is not None
            state = delivery["send_state"]["S"]
            states[user] = state
            # None stuck: after the redeliveries each e-mail is sent, or reported unknown.
            assert state in ("sent", "unknown"), (message.message_id, user, state)
            if state == "sent":
                sent_deliveries += 1
            else:
                unknown_deliveries.add((message.message_id, user))
                sent_by_the_dead += (message.message_id, str(position)) in process.ses_called
        item = store.get_message_item(message.message_id)
        assert item is not None
        expected = "unknown" if "unknown" in states.values() else "sent"
        assert item["send_state"]["S"] == expected  # the message sums its deliveries up
        if expected == "unknown":
            unknown.add(message.message_id)
    # Unknown only where the killed process was between begin_send and recording SES's answer
    # (other records' calls were in flight too, whatever step the kill came at).
    assert unknown_deliveries <= process.in_doubt
    if method == "send_email":
        assert unknown_deliveries  # the delivery the process died in is in doubt
    # None duplicated, none lost: one e-mail per sent delivery, plus the unknown ones whose SES
    # call the dead process did make (never re-sent).
    assert emails == sent_deliveries + sent_by_the_dead
    assert sent_deliveries + len(unknown_deliveries) == 20
    failed = {f"rec-{i}" for i, m in enumerate(messages) if m.message_id in unknown}
    for result in results:
        assert {f["itemIdentifier"] for f in result["batchItemFailures"]} == failed
    logs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    reported = [line for line in logs if line.get("outcome") == "unknown"]
    assert sum(line["DeliveriesUnknown"] for line in reported) == len(unknown_deliveries)
    assert all(line["reason"] for line in reported)
