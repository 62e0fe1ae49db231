"""Custom metrics as CloudWatch Embedded Metric Format (EMF) fields of the JSON log line.

CloudWatch Logs extracts the metrics from the `_aws` member of a log event
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html),
so publishing costs no API call and no IAM permission. Named `FunctionName` for the API's metrics and
the mailer's alike; each alarm names its function. The functions use Lambda's JSON log format,
which formats what the runtime's own logging handler writes; these lines are written to stdout by
our handler (mailer.logs), one JSON document per line, which Lambda passes through as the log event,
and "CloudWatch Logs extracts metrics from any log events that follow the embedded metric format
specification" (CloudWatch User Guide, "Using the embedded metric format with Lambda"). A line nested
under the runtime's `message` field would not be one; tests/services/mailer check the shape. Namespace `Motion/Mail`, one dimension set,
`{FunctionName}` (the function's name, which the Lambda runtime sets in AWS_LAMBDA_FUNCTION_NAME);
the alarms in components/mailing/mailing.py watch these, and tests/infra/test_alarm_dimensions.py lists them:

| metric | unit | published by | meaning |
|---|---|---|---|
| `EmailsAccepted` | Count | mail API | e-mails (one per recipient) of each accepted message |
| `QuotaRefusals` | Count | mail API | requests answered 429 because the sender's quota was used up |
| `EmailsSent` | Count | mailer | e-mails SES accepted for sending (its answer recorded), one per recipient |
| `DeliveriesUnknown` | Count | mailer | deliveries whose SES outcome became unknown (the handler stopped between calling SES and recording its answer, or the call ended without one): each needs an operator (`mailer.store`), unless SES's events confirm it (`SendsConfirmed`) |
| `EmailsDelivered` | Count | SES events | e-mails the recipient's mail server accepted (recorded outcomes: one whose complaint was recorded first is not counted) |
| `EmailsBounced` | Count | SES events | e-mails that bounced (hard or soft), or that SES did not send because the address is suppressed |
| `EmailsComplained` | Count | SES events | e-mails the recipient marked as spam |
| `SendsConfirmed` | Count | SES events | deliveries the mailer could not record as sent that SES's events proved sent |
| `EventsDropped` | Count | SES events | events dropped because they name no message or recipient we know, or another address than the recipient's (no retry can change that; each is logged with its record) |
"""

from __future__ import annotations

import os
import time
from typing import Any

NAMESPACE = "Motion/Mail"
DIMENSION = "FunctionName"
EMAILS_ACCEPTED = "EmailsAccepted"
QUOTA_REFUSALS = "QuotaRefusals"
EMAILS_SENT = "EmailsSent"
DELIVERIES_UNKNOWN = "DeliveriesUnknown"
EMAILS_DELIVERED = "EmailsDelivered"
EMAILS_BOUNCED = "EmailsBounced"
EMAILS_COMPLAINED = "EmailsComplained"
SENDS_CONFIRMED = "SendsConfirmed"
EVENTS_DROPPED = "EventsDropped"
ALL = (
    EMAILS_ACCEPTED,
    QUOTA_REFUSALS,
    EMAILS_SENT,
    DELIVERIES_UNKNOWN,
    EMAILS_DELIVERED,
    EMAILS_BOUNCED,
    EMAILS_COMPLAINED,
    SENDS_CONFIRMED,
    EVENTS_DROPPED,
)


def emf(values: dict[str, int]) -> dict[str, Any]:
    """Log fields that make CloudWatch record `values` (metric name -> count) for this function."""
    function = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")
    return {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [[DIMENSION]],
                    "Metrics": [{"Name": name, "Unit": "Count"} for name in values],
                }
            ],
        },
        DIMENSION: function,
        **values,
    }
