"""Mailing: mail API (HTTP API + JWT authorizer -> Lambda) -> SQS -> mailer Lambda -> SES, every message
stored in DynamoDB, dead letters alarmed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from components.alarms import Alarm, create_alarms
from components.config import MAIL_MAX_RECIPIENTS, AuthConfig, MailConfig
from components.dynamo import table_args
from components.iam import assume_role_policy, policy_document, statement
from components.lambda_archive import MAILER_ROOT, mailer_files

RUNTIME = "python3.13"
MAILER_SCHEMA = "mailer/mailer/schema.py"
DLQ_RETENTION_SECONDS = 14 * 24 * 3600


@dataclass(frozen=True)
class MailingArgs:
    name_prefix: str
    mail: MailConfig
    auth: AuthConfig
    cors_origins: Sequence[str]
    data_protection: bool
    log_retention_days: int
    alarm_topic_arn: pulumi.Input[str]
    code_root: Path = MAILER_ROOT


def lambda_code(root: Path) -> pulumi.AssetArchive:
    """The archive from an explicit, sorted file list, so previews only change when the code does."""
    return pulumi.AssetArchive({p.as_posix(): pulumi.FileAsset(str(root / p)) for p in mailer_files(root)})


class Mailing(pulumi.ComponentResource):
    def __init__(self, name: str, args: MailingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("motion:mailing:Mailing", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        mail, prefix = args.mail, f"{args.name_prefix}-mail"
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOptions(parent=self)).account_id

        self.dead_letters = aws.sqs.Queue(
            f"{name}-dlq",
            name=f"{prefix}-dead-letters",
            sqs_managed_sse_enabled=True,
            message_retention_seconds=DLQ_RETENTION_SECONDS,
            opts=child,
        )
        self.queue = aws.sqs.Queue(
            f"{name}-queue",
            name=f"{prefix}-events",
            sqs_managed_sse_enabled=True,
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
        self.table = aws.dynamodb.Table(
            f"{name}-messages",
            **table_args(f"{prefix}-messages", MAILER_SCHEMA, args.data_protection),
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
        identity_arn = pulumi.Output.concat(
            "arn:aws:ses:",
            aws.get_region_output(opts=pulumi.InvokeOptions(parent=self)).region,
            ":",
            account,
            ":identity/",
            mail.sender_domain,
        )
        config_set_arn = pulumi.Output.concat(
            "arn:aws:ses:",
            aws.get_region_output(opts=pulumi.InvokeOptions(parent=self)).region,
            ":",
            account,
            ":configuration-set/",
            self.configuration_set.configuration_set_name,
        )

        code = lambda_code(args.code_root)
        sender = mail.sender_address
        self.mailer = self._function(
            name,
            "mailer",
            "mailer.worker.handler",
            code,
            args,
            mail.mailer_timeout_seconds,
            {
                "MESSAGES_TABLE": self.table.name,
                "SENDER_ADDRESS": sender,
                "SES_CONFIGURATION_SET": self.configuration_set.configuration_set_name,
                "LOG_LEVEL": "INFO",
            },
            [
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
            ],
        )
        self.api_function = self._function(
            name,
            "mail-api",
            "mailer.api.handler",
            code,
            args,
            10,
            {
                "MESSAGES_TABLE": self.table.name,
                "MAIL_QUEUE_URL": self.queue.url,
                "MAX_RECIPIENTS": str(MAIL_MAX_RECIPIENTS),
                "LOG_LEVEL": "INFO",
            },
            [
                statement(["sqs:SendMessage"], [self.queue.arn], sid="PublishMailEvents"),
                statement(["dynamodb:Query"], [self.table.arn], sid="ListMessages"),
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
        self.api_url = self._http_api(name, prefix, args)
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
                "table_name": self.table.name,
                "api_url": self.api_url,
                "dkim_records": self.dkim_records,
            }
        )

    def _function(
        self,
        name: str,
        function: str,
        handler: str,
        code: pulumi.AssetArchive,
        args: MailingArgs,
        timeout: int,
        environment: dict[str, pulumi.Input[str]],
        statements: list[dict[str, object]],
    ) -> aws.lambda_.Function:
        child = pulumi.ResourceOptions(parent=self)
        full_name = f"{args.name_prefix}-{function}"
        # Created before the function, so Lambda never creates an unmanaged group without retention.
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-{function}-logs",
            name=f"/aws/lambda/{full_name}",
            retention_in_days=args.log_retention_days,
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-{function}-role",
            assume_role_policy=assume_role_policy("lambda.amazonaws.com"),
            opts=child,
        )
        logs = statement(
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [pulumi.Output.concat(log_group.arn, ":*")],
            sid="WriteLogs",
        )
        policy = aws.iam.RolePolicy(
            f"{name}-{function}-policy", role=role.id, policy=policy_document(logs, *statements), opts=child
        )
        return aws.lambda_.Function(
            f"{name}-{function}",
            name=full_name,
            runtime=RUNTIME,
            architectures=["arm64"],
            handler=handler,
            code=code,
            role=role.arn,
            timeout=timeout,
            memory_size=256,
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=environment),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="JSON", log_group=log_group.name),
            tracing_config=aws.lambda_.FunctionTracingConfigArgs(mode="PassThrough"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[log_group, policy]),
        )

    def _http_api(self, name: str, prefix: str, args: MailingArgs) -> pulumi.Output[str]:
        child = pulumi.ResourceOptions(parent=self)
        api = aws.apigatewayv2.Api(
            f"{name}-api",
            name=f"{prefix}-api",
            protocol_type="HTTP",
            cors_configuration=aws.apigatewayv2.ApiCorsConfigurationArgs(
                allow_origins=list(args.cors_origins),
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["authorization", "content-type"],
                max_age=600,
            ),
            opts=child,
        )
        authorizer = aws.apigatewayv2.Authorizer(
            f"{name}-jwt",
            api_id=api.id,
            authorizer_type="JWT",
            name="clerk",
            identity_sources=["$request.header.Authorization"],
            jwt_configuration=aws.apigatewayv2.AuthorizerJwtConfigurationArgs(
                issuer=args.auth.issuer, audiences=[args.auth.audience]
            ),
            opts=child,
        )
        integration = aws.apigatewayv2.Integration(
            f"{name}-api-integration",
            api_id=api.id,
            integration_type="AWS_PROXY",
            integration_uri=self.api_function.invoke_arn,
            payload_format_version="2.0",
            opts=child,
        )
        for method in ("GET", "POST"):
            aws.apigatewayv2.Route(
                f"{name}-route-{method.lower()}",
                api_id=api.id,
                route_key=f"{method} /mail/messages",
                authorization_type="JWT",
                authorizer_id=authorizer.id,
                target=pulumi.Output.concat("integrations/", integration.id),
                opts=child,
            )
        access_logs = aws.cloudwatch.LogGroup(
            f"{name}-api-access-logs",
            name=f"/motion/{prefix}-api/access",
            retention_in_days=args.log_retention_days,
            opts=child,
        )
        stage = aws.apigatewayv2.Stage(
            f"{name}-api-stage",
            api_id=api.id,
            name="$default",
            auto_deploy=True,
            default_route_settings=aws.apigatewayv2.StageDefaultRouteSettingsArgs(
                throttling_rate_limit=args.mail.api_throttle_rate,
                throttling_burst_limit=args.mail.api_throttle_burst,
            ),
            access_log_settings=aws.apigatewayv2.StageAccessLogSettingsArgs(
                destination_arn=access_logs.arn,
                format=pulumi.Output.json_dumps(
                    {
                        "requestId": "$context.requestId",
                        "ip": "$context.identity.sourceIp",
                        "sub": "$context.authorizer.claims.sub",
                        "route": "$context.routeKey",
                        "status": "$context.status",
                        "latencyMs": "$context.responseLatency",
                        "authError": "$context.authorizer.error",
                    }
                ),
            ),
            opts=child,
        )
        aws.lambda_.Permission(
            f"{name}-api-invoke",
            action="lambda:InvokeFunction",
            function=self.api_function.name,
            principal="apigateway.amazonaws.com",
            source_arn=pulumi.Output.concat(api.execution_arn, "/*/*/mail/messages"),
            opts=child,
        )
        # Clients call `<url>/mail/messages`; the URL is only usable once the stage exists.
        return pulumi.Output.all(api.api_endpoint, stage.id).apply(lambda values: str(values[0]))

    def _alarms(self, name: str, prefix: str, args: MailingArgs) -> None:
        create_alarms(
            self,
            name,
            prefix,
            [
                # Any dead letter is a message nobody received: page on the first one.
                Alarm(
                    "dead-letters",
                    "AWS/SQS",
                    "ApproximateNumberOfMessagesVisible",
                    "Maximum",
                    0.0,
                    {"QueueName": self.dead_letters.name},
                ),
                Alarm(
                    "oldest-message",
                    "AWS/SQS",
                    "ApproximateAgeOfOldestMessage",
                    "Maximum",
                    600.0,
                    {"QueueName": self.queue.name},
                ),
                Alarm(
                    "mailer-errors", "AWS/Lambda", "Errors", "Sum", 0.0, {"FunctionName": self.mailer.name}
                ),
                Alarm(
                    "api-errors", "AWS/Lambda", "Errors", "Sum", 0.0, {"FunctionName": self.api_function.name}
                ),
            ],
            args.alarm_topic_arn,
        )
