"""SES's sending events under mocks: the configuration set's event destination and suppression, the
topic -> queue -> function path with its policies, the events role's least privilege (derived from the
handler's code), the key policy that lets SES and SNS use the component's key, and the alarms.

What the provider accepts is ported from its documentation, since the mocks accept anything:
hashicorp/terraform-provider-aws website/docs/r/sesv2_configuration_set_event_destination.html.markdown
(`matching_event_types`, "Valid values: SEND, REJECT, BOUNCE, COMPLAINT, DELIVERY, OPEN, CLICK,
RENDERING_FAILURE, DELIVERY_DELAY, SUBSCRIPTION"; the same list in pulumi_aws/sesv2/_inputs.py,
ConfigurationSetEventDestinationEventDestinationArgs) and pulumi_aws/sesv2/_inputs.py,
ConfigurationSetSuppressionOptionsArgs (`suppressed_reasons`, "Valid values: BOUNCE, COMPLAINT")."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

from components.app_code import MAILER_ROOT
from components.mailing import ses_events
from devstack import mail_resources
from stacktools.mocked_program import ACCOUNT
from tests.infra.harness import StackRun, arn, run_with

PROVIDER_EVENT_TYPES = frozenset(
    {
        "SEND",
        "REJECT",
        "BOUNCE",
        "COMPLAINT",
        "DELIVERY",
        "OPEN",
        "CLICK",
        "RENDERING_FAILURE",
        "DELIVERY_DELAY",
        "SUBSCRIPTION",
    }
)
PROVIDER_SUPPRESSED_REASONS = frozenset({"BOUNCE", "COMPLAINT"})

QUEUE = "aws:sqs/queue:Queue"
FUNCTION = "aws:lambda/function:Function"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"


def prefix(stack: StackRun) -> str:
    return f"motion-{stack.stack}-mail"


def config_set_arn(stack: StackRun) -> str:
    return f"arn:aws:ses:{stack.config.region}:{ACCOUNT}:configuration-set/{prefix(stack)}"


def topic(stack: StackRun) -> Any:
    return stack.one("aws:sns/topic:Topic", "ses-events-topic")


def test_the_configuration_set_publishes_what_the_handler_reads_to_the_topic(stack: StackRun) -> None:
    destination = stack.one("aws:sesv2/configurationSetEventDestination:ConfigurationSetEventDestination")
    inputs = destination.inputs
    assert inputs["configurationSetName"] == prefix(stack)
    event = inputs["eventDestination"]
    assert event["enabled"] is True  # the provider's default is false: nothing would be published
    types = event["matchingEventTypes"]
    assert set(types) <= PROVIDER_EVENT_TYPES and len(types) == len(set(types))
    # Exactly the types the handler's ladder records (SES's eventType names, upper-cased with
    # underscores: DeliveryDelay -> DELIVERY_DELAY, "Rendering Failure" -> RENDERING_FAILURE) ...
    from mailer.ses_events import IGNORED, LADDER

    def upper(event_type: str) -> str:
        return re.sub(r"(?<=[a-z])(?=[A-Z])|\s+", "_", event_type).upper()

    assert set(types) == {upper(t) for t in LADDER}
    assert not set(types) & {upper(t) for t in IGNORED}
    # ... and what the local backend publishes.
    assert tuple(types) == mail_resources.SES_EVENT_TYPES
    assert event["snsDestination"] == {"topicArn": arn(stack, topic(stack))}
    topic_policy = stack.one("aws:sns/topicPolicy:TopicPolicy", "ses-events")
    assert topic_policy.urn in destination.dependencies
    assert (
        arn(stack, topic(stack)) == f"arn:aws:sns:{stack.config.region}:{ACCOUNT}:{prefix(stack)}-ses-events"
    )
    # Hard bounces and complaints go to the account's suppression list, as locally.
    config_set = stack.one("aws:sesv2/configurationSet:ConfigurationSet").inputs
    reasons = config_set["suppressionOptions"]["suppressedReasons"]
    assert set(reasons) <= PROVIDER_SUPPRESSED_REASONS
    assert tuple(reasons) == mail_resources.SUPPRESSED_REASONS == ("BOUNCE", "COMPLAINT")
    # The reputation metrics the alarms read stay on.
    assert config_set["reputationOptions"]["reputationMetricsEnabled"] is True


def test_the_topic_delivers_raw_to_the_events_queue_which_redrives_to_its_own_dead_letters(
    stack: StackRun,
) -> None:
    queue = stack.one(QUEUE, "ses-events-queue")
    dlq = stack.one(QUEUE, "ses-events-dlq")
    assert queue.inputs["name"] == f"{prefix(stack)}-ses-events"
    assert dlq.inputs["name"] == f"{prefix(stack)}-ses-events-dead-letters"
    subscription = stack.one("aws:sns/topicSubscription:TopicSubscription", "ses-events").inputs
    assert subscription["protocol"] == "sqs"
    assert subscription["topic"] == arn(stack, topic(stack))
    assert subscription["endpoint"] == arn(stack, queue)
    # The body is then SES's document itself, as the handler (and the local subscription) has it.
    assert subscription["rawMessageDelivery"] is True
    redrive = json.loads(queue.inputs["redrivePolicy"])
    assert redrive == {
        "deadLetterTargetArn": arn(stack, dlq),
        "maxReceiveCount": stack.config.mail.max_receive_count,
    }
    assert dlq.inputs["messageRetentionSeconds"] == 14 * 24 * 3600
    events = stack.one(FUNCTION, "mailing-mail-events").inputs
    assert queue.inputs["visibilityTimeoutSeconds"] == 6 * events["timeout"]
    allow = json.loads(
        stack.one("aws:sqs/redriveAllowPolicy:RedriveAllowPolicy", "ses-events").inputs["redriveAllowPolicy"]
    )
    assert allow == {"redrivePermission": "byQueue", "sourceQueueArns": [arn(stack, queue)]}
    # Encrypted as the mail queue is: the component's key, else SSE-SQS.
    mail_queue = stack.one(QUEUE, "mailing-queue").inputs
    for q in (queue.inputs, dlq.inputs):
        for setting in ("kmsMasterKeyId", "sqsManagedSseEnabled"):
            assert q.get(setting) == mail_queue.get(setting), setting


def test_only_ses_for_this_configuration_set_publishes_and_only_the_topic_sends(stack: StackRun) -> None:
    (publish,) = json.loads(stack.one("aws:sns/topicPolicy:TopicPolicy", "ses-events").inputs["policy"])[
        "Statement"
    ]
    topic_arn = arn(stack, topic(stack))
    assert stack.one("aws:sns/topicPolicy:TopicPolicy", "ses-events").inputs["arn"] == topic_arn
    assert publish["Effect"] == "Allow"
    assert publish["Principal"] == {"Service": "ses.amazonaws.com"}
    assert publish["Action"] == "sns:Publish" and publish["Resource"] == topic_arn
    assert publish["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT, "aws:SourceArn": config_set_arn(stack)}
    }
    queue = stack.one(QUEUE, "ses-events-queue")
    policy = stack.one("aws:sqs/queuePolicy:QueuePolicy", "ses-events").inputs
    assert (
        policy["queueUrl"]
        == f"https://sqs.{stack.config.region}.amazonaws.com/{ACCOUNT}/{queue.inputs['name']}"
    )
    (send,) = json.loads(policy["policy"])["Statement"]
    assert send["Principal"] == {"Service": "sns.amazonaws.com"}
    assert send["Action"] == "sqs:SendMessage" and send["Resource"] == arn(stack, queue)
    assert send["Condition"] == {"ArnEquals": {"aws:SourceArn": topic_arn}}
    # SNS checks the queue's policy when the subscription is confirmed: the policy comes first.
    subscription = stack.one("aws:sns/topicSubscription:TopicSubscription", "ses-events")
    policy_urn = stack.one("aws:sqs/queuePolicy:QueuePolicy", "ses-events").urn
    assert policy_urn in subscription.dependencies


def test_the_mapping_reports_partial_failures(stack: StackRun) -> None:
    esm = stack.one("aws:lambda/eventSourceMapping:EventSourceMapping", "ses-events").inputs
    assert esm["functionResponseTypes"] == ["ReportBatchItemFailures"]
    assert esm["eventSourceArn"] == arn(stack, stack.one(QUEUE, "ses-events-queue"))
    assert esm["functionName"] == arn(stack, stack.one(FUNCTION, "mailing-mail-events"))
    assert esm["batchSize"] == ses_events.BATCH_SIZE <= 10  # above 10 needs a batching window
    # The handler returns what the mapping reads then.
    assert "batchItemFailures" in (MAILER_ROOT / "mailer" / "ses_events.py").read_text()


def test_the_events_function_gets_its_table_and_log_level_only(stack: StackRun) -> None:
    function = stack.one(FUNCTION, "mailing-mail-events").inputs
    assert function["handler"] == "mailer.ses_events.handler"
    assert function["name"] == f"motion-{stack.stack}-mail-events"
    assert function["environment"]["variables"] == {
        "MESSAGES_TABLE": f"{prefix(stack)}-messages",
        "LOG_LEVEL": "INFO",
    }
    # Same archive and SDK layer as the mailer.
    mailer = stack.one(FUNCTION, "mailing-mailer").inputs
    assert function["layers"] == mailer["layers"]
    assert sorted(function["code"].assets) == sorted(mailer["code"].assets)


# --- the handler's DynamoDB calls, read from its code ----------------------------------------------


def _methods(path: Path, cls: str) -> dict[str, ast.FunctionDef]:
    tree = ast.parse(path.read_text())
    (node,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls]
    return {f.name: f for f in node.body if isinstance(f, ast.FunctionDef)}


def _calls_on(function: ast.AST, owner: str) -> set[str]:
    """Names of methods called as `self.<owner>.<name>(...)` (owner "" for `self.<name>(...)`)."""
    found = set()
    for node in ast.walk(function):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        target = node.func.value
        if owner and isinstance(target, ast.Attribute) and target.attr == owner:
            if isinstance(target.value, ast.Name) and target.value.id == "self":
                found.add(node.func.attr)
        elif not owner and isinstance(target, ast.Name) and target.id == "self":
            found.add(node.func.attr)
    return found


def dynamodb_actions_of_the_handler() -> set[str]:
    """The DynamoDB actions the events handler's store calls make: every `self._store.<m>()` of
    EventRecorder, followed through MessageStore's own methods to its `self._db.<operation>()` calls."""
    recorder = _methods(MAILER_ROOT / "mailer" / "ses_events.py", "EventRecorder")
    store = _methods(MAILER_ROOT / "mailer" / "store.py", "MessageStore")
    pending = set().union(*(_calls_on(f, "_store") for f in recorder.values()))
    assert pending, "the recorder calls no store method"
    seen: set[str] = set()
    operations: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        operations |= _calls_on(store[name], "_db")
        pending |= _calls_on(store[name], "") & set(store)
    return {"dynamodb:" + "".join(p.capitalize() for p in op.split("_")) for op in operations}


