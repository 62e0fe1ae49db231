"""Motion's mailing service: the mail API (HTTP API Lambda) and the mailer (SQS Lambda).

Both Lambdas ship from one archive of `app_code/mailer`; `mailer.api.handler` and
`mailer.worker.handler` are their entry points. Only the standard library and boto3 (provided by
the Lambda runtime) are used, and boto3 is imported on first use so a cold import stays small.
"""

# The request headers the mail API reads, lower-case as API Gateway's payload format 2.0 hands them
# over. One fact for two readers: `mailer.validation` reads the header by this name, and the program
# (components/mail_http_api.py, loading this file by path) allows exactly these in the HTTP API's
# CORS configuration, so a browser may send every header the API documents and no other.
# tests/services/mailer/test_mailer_api.py records what the handler reads and holds it to this list.
IDEMPOTENCY_KEY_HEADER = "idempotency-key"
REQUEST_HEADERS: tuple[str, ...] = (IDEMPOTENCY_KEY_HEADER,)
