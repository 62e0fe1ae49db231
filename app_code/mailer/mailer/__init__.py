"""Motion's mailing service: the mail API (HTTP API Lambda) and the mailer (SQS Lambda).

The Lambdas ship from one archive of `app_code/mailer`; `mailer.api.handler`, `mailer.worker.handler`
and `mailer.webhook.handler` are their entry points. Only the standard library and boto3 (from the SDK
layer built from this package's lock, components/aws/lambda_layer.py) are used, and boto3 is imported on
first use so a cold import stays small. This module is plain data: the program loads it by path.
"""

# The request headers the mail API reads, lower-case as API Gateway's payload format 2.0 hands them
# over. One fact for two readers: `mailer.validation` reads the header by this name, and the program
# (components/mailing/http_api.py, loading this file by path) allows exactly these in the HTTP API's
# CORS configuration, so a browser may send every header the API documents and no other.
# tests/services/mailer/test_mailer_api.py records what the handler reads and holds it to this list.
IDEMPOTENCY_KEY_HEADER = "idempotency-key"
REQUEST_HEADERS: tuple[str, ...] = (IDEMPOTENCY_KEY_HEADER,)

# Where Clerk delivers the directory's webhooks (Clerk dashboard: `<mailApiUrl>` + WEBHOOK_PATH): the
# one route the program deploys without the JWT authorizer (components/mailing/http_api.py), and the
# one the local API Gateway stand-in serves without a token (devstack/apigw.py).
WEBHOOK_METHOD = "POST"
WEBHOOK_PATH = "/mail/webhooks/clerk"
WEBHOOK_ROUTE = f"{WEBHOOK_METHOD} {WEBHOOK_PATH}"

# The mail API's routes, behind the JWT authorizer: the handler serves exactly these (mailer.api), the
# program deploys exactly these with the authorizer (components/mailing/http_api.py), and the local
# API Gateway stand-in (devstack/apigw.py) authorizes and forwards exactly these.
MESSAGES_PATH = "/mail/messages"
SEND_ROUTE = f"POST {MESSAGES_PATH}"
LIST_ROUTE = f"GET {MESSAGES_PATH}"
API_ROUTES: tuple[str, ...] = (SEND_ROUTE, LIST_ROUTE)
