"""Mailing: mail API (HTTP API + JWT authorizer -> Lambda) -> SQS -> mailer Lambda -> SES, every message
stored in DynamoDB, dead letters alarmed. Recipients are resolved in a user directory (DynamoDB) that
a third function keeps from Clerk's webhooks (a route without the authorizer, Svix-signed, the
signing secret in Secrets Manager). SES's sending events come back through an SNS topic and a queue
to a fourth function that records each recipient's outcome (components/mailing/ses_events.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from components.app_code import MAILER_ROOT, mailer_files
from components.aws.alarms import Alarm, create_alarms
from components.aws.arns import Place
from components.aws.dashboard import Graph, Metric, Panel, lambda_graphs
from components.aws.dynamo import TableSchema, table_args
from components.aws.iam import statement
from components.aws.kms import READ, WRITE, DataKey, DataKeyArgs, use_statements
from components.aws.lambda_function import code_archive, lambda_function
from components.config.model import MAIL_MAX_RECIPIENTS, AuthConfig, MailConfig
from components.facts import MAILER
from components.mailing import ses_events
from components.mailing.http_api import mail_http_api

DLQ_RETENTION_SECONDS = 14 * 24 * 3600
# Clerk delivers directory webhooks one event at a time, retrying failures; a handful suffices.
WEBHOOK_RESERVED_CONCURRENCY = 5


# The mailing tables, `<stack>-mail-<suffix>`, each defined by the mailer's schema module; the local
# backend creates the same ones (devstack/mail_resources.py).
TABLES: dict[str, TableSchema] = {
    "messages": MAILER.table,
    "users": MAILER.users_table,
    "quotas": MAILER.quotas_table,
}


@dataclass(frozen=True)
class MailingArgs:
    name_prefix: str
    mail: MailConfig
    auth: AuthConfig
    cors_origins: Sequence[str]
    data_protection: bool
    # A key of the component's own for its tables, queues and secret (else AWS's keys).
    kms_encryption: bool
    log_retention_days: int
    log_kms_key_arn: pulumi.Input[str] | None
    alarm_topic_arn: pulumi.Input[str]
    # The SDK layer both functions import boto3 from (components/mailing/sdk_layer.py).
    sdk_layer_arn: pulumi.Input[str]
    code_root: Path = MAILER_ROOT


def lambda_code(root: Path) -> pulumi.AssetArchive:
    """The mailer archive both functions run."""
    return code_archive(root, mailer_files(root))


class Mailing(pulumi.ComponentResource):
    def __init__(self, name: str, args: MailingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("motion:mailing:Mailing", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        mail, prefix = args.mail, f"{args.name_prefix}-mail"
        place = Place.of(self)
        account = place.account
        # Known from names alone, before the set exists: the key's and the topic's policies name it.
        config_set_arn = place.arn("ses", f"configuration-set/{prefix}")
        key = DataKey.optional(
            args.kms_encryption,
            DataKeyArgs(
                name=name,
                alias=prefix,
                description=f"{prefix}: message store, user directory, quotas, mail queues, webhook secret, SES events",
                services=("dynamodb", "sqs", "secretsmanager"),
                protected=args.data_protection,
                service_principals=ses_events.key_uses(place, prefix, config_set_arn),
            ),
            self,
        )
        self.key = key
        key_arn = key.arn if key else None
        # SSE-SQS unless the component has its own key (the two are exclusive).
        queue_encryption = {"kms_master_key_id": key_arn} if key_arn else {"sqs_managed_sse_enabled": True}

        self.dead_letters = aws.sqs.Queue(
            f"{name}-dlq",
            name=f"{prefix}-dead-letters",
            **queue_encryption,
            message_retention_seconds=DLQ_RETENTION_SECONDS,
            opts=child,
        )
        self.queue = aws.sqs.Queue(
            f"{name}-queue",
            name=f"{prefix}-events",
            **queue_encryption,
            receive_wait_time_seconds=20,
            # AWS's guidance for Lambda sources: at least 6x the function timeout, so a batch still
            # being retried inside the function is never handed to another invocation.
            visibility_timeout_seconds=6 * mail.mailer_timeout_seconds,
            message_retention_seconds=4 * 24 * 3600,
            redrive_policy=pulumi.Output.json_dumps(
                {"deadLetterTargetArn": self.dead_letters.arn, "maxReceiveCount": mail.max_receive_count}
            ),
            opts=child,
        )
        aws.sqs.RedriveAllowPolicy(
            f"{name}-dlq-redrive-allow",
            queue_url=self.dead_letters.url,
            redrive_allow_policy=pulumi.Output.json_dumps(
                {"redrivePermission": "byQueue", "sourceQueueArns": [self.queue.arn]}
            ),
            opts=child,
        )

        def table(suffix: str, schema: TableSchema) -> aws.dynamodb.Table:
            # Named `<prefix>-<suffix>`, defined by `schema` from the mailer's schema module.
            return aws.dynamodb.Table(
                f"{name}-{suffix}",
                **table_args(f"{prefix}-{suffix}", schema, args.data_protection, key_arn),
                opts=child,
            )

        self.table = table("messages", TABLES["messages"])
        self.users = table("users", TABLES["users"])
        # Send quota counters (mailer.quota): a table of their own, so the API's write access to
        # them cannot reach the directory.
        self.quotas = table("quotas", TABLES["quotas"])
        # Clerk's webhook signing secret (`whsec_...`). Its value is Clerk's: an operator puts it here
        # (README, "Clerk webhooks"); the program only creates the secret and lets the webhook read it.
        self.webhook_secret = aws.secretsmanager.Secret(
            f"{name}-clerk-webhook-secret",
            name_prefix=f"{prefix}-clerk-webhook-",
            description="Svix signing secret of the Clerk webhook endpoint that keeps the mail directory",
            recovery_window_in_days=7 if args.data_protection else 0,
            kms_key_id=key_arn,
            opts=child,
        )

        self.configuration_set = aws.sesv2.ConfigurationSet(
            f"{name}-ses-config",
            configuration_set_name=prefix,
            delivery_options=aws.sesv2.ConfigurationSetDeliveryOptionsArgs(tls_policy="REQUIRE"),
            reputation_options=aws.sesv2.ConfigurationSetReputationOptionsArgs(
                reputation_metrics_enabled=True
            ),
            sending_options=aws.sesv2.ConfigurationSetSendingOptionsArgs(sending_enabled=True),
            # SES adds hard-bouncing and complaining addresses to the account's suppression list and
            # reports later sends to them as bounces (mailer/ses_events.py: `suppressed`).
            suppression_options=aws.sesv2.ConfigurationSetSuppressionOptionsArgs(
                suppressed_reasons=list(ses_events.SUPPRESSED_REASONS)
            ),
            opts=child,
        )
        self.identity = aws.sesv2.EmailIdentity(
            f"{name}-domain",
            email_identity=mail.sender_domain,
            configuration_set_name=self.configuration_set.configuration_set_name,
            dkim_signing_attributes=aws.sesv2.EmailIdentityDkimSigningAttributesArgs(
                next_signing_key_length="RSA_2048_BIT"
            ),
            opts=child,
        )
        identity_arn = place.arn("ses", f"identity/{mail.sender_domain}")

        code = lambda_code(args.code_root)
        layers = [args.sdk_layer_arn]
        sender = mail.sender_address
        self.mailer = lambda_function(
            self,
            name,
            "mailer",
            "mailer.worker.handler",
            code,
            layers=layers,
            name_prefix=args.name_prefix,
            log_retention_days=args.log_retention_days,
            log_kms_key_arn=args.log_kms_key_arn,
            timeout=mail.mailer_timeout_seconds,
            environment={
                "MESSAGES_TABLE": self.table.name,
                "SENDER_ADDRESS": sender,
                "SES_CONFIGURATION_SET": self.configuration_set.configuration_set_name,
                "LOG_LEVEL": "INFO",
            },
            statements=[
                statement(
                    [
                        "sqs:ReceiveMessage",
                        "sqs:DeleteMessage",
                        "sqs:GetQueueAttributes",
                        "sqs:ChangeMessageVisibility",
                    ],
                    [self.queue.arn],
                    sid="ConsumeMailEvents",
                ),
                statement(
                    [
                        "dynamodb:PutItem",
                        "dynamodb:BatchWriteItem",
                        "dynamodb:UpdateItem",
                        "dynamodb:GetItem",
                    ],
                    [self.table.arn],
                    sid="StoreMessages",
                ),
                statement(["ses:SendEmail"], [identity_arn, config_set_arn], sid="SendMail"),
                *use_statements(key, [("sqs", READ), ("dynamodb", WRITE)], "DataKey"),
            ],
        )
        self.api_function = lambda_function(
            self,
            name,
            "mail-api",
            "mailer.api.handler",
            code,
            layers=layers,
            name_prefix=args.name_prefix,
            log_retention_days=args.log_retention_days,
            log_kms_key_arn=args.log_kms_key_arn,
            timeout=10,
            environment={
                "MESSAGES_TABLE": self.table.name,
                "MAIL_QUEUE_URL": self.queue.url,
                "USERS_TABLE": self.users.name,
                "QUOTAS_TABLE": self.quotas.name,
                "QUOTA_PER_HOUR": str(mail.quota_per_hour),
                "QUOTA_PER_DAY": str(mail.quota_per_day),
                "MAX_RECIPIENTS": str(MAIL_MAX_RECIPIENTS),
                "LOG_LEVEL": "INFO",
            },
            statements=[
                statement(["sqs:SendMessage"], [self.queue.arn], sid="PublishMailEvents"),
                statement(["dynamodb:Query"], [self.table.arn], sid="ListMessages"),
                # Reads only: the API resolves senders and recipients, it never changes the directory.
                statement(["dynamodb:BatchGetItem"], [self.users.arn], sid="ResolveUsers"),
                # One conditional UpdateItem per charge (and per refund); a keyed request's charge is a
                # transaction that also puts its marker (and a refund deletes it): TransactWriteItems
                # is authorized as each action it holds (DynamoDB Developer Guide, "Using IAM with
                # DynamoDB transactions").
                statement(
                    ["dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:DeleteItem"],
                    [self.quotas.arn],
                    sid="ChargeQuota",
                ),
                *use_statements(key, [("sqs", WRITE), ("dynamodb", WRITE)], "DataKey"),
            ],
            # A flood of API calls neither takes the account's whole concurrency (the mailer's
            # included) nor finds it taken by other functions.
            reserved_concurrency=mail.api_reserved_concurrency,
        )
        self.webhook_function = lambda_function(
            self,
            name,
            "mail-directory",
            "mailer.webhook.handler",
            code,
            layers=layers,
            name_prefix=args.name_prefix,
            log_retention_days=args.log_retention_days,
            log_kms_key_arn=args.log_kms_key_arn,
            timeout=10,
            # Reachable from the internet like the API (only a valid signature gets further): where the
            # API's executions are reserved, a few are reserved for the directory too, which caps what
            # a flood of forged deliveries can take.
            reserved_concurrency=WEBHOOK_RESERVED_CONCURRENCY if mail.api_reserved_concurrency else 0,
            environment={
                "USERS_TABLE": self.users.name,
                "WEBHOOK_SECRET_ARN": self.webhook_secret.arn,
                "LOG_LEVEL": "INFO",
            },
            statements=[
                statement(
                    ["dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:PutItem"],
                    [self.users.arn],
                    sid="KeepDirectory",
                ),
                statement(
                    ["secretsmanager:GetSecretValue"], [self.webhook_secret.arn], sid="ReadSigningSecret"
                ),
                *use_statements(key, [("dynamodb", WRITE), ("secretsmanager", READ)], "DataKey"),
            ],
        )
        aws.lambda_.EventSourceMapping(
            f"{name}-mailer-source",
            event_source_arn=self.queue.arn,
            function_name=self.mailer.arn,
            batch_size=mail.batch_size,
            maximum_batching_window_in_seconds=mail.batching_window_seconds,
            function_response_types=["ReportBatchItemFailures"],
            # Caps concurrent invocations, and with them the SES send rate.
            scaling_config=aws.lambda_.EventSourceMappingScalingConfigArgs(
                maximum_concurrency=mail.max_concurrency
            ),
            opts=child,
        )
        self.ses_events = ses_events.SesEvents(
            self,
            name,
            ses_events.SesEventsArgs(
                prefix=prefix,
                name_prefix=args.name_prefix,
                account=account,
                configuration_set_name=self.configuration_set.configuration_set_name,
                config_set_arn=config_set_arn,
                messages_table_name=self.table.name,
                messages_table_arn=self.table.arn,
                max_receive_count=mail.max_receive_count,
                code=code,
                layers=layers,
                log_retention_days=args.log_retention_days,
                log_kms_key_arn=args.log_kms_key_arn,
            ),
            key,
        )
        self.api_url = mail_http_api(
            self,
            name,
            prefix,
            cors_origins=args.cors_origins,
            auth=args.auth,
            mail=mail,
            log_retention_days=args.log_retention_days,
            log_kms_key_arn=args.log_kms_key_arn,
            function=self.api_function,
            webhook_function=self.webhook_function,
        )
        self._alarms(name, prefix, args)

        self.dkim_records = self.identity.dkim_signing_attributes.apply(
            lambda attrs: [
                {
                    "name": f"{token}._domainkey.{mail.sender_domain}",
                    "type": "CNAME",
                    "value": f"{token}.dkim.amazonses.com",
                }
                for token in ((attrs.tokens if attrs else None) or [])
            ]
        )
        self.register_outputs(
            {
                "queue_url": self.queue.url,
                "dead_letter_queue_url": self.dead_letters.url,
                "ses_events_queue_url": self.ses_events.queue.url,
                "ses_events_dead_letter_queue_url": self.ses_events.dead_letters.url,
                "table_name": self.table.name,
                "users_table_name": self.users.name,
                "quotas_table_name": self.quotas.name,
                "webhook_secret_arn": self.webhook_secret.arn,
                "api_url": self.api_url,
                "dkim_records": self.dkim_records,
            }
        )

    def _alarms(self, name: str, prefix: str, args: MailingArgs) -> None:
        """Its alarms, and its panel of the dashboard built from them."""

        def visible(suffix: str, queue: aws.sqs.Queue) -> Alarm:
            return Alarm(
                suffix,
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                "Maximum",
                0.0,
                {"QueueName": queue.name},
            )

        def errors(suffix: str, function: aws.lambda_.Function) -> Alarm:
            return Alarm(suffix, "AWS/Lambda", "Errors", "Sum", 0.0, {"FunctionName": function.name})

        def own(suffix: str, metric: str, threshold: float, function: aws.lambda_.Function) -> Alarm:
            return Alarm(
                suffix,
                MAILER.metrics.namespace,
                metric,
                "Sum",
                threshold,
                {MAILER.metrics.dimension: function.name},
            )

        # Any dead letter is a message nobody received: page on the first one.
        dead_letters = visible("dead-letters", self.dead_letters)
        oldest = Alarm(
            "oldest-message",
            "AWS/SQS",
            "ApproximateAgeOfOldestMessage",
            "Maximum",
            600.0,
            {"QueueName": self.queue.name},
        )
        mailer_errors = errors("mailer-errors", self.mailer)
        api_errors = errors("api-errors", self.api_function)
        # Send volume across all users: an hour's worth of ten users' quotas in 5 minutes is no normal
        # team's traffic (metrics: mailer/metrics.py, published as EMF).
        volume = own("send-volume", "EmailsAccepted", float(10 * args.mail.quota_per_hour), self.api_function)
        # Any delivery whose SES outcome is unknown needs an operator (mailer/store.py): the alarm
        # names it at once, not when its record reaches the dead letters.
        unknown = own("deliveries-unknown", "DeliveriesUnknown", 0.0, self.mailer)
        # Many quota refusals in 5 minutes: someone is hammering the API.
        refusals = own("quota-refusals", "QuotaRefusals", 20.0, self.api_function)
        # SES's events: any dead letter is an outcome nobody recorded.
        events_dead_letters = visible("ses-events-dead-letters", self.ses_events.dead_letters)
        events_errors = errors("ses-events-errors", self.ses_events.function)
        # An event naming nothing we know, or another address than the recipient's: dropped (no
        # retry helps), so alarmed on the first one (mailer/ses_events.py).
        events_dropped = own("ses-events-dropped", "EventsDropped", 0.0, self.ses_events.function)
        # The account's reputation as SES computes it (fractions, no dimensions: account level), alarmed
        # below where SES reviews the account (components/config/keys.py). A rate over SES's rolling
        # sample of sends, published only now and then (none before a first bounce): judged per hour,
        # and an hour without a point keeps the last state instead of calling it OK, so a high rate
        # does not flap between ALARM and OK.
        bounce_rate, complaint_rate = (
            Alarm(
                suffix,
                "AWS/SES",
                metric,
                "Maximum",
                threshold,
                comparison="GreaterThanOrEqualToThreshold",
                period_seconds=3600,
                missing_data="ignore",
            )
            for suffix, metric, threshold in (
                ("ses-bounce-rate", "Reputation.BounceRate", args.mail.bounce_rate_alarm),
                ("ses-complaint-rate", "Reputation.ComplaintRate", args.mail.complaint_rate_alarm),
            )
        )
        directory_errors = errors("directory-errors", self.webhook_function)
        specs = [
            dead_letters,
            oldest,
            mailer_errors,
            api_errors,
            volume,
            unknown,
            refusals,
            events_dead_letters,
            events_errors,
            events_dropped,
            bounce_rate,
            complaint_rate,
            directory_errors,
        ]
        alarms = create_alarms(self, name, prefix, specs, args.alarm_topic_arn)

        def depth(label: str, queue: aws.sqs.Queue) -> Metric:
            return Metric(
                "AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum", {"QueueName": queue.name}, label
            )

        def age(label: str, queue: aws.sqs.Queue) -> Metric:
            return Metric(
                "AWS/SQS", "ApproximateAgeOfOldestMessage", "Maximum", {"QueueName": queue.name}, label
            )

        metrics = MAILER.metrics
        by_function = {
            "EmailsAccepted": self.api_function,
            "QuotaRefusals": self.api_function,
            "EmailsSent": self.mailer,
            "DeliveriesUnknown": self.mailer,
            "EmailsDelivered": self.ses_events.function,
            "EmailsBounced": self.ses_events.function,
            "EmailsComplained": self.ses_events.function,
            "SendsConfirmed": self.ses_events.function,
            "EventsDropped": self.ses_events.function,
        }
        if set(by_function) != set(metrics.names):
            raise ValueError(
                f"mailer/metrics.py declares {metrics.names}; the dashboard places {sorted(by_function)}"
            )

        def published(metric: str) -> Metric:
            return Metric(
                metrics.namespace, metric, "Sum", {metrics.dimension: by_function[metric].name}, metric
            )

        self.panel = Panel(
            "Mail",
            [
                Graph.watching(
                    "Mail queue depth", [("dead letters", dead_letters)], depth("queued", self.queue)
                ),
                Graph.watching(
                    "Mail queue: oldest message (s)",
                    [("oldest", oldest)],
                    age("dead letters", self.dead_letters),
                ),
                Graph.watching(
                    "SES events queue",
                    [("events dead letters", events_dead_letters)],
                    depth("events", self.ses_events.queue),
                    age("oldest event (s)", self.ses_events.queue),
                ),
                Graph.watching(
                    "E-mails accepted, sent, delivered",
                    [("accepted", volume)],
                    *(published(m) for m in ("EmailsSent", "EmailsDelivered")),
                ),
                Graph.watching(
                    "Refused, unknown, bounced, complained",
                    [("quota refusals", refusals), ("unknown", unknown), ("events dropped", events_dropped)],
                    *(published(m) for m in ("EmailsBounced", "EmailsComplained", "SendsConfirmed")),
                ),
                Graph.watching(
                    "SES reputation (fraction)",
                    [("bounce rate", bounce_rate), ("complaint rate", complaint_rate)],
                ),
                Graph.watching(
                    "Lambda errors",
                    [
                        ("mailer", mailer_errors),
                        ("mail API", api_errors),
                        ("SES events", events_errors),
                        ("directory", directory_errors),
                    ],
                ),
                *lambda_graphs(
                    [
                        ("mailer", self.mailer.name),
                        ("mail API", self.api_function.name),
                        ("SES events", self.ses_events.function.name),
                        ("directory", self.webhook_function.name),
                    ]
                )[1:],
            ],
            alarms,
        )
