"""The mailing service's AWS resources in the local AWS API: queue + DLQ, messages table, user
directory table, the Clerk webhook signing secret (Secrets Manager), SES identity.

The cloud gets the same resources from the Pulumi component; the table definition is shared
(`mailer.schema.TABLE`), and the queue attributes mirror the component's defaults.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.exceptions

from components.aws.dynamo import TableSchema
from components.mailing.mailing import TABLES

DEFAULT_SENDER = "Motion <no-reply@mail.motion.local>"
DEFAULT_MAX_RECEIVE_COUNT = 5
_ADDRESS_IN_SENDER = re.compile(r"<([^<>\s]+@[^<>\s]+)>\s*$|^([^<>\s]+@[^<>\s]+)$")


@dataclass(frozen=True)
class MailResources:
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str
    table_name: str
    sender_address: str
    ses_identity: str
    max_receive_count: int
    visibility_timeout: int
    configuration_set: str
    users_table: str
    quotas_table: str
    webhook_secret_arn: str
    # The signing secret's value, for the local Clerk stand-in that signs webhooks with it; the
    # functions never get it from here (they read it from Secrets Manager by ARN).
    webhook_secret: str
    # SES's sending events: the topic the configuration set publishes to, and the queue it
    # delivers them to (raw), read by the events handler; failures go to its own dead letters.
    ses_events_topic_arn: str
    ses_events_queue_url: str
    ses_events_dlq_url: str

    def events_env(self) -> dict[str, str]:
        """The SES events function's environment."""
        return {"MESSAGES_TABLE": self.table_name}

    def api_env(self) -> dict[str, str]:
        """The mail API function's environment (the contract in docs/service-settings.md)."""
        return {
            "MESSAGES_TABLE": self.table_name,
            "MAIL_QUEUE_URL": self.queue_url,
            "USERS_TABLE": self.users_table,
            "QUOTAS_TABLE": self.quotas_table,
        }

    def webhook_env(self) -> dict[str, str]:
        """The directory webhook function's environment."""
        return {"USERS_TABLE": self.users_table, "WEBHOOK_SECRET_ARN": self.webhook_secret_arn}

    def worker_env(self) -> dict[str, str]:
        """The mailer function's environment."""
        return {
            "MESSAGES_TABLE": self.table_name,
            "SENDER_ADDRESS": self.sender_address,
            "SES_CONFIGURATION_SET": self.configuration_set,
        }

    def env(self) -> dict[str, str]:
        """Both functions' variables, for one local process that runs the API and the poller."""
        return {**self.api_env(), **self.worker_env(), **self.webhook_env()}


def sender_domain(sender_address: str) -> str:
    match = _ADDRESS_IN_SENDER.search(sender_address.strip())
    if match is None:
        raise ValueError(f"not a sender address: {sender_address!r}")
    return (match.group(1) or match.group(2)).rpartition("@")[2].lower()


def create_mail_resources(
    prefix: str = "motion-mail",
    *,
    max_receive_count: int = DEFAULT_MAX_RECEIVE_COUNT,
    visibility_timeout: int = 180,
    sender_address: str = DEFAULT_SENDER,
    session: Any = None,
) -> MailResources:
    """Create (or find, when they exist) the resources, named after `prefix`.

    The AWS endpoint comes from the session or the environment (AWS_ENDPOINT_URL), so this works
    against any moto server. The whole sender domain is verified, as the cloud's SES identity is.
    """
    session = session or boto3.session.Session()
    sqs = session.client("sqs")
    dynamodb = session.client("dynamodb")
    sesv2 = session.client("sesv2")

    dlq_url = sqs.create_queue(
        QueueName=f"{prefix}-dead-letters",
        Attributes={"MessageRetentionPeriod": str(14 * 24 * 3600)},
    )["QueueUrl"]
    dlq_arn = _queue_arn(sqs, dlq_url)
    queue_url = sqs.create_queue(
        QueueName=f"{prefix}-events",
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "ReceiveMessageWaitTimeSeconds": "20",
            "MessageRetentionPeriod": str(4 * 24 * 3600),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}
            ),
        },
    )["QueueUrl"]

    # The component's tables, by the same names and schemas (components/mailing/mailing.py TABLES).
    for suffix, schema in TABLES.items():
        _create_table(dynamodb, f"{prefix}-{suffix}", schema)
    table, users, quotas = (f"{prefix}-{suffix}" for suffix in ("messages", "users", "quotas"))
    secret_arn, secret = _webhook_secret(session.client("secretsmanager"), f"{prefix}-clerk-webhook")

    domain = sender_domain(sender_address)
    with contextlib.suppress(sesv2.exceptions.AlreadyExistsException):
        sesv2.create_email_identity(EmailIdentity=domain)

    # Named like the cloud's (the stack's mail prefix); the worker sends every e-mail through it.
    try:
        sesv2.create_configuration_set(ConfigurationSetName=prefix)
    except botocore.exceptions.ClientError as err:
        # SES answers AlreadyExistsException; the local API names it ConfigurationSetAlreadyExistsException.
        if "AlreadyExists" not in err.response.get("Error", {}).get("Code", ""):
            raise

    topic, events_url, events_dlq_url = _ses_events_queue(session, prefix, max_receive_count)

    return MailResources(
        ses_events_topic_arn=topic,
        ses_events_queue_url=events_url,
        ses_events_dlq_url=events_dlq_url,
        queue_url=queue_url,
        queue_arn=_queue_arn(sqs, queue_url),
        dlq_url=dlq_url,
        dlq_arn=dlq_arn,
        table_name=table,
        sender_address=sender_address,
        ses_identity=domain,
        max_receive_count=max_receive_count,
        visibility_timeout=visibility_timeout,
        configuration_set=prefix,
        users_table=users,
        quotas_table=quotas,
        webhook_secret_arn=secret_arn,
        webhook_secret=secret,
    )