def test_the_derivation_reads_the_store_calls() -> None:
    actions = dynamodb_actions_of_the_handler()
    # stored_message -> get_message_item -> get_item; sum_up -> query and _set_message_state.
    assert actions == {"dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Query"}, actions


def test_the_events_role_holds_exactly_what_the_handler_uses(stack: StackRun) -> None:
    policy = stack.one("aws:iam/rolePolicy:RolePolicy", "mailing-mail-events-policy").json("policy")
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    table = arn(stack, stack.one("aws:dynamodb/table:Table", "mailing-messages"))
    queue = arn(stack, stack.one(QUEUE, "ses-events-queue"))
    assert by_sid["RecordOutcomes"]["Resource"] == [table]
    assert set(by_sid["RecordOutcomes"]["Action"]) == dynamodb_actions_of_the_handler()
    assert set(ses_events.MESSAGES_ACTIONS) == dynamodb_actions_of_the_handler()
    # What Lambda's SQS poller calls with the function's role; it never sends or changes visibility.
    assert by_sid["ConsumeSesEvents"]["Resource"] == [queue]
    assert set(by_sid["ConsumeSesEvents"]["Action"]) == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
    }
    assert by_sid["WriteLogs"]["Resource"] == [
        f"arn:aws:logs:{stack.config.region}:{ACCOUNT}:log-group:/aws/lambda/motion-{stack.stack}-mail-events:*"
    ]
    expected = {"WriteLogs", "ConsumeSesEvents", "RecordOutcomes"}
    if stack.config.data_kms_encryption:
        key = arn(stack, stack.one("aws:kms/key:Key", "mailing-key"))
        region = stack.config.region
        for sid, via, actions in (
            ("DataKeySqs", "sqs", ["kms:Decrypt"]),
            ("DataKeyDynamodb", "dynamodb", ["kms:Decrypt", "kms:DescribeKey"]),
        ):
            assert by_sid[sid]["Resource"] == [key] and by_sid[sid]["Action"] == actions
            assert by_sid[sid]["Condition"] == {
                "StringEquals": {"kms:ViaService": f"{via}.{region}.amazonaws.com"}
            }
        expected |= {"DataKeySqs", "DataKeyDynamodb"}
    assert set(by_sid) == expected
    # Nobody else reads the events queue.
    readers = [
        p.name
        for p in stack.of_type("aws:iam/rolePolicy:RolePolicy")
        if any(queue in s["Resource"] for s in p.json("policy")["Statement"])
    ]
    assert readers == ["mailing-mail-events-policy"]


