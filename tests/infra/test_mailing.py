"""Mailing under mocks: queue/DLQ wiring, event source mapping, least-privilege IAM, logs, alarms."""

from __future__ import annotations

import json
import re

import pulumi

from components.app_code import LOCK
from components.aws.lambda_function import RUNTIME
from components.aws.lambda_layer import build_layer
from components.facts import MAILER
from components.mailing.mailing import WEBHOOK_RESERVED_CONCURRENCY
from devstack.apigw import WEBHOOK_ROUTE
from tests.infra.harness import StackRun, arn

QUEUE = "aws:sqs/queue:Queue"
FUNCTION = "aws:lambda/function:Function"


def test_queue_redrives_to_a_dead_letter_queue(stack: StackRun) -> None:
    queue = stack.one(QUEUE, "mailing-queue").inputs
    dlq = stack.one(QUEUE, "mailing-dlq")
    if stack.config.data_kms_encryption:
        # The component's key (SSE-KMS); SSE-SQS otherwise. The two are exclusive.
        key = arn(stack, stack.one("aws:kms/key:Key", "mailing-key"))
        assert queue["kmsMasterKeyId"] == key and dlq.inputs["kmsMasterKeyId"] == key
        assert "sqsManagedSseEnabled" not in queue and "sqsManagedSseEnabled" not in dlq.inputs
    else:
        assert queue["sqsManagedSseEnabled"] is True and dlq.inputs["sqsManagedSseEnabled"] is True
    assert queue["receiveWaitTimeSeconds"] == 20
    redrive = json.loads(queue["redrivePolicy"])
    assert redrive == {
        "deadLetterTargetArn": f"arn:aws:sqs:us-east-1:123456789012:{dlq.inputs['name']}",
        "maxReceiveCount": 5,
    }
    assert dlq.inputs["messageRetentionSeconds"] == 14 * 24 * 3600
    allow = json.loads(
        stack.one("aws:sqs/redriveAllowPolicy:RedriveAllowPolicy", "mailing-dlq").inputs["redriveAllowPolicy"]
    )
    assert allow["redrivePermission"] == "byQueue" and allow["sourceQueueArns"] == [
        f"arn:aws:sqs:us-east-1:123456789012:{queue['name']}"
    ]


def test_visibility_timeout_is_six_times_the_mailer_timeout(stack: StackRun) -> None:
    mailer = stack.one(FUNCTION, "mailing-mailer").inputs
    assert stack.one(QUEUE, "mailing-queue").inputs["visibilityTimeoutSeconds"] >= 6 * mailer["timeout"]
    events = stack.one(FUNCTION, "mailing-mail-events").inputs
    assert stack.one(QUEUE, "ses-events-queue").inputs["visibilityTimeoutSeconds"] >= 6 * events["timeout"]


def mailing_functions(stack: StackRun) -> list:
    return [
        f
        for f in stack.of_type(FUNCTION)
        if (c := stack.component_of(f)) and c.type == "motion:mailing:Mailing"
    ]


def test_functions_are_current_arm64_python_from_one_archive(stack: StackRun) -> None:
    functions = {f.inputs["handler"]: f.inputs for f in mailing_functions(stack)}
    assert set(functions) == {
        "mailer.worker.handler",
        "mailer.api.handler",
        "mailer.webhook.handler",
        "mailer.ses_events.handler",
    }
    for inputs in functions.values():
        assert inputs["runtime"] == RUNTIME == "python3.13"
        assert inputs["architectures"] == ["arm64"]
        assert inputs["loggingConfig"]["logFormat"] == "JSON"


# Lambda API Reference: PublishLayerVersion (LayerName 1-140 characters, this pattern; Description at
# most 256; CompatibleArchitectures at most 2, CompatibleRuntimes at most 15) and CreateFunction
# (Layers: at most 5 layer version ARNs, each matching LAYER_VERSION_ARN).
LAYER_NAME = re.compile(
    r"(arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\d{12}:layer:[a-zA-Z0-9-_]+)|[a-zA-Z0-9-_]+"
)
LAYER_VERSION_ARN = re.compile(r"arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+")


def test_functions_import_the_locked_sdk_from_a_layer_built_for_their_runtime(stack: StackRun) -> None:
    layer = stack.one("aws:lambda/layerVersion:LayerVersion", "sdk-layer")
    inputs = layer.inputs
    assert LAYER_NAME.fullmatch(inputs["layerName"]) and 1 <= len(inputs["layerName"]) <= 140
    assert len(inputs["description"]) <= 256
    code = inputs["code"]
    assert isinstance(code, pulumi.FileArchive) and code.path == str(build_layer(LOCK))
    assert len(mailing_functions(stack)) == 4
    for function in stack.of_type(FUNCTION):  # every Python function of the stack uses the one layer
        (arn,) = function.inputs["layers"]  # one layer (Lambda takes at most 5)
        assert LAYER_VERSION_ARN.fullmatch(arn) and f":layer:{inputs['layerName']}:" in arn
        assert layer.urn in function.dependencies
        # Built for what the function runs: same runtime, same instruction set.
        assert inputs["compatibleRuntimes"] == [function.inputs["runtime"]]
        assert inputs["compatibleArchitectures"] == function.inputs["architectures"]