# What the configuration set publishes, and which addresses SES suppresses for the account, as the
# component configures them (components/mailing/mailing.py).
SES_EVENT_TYPES = ("SEND", "DELIVERY", "BOUNCE", "COMPLAINT", "REJECT", "DELIVERY_DELAY", "RENDERING_FAILURE")
SUPPRESSED_REASONS = ("BOUNCE", "COMPLAINT")


def _ses_events_queue(session: Any, prefix: str, max_receive_count: int) -> tuple[str, str, str]:
    sqs, sns = session.client("sqs"), session.client("sns")
    topic = str(sns.create_topic(Name=f"{prefix}-ses-events")["TopicArn"])
    dlq_url = sqs.create_queue(
        QueueName=f"{prefix}-ses-events-dead-letters",
        Attributes={"MessageRetentionPeriod": str(14 * 24 * 3600)},
    )["QueueUrl"]
    queue_url = sqs.create_queue(
        QueueName=f"{prefix}-ses-events",
        Attributes={
            "VisibilityTimeout": "180",
            "MessageRetentionPeriod": str(4 * 24 * 3600),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": _queue_arn(sqs, dlq_url), "maxReceiveCount": max_receive_count}
            ),
        },
    )["QueueUrl"]
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=_queue_arn(sqs, queue_url),
        # The body is then the event document itself, as the handler reads it.
        Attributes={"RawMessageDelivery": "true"},
    )
    return topic, str(queue_url), str(dlq_url)


def publish_ses_events(resources: MailResources, sesv2: Any) -> None:
    """Have the configuration set publish its sending events to the topic, and suppress addresses
    that bounce hard or complain: calls the SES stand-in (devstack/ses.py) answers, as SES would."""
    name = resources.configuration_set
    sesv2.put_configuration_set_suppression_options(
        ConfigurationSetName=name, SuppressedReasons=list(SUPPRESSED_REASONS)
    )
    sesv2.create_configuration_set_event_destination(
        ConfigurationSetName=name,
        EventDestinationName="mailer",
        EventDestination={
            "Enabled": True,
            "MatchingEventTypes": list(SES_EVENT_TYPES),
            "SnsDestination": {"TopicArn": resources.ses_events_topic_arn},
        },
    )


def _create_table(dynamodb: Any, name: str, schema: TableSchema) -> None:
    """`schema` as `create_table` takes it; its TimeToLiveAttribute, as the API sets it apart."""
    kwargs: dict[str, Any] = {k: v for k, v in schema.items() if k != "TimeToLiveAttribute"}
    with contextlib.suppress(dynamodb.exceptions.ResourceInUseException):
        dynamodb.create_table(TableName=name, **kwargs)
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    if ttl := schema.get("TimeToLiveAttribute"):
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl}
        )


def new_webhook_secret() -> str:
    """A secret in Svix's format: `whsec_` and the base64 of the HMAC key."""
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def _webhook_secret(secrets: Any, name: str) -> tuple[str, str]:
    try:
        created = secrets.create_secret(Name=name, SecretString=new_webhook_secret())
        arn = str(created["ARN"])
    except secrets.exceptions.ResourceExistsException:
        arn = str(secrets.describe_secret(SecretId=name)["ARN"])
    return arn, str(secrets.get_secret_value(SecretId=arn)["SecretString"])


def _queue_arn(sqs: Any, queue_url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
    return str(attributes["QueueArn"])