def test_the_key_lets_ses_and_sns_use_it_for_these_events_only(dev: StackRun, production: StackRun) -> None:
    # Dev: AWS's keys; SES cannot use the AWS managed SNS key, so the topic stays unencrypted.
    assert "kmsMasterKeyId" not in topic(dev).inputs
    key = production.one("aws:kms/key:Key", "mailing-key")
    assert topic(production).inputs["kmsMasterKeyId"] == arn(production, key)
    by_sid = {s["Sid"]: s for s in key.json("policy")["Statement"]}
    ses, sns = by_sid["SesPublishesEvents"], by_sid["SnsDeliversEvents"]
    for stmt, principal, source in (
        (ses, "ses.amazonaws.com", config_set_arn(production)),
        (sns, "sns.amazonaws.com", arn(production, topic(production))),
    ):
        assert stmt["Effect"] == "Allow" and stmt["Principal"] == {"Service": principal}
        # SES Developer Guide, "Setting up an Amazon SNS event destination"; SNS Developer Guide,
        # "Encryption at rest": these two actions, nothing that reads the key's data otherwise.
        assert sorted(stmt["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]
        assert stmt["Resource"] == "*"
        assert stmt["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT, "aws:SourceArn": source}}
    # Only the mailing key admits them.
    for other in production.of_type("aws:kms/key:Key"):
        if other.name != "mailing-key":
            principals = [s["Principal"] for s in other.json("policy")["Statement"]]
            assert {"Service": "ses.amazonaws.com"} not in principals, other.name
            assert {"Service": "sns.amazonaws.com"} not in principals, other.name


def test_an_unknown_service_principal_is_refused() -> None:
    from components.aws.kms import SERVICE_PRINCIPAL_ACTIONS

    assert set(SERVICE_PRINCIPAL_ACTIONS) == {"ses.amazonaws.com", "sns.amazonaws.com"}
    with pytest.raises(ValueError, match="no documented key policy statement"):
        run_with_unknown_principal()


def run_with_unknown_principal() -> None:
    import pulumi

    from components.aws.kms import DataKey, DataKeyArgs, ServicePrincipalUse

    class _Parent:
        pass

    DataKey(
        DataKeyArgs(
            name="x",
            alias="x",
            description="x",
            services=(),
            protected=False,
            service_principals=(
                ServicePrincipalUse("S", "s3.amazonaws.com", pulumi.Output.from_input("arn")),
            ),
        ),
        _Parent(),  # type: ignore[arg-type]  # refused before anything is created under it
    )


# --- alarms ----------------------------------------------------------------------------------------


def alarms(stack: StackRun) -> dict[str, dict[str, Any]]:
    return {a.name: a.inputs for a in stack.of_type(ALARM)}


def test_dead_events_and_errors_are_alarmed_at_once(stack: StackRun) -> None:
    found = alarms(stack)
    dlq = found["mailing-ses-events-dead-letters"]
    assert (dlq["namespace"], dlq["metricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert dlq["dimensions"] == {"QueueName": f"{prefix(stack)}-ses-events-dead-letters"}
    assert dlq["threshold"] == 0 and dlq["comparisonOperator"] == "GreaterThanThreshold"
    errors = found["mailing-ses-events-errors"]
    assert errors["dimensions"] == {"FunctionName": f"motion-{stack.stack}-mail-events"}
    assert errors["threshold"] == 0


def test_reputation_is_alarmed_below_where_ses_reviews_the_account(stack: StackRun) -> None:
    found = alarms(stack)
    mail = stack.config.mail
    for name, metric, threshold, review in (
        ("mailing-ses-bounce-rate", "Reputation.BounceRate", mail.bounce_rate_alarm_basis_points, 0.05),
        (
            "mailing-ses-complaint-rate",
            "Reputation.ComplaintRate",
            mail.complaint_rate_alarm_basis_points,
            0.001,
        ),
    ):
        alarm = found[name]
        assert (alarm["namespace"], alarm["metricName"]) == ("AWS/SES", metric)
        assert alarm["dimensions"] == {}  # the account's rate, which SES reviews
        # SES publishes a fraction between 0 and 1; the key holds basis points.
        assert alarm["threshold"] == pytest.approx(threshold / 10_000)
        assert 0 < alarm["threshold"] < review
        assert alarm["comparisonOperator"] == "GreaterThanOrEqualToThreshold"
        # SES publishes the rate only now and then (none before a first bounce): an hour without a
        # point keeps the last state, rather than flapping a high rate back to OK.
        assert alarm["treatMissingData"] == "ignore"
        assert alarm["period"] == 3600
        assert alarm["alarmActions"] == alarm["okActions"] and alarm["alarmActions"]
    # The defaults: half of SES's review levels.
    assert (mail.bounce_rate_alarm, mail.complaint_rate_alarm) == (0.025, 0.0005)


def test_the_thresholds_follow_the_config() -> None:
    run = run_with("dev", mailBounceRateAlarmBasisPoints=100, mailComplaintRateAlarmBasisPoints=3)
    found = alarms(run)
    assert found["mailing-ses-bounce-rate"]["threshold"] == pytest.approx(0.01)
    assert found["mailing-ses-complaint-rate"]["threshold"] == pytest.approx(0.0003)


def test_the_stack_outputs_the_events_queue(stack: StackRun) -> None:
    assert stack.outputs["sesEventsQueueUrl"].endswith(f"/{ACCOUNT}/{prefix(stack)}-ses-events")
