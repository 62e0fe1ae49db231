"""The mail API: an HTTP API whose routes, behind Clerk's JWT authorizer, proxy to one Lambda function,
with throttling and JSON access logs on its single stage; and the Clerk webhook route, without the
authorizer (Clerk sends no session token), proxying to the directory function, which verifies the
Svix signature of every delivery itself."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_aws as aws

from components.config.model import AuthConfig, MailConfig
from components.facts import MAILER
from components.mailing.cors import AUTHORIZER_HEADER, mail_api_cors

# Where Clerk's webhook endpoint points: the mailer states it (app_code/mailer/mailer/__init__.py).
WEBHOOK_PATH: str = MAILER.webhook_path
WEBHOOK_METHOD: str = MAILER.webhook_method


def mail_http_api(
    parent: pulumi.Resource,
    name: str,
    prefix: str,
    *,
    cors_origins: Sequence[str],
    auth: AuthConfig,
    mail: MailConfig,
    log_retention_days: int,
    function: aws.lambda_.Function,
    webhook_function: aws.lambda_.Function,
    log_kms_key_arn: pulumi.Input[str] | None = None,
) -> pulumi.Output[str]:
    """The API's base URL; resources are named `<name>-api*`, `<name>-jwt` and `<name>-route-*`."""
    child = pulumi.ResourceOptions(parent=parent)
    cors = mail_api_cors(cors_origins)
    api = aws.apigatewayv2.Api(
        f"{name}-api",
        name=f"{prefix}-api",
        protocol_type="HTTP",
        cors_configuration=aws.apigatewayv2.ApiCorsConfigurationArgs(
            allow_origins=list(cors.allow_origins),
            allow_methods=list(cors.allow_methods),
            allow_headers=list(cors.allow_headers),
            max_age=cors.max_age,
        ),
        opts=child,
    )
    authorizer = aws.apigatewayv2.Authorizer(
        f"{name}-jwt",
        api_id=api.id,
        authorizer_type="JWT",
        name="clerk",
        identity_sources=[f"$request.header.{AUTHORIZER_HEADER}"],
        jwt_configuration=aws.apigatewayv2.AuthorizerJwtConfigurationArgs(
            issuer=auth.issuer, audiences=[auth.audience]
        ),
        opts=child,
    )
    integration = aws.apigatewayv2.Integration(
        f"{name}-api-integration",
        api_id=api.id,
        integration_type="AWS_PROXY",
        integration_uri=function.invoke_arn,
        payload_format_version="2.0",
        opts=child,
    )
    # Exactly the routes the handler serves (app_code/mailer/mailer/__init__.py, API_ROUTES).
    for route_key in MAILER.api_routes:
        method = route_key.split(" ", 1)[0]
        aws.apigatewayv2.Route(
            f"{name}-route-{method.lower()}",
            api_id=api.id,
            route_key=route_key,
            authorization_type="JWT",
            authorizer_id=authorizer.id,
            target=pulumi.Output.concat("integrations/", integration.id),
            opts=child,
        )
    webhook_integration = aws.apigatewayv2.Integration(
        f"{name}-webhook-integration",
        api_id=api.id,
        integration_type="AWS_PROXY",
        integration_uri=webhook_function.invoke_arn,
        payload_format_version="2.0",
        opts=child,
    )
    aws.apigatewayv2.Route(
        f"{name}-route-clerk-webhook",
        api_id=api.id,
        route_key=f"{WEBHOOK_METHOD} {WEBHOOK_PATH}",
        # Deliberately no authorizer: the signature (mailer.webhook) authenticates the request.
        authorization_type="NONE",
        target=pulumi.Output.concat("integrations/", webhook_integration.id),
        opts=child,
    )
    access_logs = aws.cloudwatch.LogGroup(
        f"{name}-api-access-logs",
        name=f"/motion/{prefix}-api/access",
        retention_in_days=log_retention_days,
        kms_key_id=log_kms_key_arn,
        opts=child,
    )
    stage = aws.apigatewayv2.Stage(
        f"{name}-api-stage",
        api_id=api.id,
        name="$default",
        auto_deploy=True,
        default_route_settings=aws.apigatewayv2.StageDefaultRouteSettingsArgs(
            throttling_rate_limit=mail.api_throttle_rate,
            throttling_burst_limit=mail.api_throttle_burst,
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
        function=function.name,
        principal="apigateway.amazonaws.com",
        source_arn=pulumi.Output.concat(api.execution_arn, "/*/*", MAILER.messages_path),
        opts=child,
    )
    aws.lambda_.Permission(
        f"{name}-webhook-invoke",
        action="lambda:InvokeFunction",
        function=webhook_function.name,
        principal="apigateway.amazonaws.com",
        source_arn=pulumi.Output.concat(api.execution_arn, f"/*/{WEBHOOK_METHOD}{WEBHOOK_PATH}"),
        opts=child,
    )
    # Clients call `<url>/mail/messages`; the URL is only usable once the stage exists.
    return pulumi.Output.all(api.api_endpoint, stage.id).apply(lambda values: str(values[0]))
