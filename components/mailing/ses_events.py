"""SES's sending events, as the local backend has them (devstack/mail_resources.py): the configuration
set publishes SEND, DELIVERY, BOUNCE, COMPLAINT, REJECT, DELIVERY_DELAY and RENDERING_FAILURE to an SNS
topic (`<prefix>-ses-events`), which delivers them raw to a queue of the same name (its failures to
`<prefix>-ses-events-dead-letters`), read by the events function (`mailer.ses_events.handler`), which
records each recipient's outcome on the messages table.

Only SES of this account, for this configuration set, may publish to the topic; only the topic may
send to the queue. Under the component's key, the key policy lets SES (for the configuration set) and
SNS (for the topic) use it (components/aws/kms.py, SERVICE_PRINCIPAL_ACTIONS)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.aws.arns import Place
from components.aws.iam import policy_document, statement
from components.aws.kms import READ, WRITE, DataKey, ServicePrincipalUse, use_statements
from components.aws.lambda_function import lambda_function

# What the configuration set publishes (devstack/mail_resources.py SES_EVENT_TYPES, the same list):
# every event the handler's ladder knows (mailer/ses_events.py LADDER); no OPEN, CLICK or SUBSCRIPTION.
EVENT_TYPES = ("SEND", "DELIVERY", "BOUNCE", "COMPLAINT", "REJECT", "DELIVERY_DELAY", "RENDERING_FAILURE")
# Addresses SES adds to the account's suppression list for this configuration set.
SUPPRESSED_REASONS = ("BOUNCE", "COMPLAINT")
EVENT_DESTINATION_NAME = "mailer"
# The events function's timeout; the queue's visibility timeout is 6x it (AWS's guidance for Lambda
# sources), as the local poller runs it (devstack/backend.py: 30 s, visibility 180 s).
TIMEOUT_SECONDS = 30
BATCH_SIZE = 10
DLQ_RETENTION_SECONDS = 14 * 24 * 3600
# Exactly what mailer.ses_events calls on the messages table through mailer.store.MessageStore:
# stored_message (GetItem), confirm_sent and record_outcome (UpdateItem), sum_up (Query, then UpdateItem).
MESSAGES_ACTIONS = ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem")
# What a Lambda SQS event source mapping calls with the function's role (Lambda Developer Guide,
# "Using Lambda with Amazon SQS", execution role permissions).
CONSUME_ACTIONS = ("sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage")


def topic_name(prefix: str) -> str:
    return f"{prefix}-ses-events"


def topic_arn(place: Place, prefix: str) -> pulumi.Output[str]:
    """The topic's ARN from its name, known before the topic exists (the key's policy names it)."""
    return place.arn("sns", topic_name(prefix))


def key_uses(place: Place, prefix: str, config_set_arn: pulumi.Input[str]) -> list[ServicePrincipalUse]:
    """What the component's key must let services do for these events: SES encrypts what it publishes
    to the topic, SNS what it delivers to the queue."""
    return [
        ServicePrincipalUse("SesPublishesEvents", "ses.amazonaws.com", config_set_arn),
        ServicePrincipalUse("SnsDeliversEvents", "sns.amazonaws.com", topic_arn(place, prefix)),
    ]


@dataclass(frozen=True)
class SesEventsArgs:
    prefix: str
    name_prefix: str
    account: pulumi.Input[str]
    configuration_set_name: pulumi.Input[str]
    config_set_arn: pulumi.Input[str]
    messages_table_name: pulumi.Input[str]
    messages_table_arn: pulumi.Input[str]
    max_receive_count: int
    code: pulumi.AssetArchive
    layers: Sequence[pulumi.Input[str]]
    log_retention_days: int
    log_kms_key_arn: pulumi.Input[str] | None


class SesEvents:
    """The topic, queues, subscription, event destination and function, created under `parent`."""

    def __init__(self, parent: pulumi.Resource, name: str, args: SesEventsArgs, key: DataKey | None) -> None:
        child = pulumi.ResourceOptions(parent=parent)
        prefix = args.prefix
        key_arn = key.arn if key else None
        queue_encryption = {"kms_master_key_id": key_arn} if key_arn else {"sqs_managed_sse_enabled": True}

        self.topic = aws.sns.Topic(
            f"{name}-ses-events-topic",
            name=topic_name(prefix),
            # Without the component's key the topic is unencrypted at rest: SES cannot publish to a
            # topic under the AWS managed key (alias/aws/sns), whose policy cannot admit it.
            kms_master_key_id=key_arn,
            opts=child,
        )
        topic_policy = aws.sns.TopicPolicy(
            f"{name}-ses-events-topic-policy",
            arn=self.topic.arn,
            policy=policy_document(
                {
                    "Sid": "SesOfThisConfigurationSetPublishes",
                    "Effect": "Allow",
                    "Principal": {"Service": "ses.amazonaws.com"},
                    "Action": "sns:Publish",
                    "Resource": self.topic.arn,
                    "Condition": {
                        "StringEquals": {
                            "aws:SourceAccount": args.account,
                            "aws:SourceArn": args.config_set_arn,
                        }
                    },
                }
            ),
            opts=child,
        )
        self.dead_letters = aws.sqs.Queue(
            f"{name}-ses-events-dlq",
            name=f"{prefix}-ses-events-dead-letters",
            **queue_encryption,
            message_retention_seconds=DLQ_RETENTION_SECONDS,
            opts=child,
        )
        self.queue = aws.sqs.Queue(
            f"{name}-ses-events-queue",
            name=f"{prefix}-ses-events",
            **queue_encryption,
            receive_wait_time_seconds=20,
            visibility_timeout_seconds=6 * TIMEOUT_SECONDS,
            message_retention_seconds=4 * 24 * 3600,
            redrive_policy=pulumi.Output.json_dumps(
                {"deadLetterTargetArn": self.dead_letters.arn, "maxReceiveCount": args.max_receive_count}
            ),
            opts=child,
        )
        aws.sqs.RedriveAllowPolicy(
            f"{name}-ses-events-dlq-redrive-allow",
            queue_url=self.dead_letters.url,
            redrive_allow_policy=pulumi.Output.json_dumps(
                {"redrivePermission": "byQueue", "sourceQueueArns": [self.queue.arn]}
            ),
            opts=child,
        )
        queue_policy = aws.sqs.QueuePolicy(
            f"{name}-ses-events-queue-policy",
            queue_url=self.queue.url,
            policy=policy_document(
                {
                    "Sid": "TheEventsTopicDelivers",
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": self.queue.arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": self.topic.arn}},
                }
            ),
            opts=child,
        )
        aws.sns.TopicSubscription(
            f"{name}-ses-events-subscription",
            topic=self.topic.arn,
            protocol="sqs",
            endpoint=self.queue.arn,
            # The record body is then SES's event document itself, as the handler reads it first.
            raw_message_delivery=True,
            opts=pulumi.ResourceOptions(parent=parent, depends_on=[queue_policy]),
        )
        aws.sesv2.ConfigurationSetEventDestination(
            f"{name}-ses-event-destination",
            configuration_set_name=args.configuration_set_name,
            event_destination_name=EVENT_DESTINATION_NAME,
            event_destination=aws.sesv2.ConfigurationSetEventDestinationEventDestinationArgs(
                enabled=True,
                matching_event_types=list(EVENT_TYPES),
                sns_destination=aws.sesv2.ConfigurationSetEventDestinationEventDestinationSnsDestinationArgs(
                    topic_arn=self.topic.arn
                ),
            ),
            # Published to only once SES may publish: events sent before the topic's policy would be lost.
            opts=pulumi.ResourceOptions(parent=parent, depends_on=[topic_policy]),
        )

        self.function = lambda_function(
            parent,
            name,
            "mail-events",
            "mailer.ses_events.handler",
            args.code,
            layers=args.layers,
            name_prefix=args.name_prefix,
            log_retention_days=args.log_retention_days,
            log_kms_key_arn=args.log_kms_key_arn,
            timeout=TIMEOUT_SECONDS,
            environment={"MESSAGES_TABLE": args.messages_table_name, "LOG_LEVEL": "INFO"},
            statements=[
                statement(list(CONSUME_ACTIONS), [self.queue.arn], sid="ConsumeSesEvents"),
                statement(list(MESSAGES_ACTIONS), [args.messages_table_arn], sid="RecordOutcomes"),
                *use_statements(key, [("sqs", READ), ("dynamodb", WRITE)], "DataKey"),
            ],
        )
        aws.lambda_.EventSourceMapping(
            f"{name}-ses-events-source",
            event_source_arn=self.queue.arn,
            function_name=self.function.arn,
            batch_size=BATCH_SIZE,
            maximum_batching_window_in_seconds=1,
            function_response_types=["ReportBatchItemFailures"],
            opts=child,
        )
