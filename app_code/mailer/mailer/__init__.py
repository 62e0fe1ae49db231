"""Motion's mailing service: the mail API (HTTP API Lambda) and the mailer (SQS Lambda).

Both Lambdas ship from one archive of `app_code/mailer`; `mailer.api.handler` and
`mailer.worker.handler` are their entry points. Only the standard library and boto3 (provided by
the Lambda runtime) are used, and boto3 is imported on first use so a cold import stays small.
"""
