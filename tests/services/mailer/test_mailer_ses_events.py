"""SES's sending events: recorded per recipient, shown to the sender, suppressing what bounced or
complained. End to end through the local SES stand-in (devstack/ses.py): the mailer sends through
it, it publishes the events SES would to an SNS topic on the local AWS API, the topic delivers
them to a queue with raw message delivery, and the events handler reads that queue."""

from __future__ import annotations

import contextlib
import json
import logging
import random
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from mailer.message import MalformedEvent
from mailer.ses_events import EventRecorder, parse
from mailer.store import SENT, UNKNOWN, delivery_key, message_key

from devstack.mail_resources import publish_ses_events
from devstack.servers import MotoServer
from devstack.ses import SIMULATOR_DOMAIN, SesStandIn, event_document
from tests.services.mailer.support import MailEnv, Outbox, claims_event, sqs_record

SUCCESS = f"success@{SIMULATOR_DOMAIN}"
BOUNCE = f"bounce@{SIMULATOR_DOMAIN}"
COMPLAINT = f"complaint@{SIMULATOR_DOMAIN}"


@pytest.fixture
def ses(moto_server: MotoServer) -> Iterator[SesStandIn]:
    with SesStandIn(moto_server.endpoint) as server:
        yield server


class Events:
    """The configuration set publishing to its topic through the SES stand-in, as `make run` sets it."""

    def __init__(self, env: MailEnv, ses: SesStandIn) -> None:
        self.env = env
        self.sesv2 = boto3.client("sesv2", endpoint_url=ses.endpoint)
        publish_ses_events(env.resources, self.sesv2)
        self.queue_url = env.resources.ses_events_queue_url

    def records(self, at_least: int) -> list[dict[str, Any]]:
        """The queued event records, as the event source mapping would hand them over."""
        records: list[dict[str, Any]] = []
        for _ in range(20):
            got = self.env.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", [])
            records += [sqs_record(m["Body"], m["MessageId"]) for m in got]
            for m in got:
                self.env.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
            if len(records) >= at_least and not got:
                break
        return records


def recorder(env: MailEnv) -> EventRecorder:
    return EventRecorder(env.settings(), env.store())