def test_the_layer_is_one_per_stack_and_kept_its_state_when_it_left_the_mailing_component(
    stack: StackRun,
) -> None:
    layer = stack.one("aws:lambda/layerVersion:LayerVersion")
    component = stack.component_of(layer)
    # A stack-level component of its own: shared by every function, owned by none of their components.
    assert component is not None and component.type == "motion:lambda:SdkLayer"
    assert stack.component_of(component) is None
    # Where it lived before: without this alias the engine would delete it and publish a new version.
    former = f"urn:pulumi:{stack.stack}::motion::motion:mailing:Mailing$aws:lambda/layerVersion:LayerVersion::mailing-sdk"
    assert former in layer.alias_urns and former != layer.urn


def test_event_source_mapping_reports_partial_failures_and_caps_concurrency(stack: StackRun) -> None:
    esm = stack.one("aws:lambda/eventSourceMapping:EventSourceMapping", "mailer-source").inputs
    assert esm["functionResponseTypes"] == ["ReportBatchItemFailures"]
    assert esm["batchSize"] == 10 and esm["maximumBatchingWindowInSeconds"] == 1
    assert esm["scalingConfig"]["maximumConcurrency"] == stack.config.mail.max_concurrency
    assert esm["eventSourceArn"].endswith(":motion-" + stack.stack + "-mail-events")


def test_the_mail_api_has_reserved_concurrency_in_production(dev: StackRun, production: StackRun) -> None:
    def functions(run: StackRun) -> dict[str, dict]:
        return {f.inputs["name"]: f.inputs for f in run.of_type("aws:lambda/function:Function")}

    # Unset in dev: the provider's default (-1) leaves the function on the unreserved pool; an
    # explicit 0 would throttle every call.
    assert all("reservedConcurrentExecutions" not in f for f in functions(dev).values())
    prod = functions(production)
    reserved = production.config.mail.api_reserved_concurrency
    assert 0 < reserved <= 900
    assert prod["motion-production-mail-api"]["reservedConcurrentExecutions"] == reserved
    # The other function reachable from the internet, the directory's webhook, gets a few; the
    # queue-fed mailer is capped by its event source mapping instead.
    assert (
        prod["motion-production-mail-directory"]["reservedConcurrentExecutions"]
        == WEBHOOK_RESERVED_CONCURRENCY
    )
    assert sorted(n for n, f in prod.items() if "reservedConcurrentExecutions" in f) == [
        "motion-production-mail-api",
        "motion-production-mail-directory",
    ]