def emf_counts(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> dict[str, int]:
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    batches = [line for line in lines if line.get("message") == "events batch done"]
    totals: dict[str, int] = {}
    for batch in batches:
        for metric in batch["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            totals[metric["Name"]] = totals.get(metric["Name"], 0) + batch[metric["Name"]]
    return totals


def outcome(env: MailEnv, message_id: str, recipient_id: str) -> dict[str, Any]:
    item = env.dynamodb.get_item(
        TableName=env.resources.table_name, Key=delivery_key(message_id, recipient_id), ConsistentRead=True
    )["Item"]
    return {k: next(iter(v.values())) for k, v in item.items()}


def test_outcomes_are_recorded_shown_to_the_sender_and_bad_addresses_suppressed(
    mail_env: MailEnv,
    ses: SesStandIn,
    outbox: Outbox,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    events = Events(mail_env, ses)
    worker = mail_env.worker(ses=events.sesv2)
    message = mail_env.message(recipients=(SUCCESS, BOUNCE, COMPLAINT))
    assert worker.handle({"Records": [sqs_record(message.to_event())]}) == {"batchItemFailures": []}
    assert len(outbox.sent(mail_env.token)) == 3

    records = events.records(at_least=7)  # 3 Send, 2 Delivery, 1 Bounce, 1 Complaint
    assert sorted(json.loads(r["body"])["eventType"] for r in records) == sorted(
        ["Send"] * 3 + ["Delivery"] * 2 + ["Bounce", "Complaint"]
    )
    random.Random(7).shuffle(records)  # noqa: S311 - SNS promises no order
    assert recorder(mail_env).handle({"Records": records}) == {"batchItemFailures": []}

    got = {r.user_id: outcome(mail_env, message.message_id, r.user_id) for r in message.recipients}
    assert got["u_success"]["outcome"] == "delivered"
    assert got["u_bounce"]["outcome"] == "bounced"
    assert got["u_bounce"]["outcome_detail"].startswith("Permanent/General")
    assert got["u_complaint"]["outcome"] == "complained"  # above its delivery, whatever the order
    counts = emf_counts(caplog, capsys)
    # The complained-about e-mail's delivery counts only if it arrived before the complaint.
    assert counts.pop("EmailsDelivered") in (1, 2)
    assert counts == {"EmailsBounced": 1, "EmailsComplained": 1, "SendsConfirmed": 0, "EventsDropped": 0}

    # The sender sees each recipient's outcome; a recipient sees no one's.
    listed = mail_env.api().handle(claims_event("GET /mail/messages", sub=message.sender_id))
    [entry] = [m for m in json.loads(listed["body"])["messages"] if m["id"] == message.message_id]
    assert entry["deliveries"] == [
        {"user_id": "u_success", "status": "delivered"},
        {"user_id": "u_bounce", "status": "bounced"},
        {"user_id": "u_complaint", "status": "complained"},
    ]
    inbox = mail_env.api().handle(claims_event("GET /mail/messages", sub="u_bounce"))
    assert all("deliveries" not in m for m in json.loads(inbox["body"])["messages"])

    # SES put the hard bounce and the complaint on the account's suppression list...
    for address, reason in ((BOUNCE, "BOUNCE"), (COMPLAINT, "COMPLAINT")):
        listed_address = events.sesv2.get_suppressed_destination(EmailAddress=address)
        assert listed_address["SuppressedDestination"]["Reason"] == reason
    with pytest.raises(events.sesv2.exceptions.NotFoundException):
        events.sesv2.get_suppressed_destination(EmailAddress=SUCCESS)

    # ... so the next e-mail to that address is not sent, and is recorded as suppressed.
    again = mail_env.message(recipients=(BOUNCE,), subject=f"again {mail_env.token}")
    assert worker.handle({"Records": [sqs_record(again.to_event())]}) == {"batchItemFailures": []}
    assert [m for m in outbox.sent(mail_env.token) if "again" in m["subject"]] == []
    assert recorder(mail_env).handle({"Records": events.records(at_least=2)}) == {"batchItemFailures": []}
    assert outcome(mail_env, again.message_id, "u_bounce")["outcome"] == "suppressed"


def _event(env: MailEnv, event_type: str, message_id: str, position: int, address: str, **kw: Any) -> str:
    return json.dumps(
        event_document(
            event_type,
            ses_message_id=kw.pop("ses_message_id", "ses-1"),
            source="no-reply@mail.motion.local",
            destination=address,
            tags={"message_id": message_id, "recipient": str(position)},
            configuration_set=env.resources.configuration_set,
            sent_at="2026-12-02T10:00:00.000Z",
            **kw,
        )
    )


def test_an_outcome_only_moves_up_and_duplicates_change_nothing(mail_env: MailEnv, outbox: Outbox) -> None:
    message = mail_env.message(recipients=("bob@example.org",))
    assert mail_env.worker().handle({"Records": [sqs_record(message.to_event())]})["batchItemFailures"] == []
    events = recorder(mail_env)

    def feed(event_type: str, **kw: Any) -> str:
        body = _event(mail_env, event_type, message.message_id, 0, "bob@example.org", **kw)
        assert events.handle({"Records": [sqs_record(body)]}) == {"batchItemFailures": []}
        return str(outcome(mail_env, message.message_id, "u_bob")["outcome"])

    assert feed("Send") == "accepted"
    assert feed("Delivery") == "delivered"
    assert feed("Send") == "delivered"  # a late duplicate of an earlier event
    assert feed("Delivery") == "delivered"
    assert feed("Complaint") == "complained"
    assert feed("Delivery") == "complained"


def test_a_soft_bounce_never_replaces_delivered_but_a_permanent_one_does(mail_env: MailEnv) -> None:
    message = mail_env.message(recipients=("bob@example.org",))
    assert mail_env.worker().handle({"Records": [sqs_record(message.to_event())]})["batchItemFailures"] == []
    events = recorder(mail_env)

    def feed(event_type: str, bounce_type: str | None = None) -> str:
        document = json.loads(_event(mail_env, event_type, message.message_id, 0, "bob@example.org"))
        if bounce_type is not None:
            document["bounce"]["bounceType"] = bounce_type
        assert events.handle({"Records": [sqs_record(json.dumps(document))]}) == {"batchItemFailures": []}
        return str(outcome(mail_env, message.message_id, "u_bob")["outcome"])

    assert feed("Send") == "accepted"
    # Soft, before anything better is known: recorded.
    assert feed("Bounce", "Transient") == "bounced"
    assert feed("Delivery") == "delivered"
    # An auto-reply or a mailbox-full notice after the receiving server took it: still delivered.
    assert feed("Bounce", "Transient") == "delivered"
    assert feed("Bounce", "Undetermined") == "delivered"
    # A permanent bounce reported after acceptance is a failure.
    assert feed("Bounce", "Permanent") == "bounced"
    permanent = parse(_event(mail_env, "Bounce", message.message_id, 0, "b@example.org"))
    delivered = parse(_event(mail_env, "Delivery", message.message_id, 0, "b@example.org"))
    assert permanent is not None and delivered is not None and permanent.rank > delivered.rank


def test_events_naming_nothing_of_ours_are_dropped_and_counted_for_the_alarm(
    mail_env: MailEnv, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    message = mail_env.message(recipients=("bob@example.org",))
    assert mail_env.worker().handle({"Records": [sqs_record(message.to_event())]})["batchItemFailures"] == []
    capsys.readouterr()
    bodies = [
        _event(mail_env, "Delivery", uuid.uuid4().hex, 0, "bob@example.org"),  # no such message
        _event(mail_env, "Delivery", message.message_id, 7, "bob@example.org"),  # no such recipient
        _event(mail_env, "Delivery", message.message_id, 0, "mallory@example.org"),  # another address
        _event(mail_env, "Delivery", message.message_id, 0, "bob@example.org"),  # ours
    ]
    result = recorder(mail_env).handle({"Records": [sqs_record(b) for b in bodies]}, None)
    assert result == {"batchItemFailures": []}  # no retry can make them known
    counts = emf_counts(caplog, capsys)
    assert counts["EventsDropped"] == 3 and counts["EmailsDelivered"] == 1
    assert outcome(mail_env, message.message_id, "u_bob")["outcome"] == "delivered"


def test_an_event_is_evidence_that_a_send_the_mailer_could_not_record_went_out(
    mail_env: MailEnv, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    message = mail_env.message(recipients=("bob@example.org", "carol@example.org"))
    store = mail_env.store()
    store.save(message)
    # Bob's e-mail was sent and recorded; Carol's handler died after calling SES (`unknown`).
    for recipient, state in (("u_bob", SENT), ("u_carol", UNKNOWN)):
        mail_env.dynamodb.put_item(
            TableName=mail_env.resources.table_name,
            Item={**delivery_key(message.message_id, recipient), "send_state": {"S": state}},
        )
    mail_env.dynamodb.update_item(
        TableName=mail_env.resources.table_name,
        Key=message_key(message.message_id),
        UpdateExpression="SET send_state = :u",
        ExpressionAttributeValues={":u": {"S": UNKNOWN}},
    )
    body = _event(mail_env, "Send", message.message_id, 1, "carol@example.org", ses_message_id="ses-carol")
    assert recorder(mail_env).handle({"Records": [sqs_record(body)]}) == {"batchItemFailures": []}
    carol = outcome(mail_env, message.message_id, "u_carol")
    assert (carol["send_state"], carol["ses_message_id"], carol["confirmed_by"]) == (
        SENT,
        "ses-carol",
        "ses-event",
    )
    item = store.get_message_item(message.message_id) or {}
    assert item["send_state"]["S"] == SENT  # every recipient's e-mail is now known sent
    assert emf_counts(caplog, capsys)["SendsConfirmed"] == 1


def test_sns_envelopes_are_read_and_unusable_records_fail_alone(mail_env: MailEnv) -> None:
    message = mail_env.message(recipients=("bob@example.org",))
    assert mail_env.worker().handle({"Records": [sqs_record(message.to_event())]})["batchItemFailures"] == []
    delivery = _event(mail_env, "Delivery", message.message_id, 0, "bob@example.org")
    envelope = json.dumps({"Type": "Notification", "MessageId": str(uuid.uuid4()), "Message": delivery})
    good = [
        sqs_record(envelope),
        # Not ours to act on, or not knowable: logged and done (no retry can change them).
        sqs_record(json.dumps({"eventType": "Open", "mail": {}})),
        sqs_record(_event(mail_env, "Bounce", "0" * 32, 0, "bob@example.org")),  # no such message
        sqs_record(_event(mail_env, "Bounce", message.message_id, 5, "bob@example.org")),  # no such recipient
        sqs_record(_event(mail_env, "Bounce", message.message_id, 0, "mallory@example.org")),  # not Bob's
    ]
    bad = [
        sqs_record("not json"),
        sqs_record("[]"),
        sqs_record(json.dumps({"eventType": "Bounce"})),
        sqs_record(json.dumps({"eventType": "Exploded", "mail": {}})),
        sqs_record(json.dumps({"Type": "Notification", "Message": 5})),
        sqs_record(_event(mail_env, "Delivery", message.message_id, 0, "b@x").replace('"0"', '"-1"')),
        sqs_record(
            json.dumps({"eventType": "Send", "mail": {"tags": {"message_id": ["m"]}, "messageId": "x"}})
        ),
    ]
    result = recorder(mail_env).handle({"Records": good + bad})
    assert sorted(f["itemIdentifier"] for f in result["batchItemFailures"]) == sorted(
        r["messageId"] for r in bad
    )
    bob = outcome(mail_env, message.message_id, "u_bob")
    assert bob["outcome"] == "delivered"  # the envelope's event; the bounce naming Mallory was not taken
    with pytest.raises(MalformedEvent):
        recorder(mail_env).handle({"Records": [{"body": "{}"}]})  # no messageId: fail the invocation


def test_whatever_bytes_arrive_a_record_is_failed_or_done_never_raised(mail_env: MailEnv) -> None:
    events = recorder(mail_env)
    rng = random.Random(16)  # noqa: S311 - a reproducible fuzz, not crypto
    base = _event(mail_env, "Bounce", "1" * 32, 0, "bob@example.org")
    for _ in range(300):
        raw = bytearray(base.encode())
        for _ in range(rng.randint(1, 8)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        body = raw.decode("utf-8", "replace")
        result = events.handle({"Records": [sqs_record(body)]})
        assert len(result["batchItemFailures"]) <= 1
        with contextlib.suppress(MalformedEvent):  # anything else escaping is the failure
            parse(body)


def test_the_documented_event_shape_is_what_the_stand_in_makes_and_the_handler_reads() -> None:
    # The Bounce record of "Examples of event data that Amazon SES publishes to Amazon SNS" (SES
    # Developer Guide), with the tags our configuration set's e-mails carry.
    documented = {
        "eventType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": "recipient@example.com",
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
            "timestamp": "2017-08-05T00:41:02.669Z",
            "feedbackId": "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000",
            "reportingMTA": "dsn; mta.example.com",
        },
        "mail": {
            "timestamp": "2017-08-05T00:40:02.012Z",
            "source": "Sender Name <sender@example.com>",
            "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/sender@example.com",
            "sendingAccountId": "123456789012",
            "messageId": "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
            "destination": ["recipient@example.com"],
            "headersTruncated": False,
            "headers": [{"name": "To", "value": "recipient@example.com"}],
            "commonHeaders": {"from": ["Sender Name <sender@example.com>"], "to": ["recipient@example.com"]},
            "tags": {
                "ses:configuration-set": ["ConfigSet"],
                "message_id": ["0123456789abcdef0123456789abcdef"],
                "recipient": ["2"],
            },
        },
    }
    event = parse(json.dumps(documented))
    assert event is not None
    assert (event.outcome, event.position, event.addresses) == ("bounced", 2, ("recipient@example.com",))
    assert event.detail == "Permanent/General smtp; 550 5.1.1 user unknown"
    assert event.at == "2017-08-05T00:41:02.669Z"
    made = event_document(
        "Bounce",
        ses_message_id="x",
        source="Sender Name <sender@example.com>",
        destination="recipient@example.com",
        tags={"message_id": "0123456789abcdef0123456789abcdef", "recipient": "2"},
        configuration_set="ConfigSet",
        sent_at="2017-08-05T00:40:02.012Z",
    )

    def shape(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: shape(v) for k, v in value.items() if k != "tags"}
        if isinstance(value, list):
            return [shape(value[0])] if value else []
        return type(value).__name__

    assert shape(made["bounce"]) == shape(documented["bounce"])
    assert set(made["mail"]) >= set(documented["mail"])


def test_logs_name_the_outcome(mail_env: MailEnv, capsys: pytest.CaptureFixture[str]) -> None:
    message = mail_env.message(recipients=("bob@example.org",))
    mail_env.worker().handle({"Records": [sqs_record(message.to_event())]})
    capsys.readouterr()
    body = _event(mail_env, "Bounce", message.message_id, 0, "bob@example.org")
    recorder(mail_env).handle({"Records": [sqs_record(body, "rec-1")]}, None)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    [recorded] = [line for line in lines if line["message"] == "SES event recorded"]
    assert recorded["level"] == logging.getLevelName(logging.WARNING)
    assert (recorded["outcome"], recorded["recipient_id"], recorded["sqs_message_id"]) == (
        "bounced",
        "u_bob",
        "rec-1",
    )


def test_a_send_ses_did_not_make_is_suppressed_not_complained_and_odd_digits_fail_alone(
    mail_env: MailEnv,
) -> None:
    message = mail_env.message(recipients=("bob@example.org",))
    assert mail_env.worker().handle({"Records": [sqs_record(message.to_event())]})["batchItemFailures"] == []
    # SES accepted it but sent nothing: the address is on the account's suppression list (the
    # Complaint type's complaintSubType, SES API Reference v2 "Complaint").
    document = json.loads(_event(mail_env, "Complaint", message.message_id, 0, "bob@example.org"))
    document["complaint"]["complaintSubType"] = "OnAccountSuppressionList"
    hostile = json.loads(_event(mail_env, "Delivery", message.message_id, 0, "bob@example.org"))
    hostile["mail"]["tags"]["recipient"] = ["²"]  # a digit to str.isdigit, not to int()
    odd = sqs_record(json.dumps(hostile))
    result = recorder(mail_env).handle({"Records": [sqs_record(json.dumps(document)), odd]})
    assert result == {"batchItemFailures": [{"itemIdentifier": odd["messageId"]}]}
    bob = outcome(mail_env, message.message_id, "u_bob")
    assert (bob["outcome"], bob["outcome_rank"]) == ("suppressed", "4")


def test_a_summary_read_before_the_last_delivery_never_writes_over_sent(mail_env: MailEnv) -> None:
    message = mail_env.message(recipients=("bob@example.org",))
    store = mail_env.store()
    store.save(message)
    mail_env.dynamodb.put_item(
        TableName=mail_env.resources.table_name,
        Item={**delivery_key(message.message_id, "u_bob"), "send_state": {"S": "pending"}},
    )
    # The worker finished meanwhile and marked the message sent; the stale summary must not undo it.
    store.mark_message_sent(message.message_id)
    assert store.sum_up(message.message_id, 1) == SENT
    assert (store.get_message_item(message.message_id) or {})["send_state"]["S"] == SENT