def test_each_function_has_its_own_least_privilege_role(stack: StackRun) -> None:
    policies = {
        p.name: p.json("policy")
        for p in stack.of_type("aws:iam/rolePolicy:RolePolicy")
        if "mailing" in p.name
    }
    roles = {p.inputs["role"] for p in stack.of_type("aws:iam/rolePolicy:RolePolicy") if "mailing" in p.name}
    assert len(roles) == 4
    actions = {name: {a for s in doc["Statement"] for a in s["Action"]} for name, doc in policies.items()}
    assert actions["mailing-mailer-policy"] >= {"sqs:ReceiveMessage", "sqs:DeleteMessage", "ses:SendEmail"}
    assert "sqs:SendMessage" not in actions["mailing-mailer-policy"]
    # Exactly the calls mailer.store makes: conditional put, batch mailbox writes, state updates, reads.
    assert {a for a in actions["mailing-mailer-policy"] if a.startswith("dynamodb:")} == {
        "dynamodb:PutItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:UpdateItem",
        "dynamodb:GetItem",
    }
    assert actions["mailing-mail-api-policy"] >= {"sqs:SendMessage", "dynamodb:Query"}
    assert not {a for a in actions["mailing-mail-api-policy"] if a.startswith("ses:")}
    # The directory: the API only reads it (BatchGetItem), only the webhook function writes it, and
    # only the webhook function may read the signing secret; nobody else touches either.
    users = f"table/motion-{stack.stack}-mail-users"
    by_resource: dict[str, dict[str, set[str]]] = {}
    for name, doc in policies.items():
        for stmt in doc["Statement"]:
            for resource in stmt["Resource"]:
                by_resource.setdefault(resource, {}).setdefault(name, set()).update(stmt["Action"])
    [users_arn] = [r for r in by_resource if r.endswith(users)]
    assert by_resource[users_arn] == {
        "mailing-mail-api-policy": {"dynamodb:BatchGetItem"},
        "mailing-mail-directory-policy": {"dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:PutItem"},
    }
    # The quota counters: the API's conditional updates, and the markers of keyed charges (put and
    # deleted in transactions), nobody else.
    [quotas_arn] = [r for r in by_resource if r.endswith(f"table/motion-{stack.stack}-mail-quotas")]
    assert by_resource[quotas_arn] == {
        "mailing-mail-api-policy": {"dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:DeleteItem"}
    }
    [secret_arn] = [r for r in by_resource if ":secretsmanager:" in r]
    assert by_resource[secret_arn] == {"mailing-mail-directory-policy": {"secretsmanager:GetSecretValue"}}
    assert stack.one("aws:secretsmanager/secret:Secret", "clerk-webhook").inputs["namePrefix"] == (
        f"motion-{stack.stack}-mail-clerk-webhook-"
    )
    assert not {a for a in actions["mailing-mail-directory-policy"] if a.split(":")[0] in ("sqs", "ses")}
    # The component's own key, in stacks that have one (tests/infra/test_kms.py holds what on it).
    key_arns = {arn(stack, k) for k in stack.of_type("aws:kms/key:Key") if k.name == "mailing-key"}
    assert bool(key_arns) == stack.config.data_kms_encryption
    for doc in policies.values():
        for stmt in doc["Statement"]:
            assert "*" not in stmt["Resource"] and all(":" in a and "*" not in a for a in stmt["Action"])
            for resource in stmt["Resource"]:
                assert (
                    f"motion-{stack.stack}" in resource
                    or "mail." in resource
                    or "/aws/lambda/" in resource
                    or resource == secret_arn
                    or resource in key_arns
                )


def test_log_groups_with_retention_exist_before_functions(stack: StackRun) -> None:
    groups = {g.inputs["name"]: g.inputs for g in stack.of_type("aws:cloudwatch/logGroup:LogGroup")}
    for function in stack.of_type(FUNCTION):
        group = groups[f"/aws/lambda/{function.inputs['name']}"]
        assert group["retentionInDays"] == stack.config.log_retention_days
        assert function.inputs["loggingConfig"]["logGroup"] == group["name"]


def test_messages_table_encrypted_on_demand_and_protected_in_production(
    dev: StackRun, production: StackRun
) -> None:
    for run, protected in ((dev, False), (production, True)):
        for which in ("mailing-messages", "mailing-users", "mailing-quotas"):
            table = run.one("aws:dynamodb/table:Table", which).inputs
            assert table["billingMode"] == "PAY_PER_REQUEST"
            assert table["serverSideEncryption"]["enabled"] is True
            assert table["pointInTimeRecovery"]["enabled"] is protected
            assert table["deletionProtectionEnabled"] is protected
        # Delivery records (replay protection) and quota counters expire by TTL.
        for which in ("mailing-users", "mailing-quotas"):
            assert run.one("aws:dynamodb/table:Table", which).inputs["ttl"] == {
                "attributeName": "expires_at",
                "enabled": True,
            }


def test_ses_identity_with_dkim_and_configuration_set(stack: StackRun) -> None:
    identity = stack.one("aws:sesv2/emailIdentity:EmailIdentity").inputs
    assert identity["emailIdentity"] == stack.config.mail.sender_domain
    assert identity["dkimSigningAttributes"]["nextSigningKeyLength"] == "RSA_2048_BIT"
    assert identity["configurationSetName"] == f"motion-{stack.stack}-mail"
    records = stack.outputs["sesDkimRecords"]
    assert len(records) == 3 and all(r["type"] == "CNAME" and "._domainkey." in r["name"] for r in records)


def test_mail_api_checks_clerk_jwt_throttles_and_logs(stack: StackRun) -> None:
    authorizer = stack.one("aws:apigatewayv2/authorizer:Authorizer").inputs
    assert authorizer["authorizerType"] == "JWT"
    assert authorizer["jwtConfiguration"] == {
        "issuer": stack.config.auth.issuer,
        "audiences": [stack.config.auth.audience],
    }
    routes = {r.inputs["routeKey"]: r.inputs for r in stack.of_type("aws:apigatewayv2/route:Route")}
    assert sorted(routes) == ["GET /mail/messages", "POST /mail/messages", "POST /mail/webhooks/clerk"]
    # Exactly the routes the handler serves, each behind the authorizer; all on the one path the
    # invoke permission below names.
    assert sorted(routes) == sorted([*MAILER.api_routes, MAILER.webhook_route])
    assert all(routes[key]["authorizationType"] == "JWT" for key in MAILER.api_routes)
    assert {key.split(" ", 1)[1] for key in MAILER.api_routes} == {MAILER.messages_path}
    # Clerk cannot present a session token: the webhook route has no authorizer, and goes to the
    # directory function, which verifies the Svix signature (tests/services/mailer/test_mailer_webhook.py).
    webhook = routes["POST /mail/webhooks/clerk"]
    assert webhook["authorizationType"] == "NONE" and "authorizerId" not in webhook
    # The local API Gateway serves without a token exactly the routes the cloud does.
    assert {key for key, route in routes.items() if route["authorizationType"] == "NONE"} == {WEBHOOK_ROUTE}
    integrations = {i.urn: i.inputs for i in stack.of_type("aws:apigatewayv2/integration:Integration")}
    assert len(integrations) == 2
    stage = stack.one("aws:apigatewayv2/stage:Stage").inputs
    assert stage["defaultRouteSettings"]["throttlingRateLimit"] == stack.config.mail.api_throttle_rate
    assert "destinationArn" in stage["accessLogSettings"]
    api = stack.one("aws:apigatewayv2/api:Api").inputs
    assert api["corsConfiguration"]["allowOrigins"] == list(stack.config.frontend.origins)
    permissions = {p.name: p.inputs for p in stack.of_type("aws:lambda/permission:Permission")}
    assert permissions["mailing-api-invoke"]["sourceArn"].endswith("/*/*/mail/messages")
    # The directory function may be invoked by exactly the webhook route.
    assert permissions["mailing-webhook-invoke"]["sourceArn"].endswith("/*/POST/mail/webhooks/clerk")
    assert all(p["principal"] == "apigateway.amazonaws.com" for p in permissions.values())


def test_cors_allows_exactly_the_headers_the_api_and_its_authorizer_read(stack: StackRun) -> None:
    """A browser may send only headers the CORS configuration allows (Fetch standard, CORS-preflight
    fetch). So it must allow what the Lambda reads (the mailer's own list, which
    tests/services/mailer/test_mailer_api.py holds the handler to), the header the JWT authorizer
    takes the token from, and the JSON body's content type, which is not a CORS-safelisted value;
    and nothing else, since a header nobody reads has no business crossing origins."""
    (authorizer,) = stack.of_type("aws:apigatewayv2/authorizer:Authorizer")
    token_headers = {
        source.removeprefix("$request.header.").lower() for source in authorizer.inputs["identitySources"]
    }
    assert token_headers == {"authorization"}
    expected = token_headers | {h.lower() for h in MAILER.request_headers} | {"content-type"}
    # The header docs/service-settings.md documents for POST /mail/messages.
    assert "idempotency-key" in expected
    cors = stack.one("aws:apigatewayv2/api:Api").inputs["corsConfiguration"]
    assert sorted(cors["allowHeaders"]) == sorted(expected)
    assert len(cors["allowHeaders"]) == len(expected)  # listed once each
    assert set(cors["allowMethods"]) >= {route.split()[0] for route in mailer_routes(stack)}


def mailer_routes(stack: StackRun) -> list[str]:
    return [r.inputs["routeKey"] for r in stack.of_type("aws:apigatewayv2/route:Route")]


def test_alarms_on_dead_letters_errors_and_age(stack: StackRun) -> None:
    alarms = {
        a.inputs["metricName"] + "/" + a.name
        for a in stack.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
        if a.name.startswith("mailing")
    }
    assert {
        "ApproximateNumberOfMessagesVisible/mailing-dead-letters",
        "ApproximateAgeOfOldestMessage/mailing-oldest-message",
        "Errors/mailing-mailer-errors",
    } <= alarms
    dlq_alarm = stack.one("aws:cloudwatch/metricAlarm:MetricAlarm", "mailing-dead-letters").inputs
    assert dlq_alarm["threshold"] == 0 and dlq_alarm["comparisonOperator"] == "GreaterThanThreshold"


def test_the_api_is_told_the_stacks_quota_and_volume_and_refusals_are_alarmed(stack: StackRun) -> None:
    api = stack.one(FUNCTION, "mailing-mail-api").inputs["environment"]["variables"]
    assert (api["QUOTA_PER_HOUR"], api["QUOTA_PER_DAY"]) == (
        str(stack.config.mail.quota_per_hour),
        str(stack.config.mail.quota_per_day),
    )
    alarms = {a.name: a.inputs for a in stack.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    for name, metric in (
        ("mailing-send-volume", "EmailsAccepted"),
        ("mailing-quota-refusals", "QuotaRefusals"),
    ):
        alarm = alarms[name]
        assert (alarm["namespace"], alarm["metricName"], alarm["statistic"]) == ("Motion/Mail", metric, "Sum")
        assert alarm["dimensions"] == {"FunctionName": f"motion-{stack.stack}-mail-api"}
