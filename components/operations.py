"""What operators look at: one CloudWatch dashboard per stack (every component's panel: its graphs,
drawn from the same facts as its alarms, and the status of every alarm; components/aws/dashboard.py),
and CloudWatch Logs Insights saved queries for the first questions on call, over every service's
log group.

- `errors-per-service`: error lines per log group. The services log JSON with a `level` field (the
  mailer's handlers, the files service, Lambda's own JSON log format); anything else (a crash's
  traceback, a library writing text) is caught by the word ERROR or CRITICAL in the line.
- `one-request`: every line that names one request id, in time order, across services: the files
  service's `request_id` (the ALB's trace root, answered in X-Request-Id), the Lambdas'
  `aws_request_id`, or the id anywhere in a line. Replace REQUEST_ID before running it.

A saved query keeps no time range: the console's picker sets it (one hour for "in the last hour").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_aws as aws

from components.aws.dashboard import Panel, dashboard_body

ERRORS_PER_SERVICE: Final = """fields @timestamp, @log, level, message, @message
| filter level in ["ERROR", "CRITICAL"] or @message like /\\b(ERROR|CRITICAL)\\b/
| stats count(*) as errors by @log
| sort errors desc"""

ONE_REQUEST: Final = """fields @timestamp, @log, level, message, request_id, aws_request_id
| filter request_id = "REQUEST_ID" or aws_request_id = "REQUEST_ID" or @message like "REQUEST_ID"
| sort @timestamp asc"""


@dataclass(frozen=True)
class OperationsArgs:
    name_prefix: str
    # Every service's log group (ECS services and Lambda functions).
    log_group_names: Sequence[pulumi.Input[str]]
    region: str
    # Every component's part of the dashboard, in the order shown.
    panels: Sequence[Panel]


class Operations(pulumi.ComponentResource):
    def __init__(self, name: str, args: OperationsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("motion:operations:Operations", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # The console shows "<prefix>/..." as a folder per stack.
        self.queries = [
            aws.cloudwatch.QueryDefinition(
                f"{name}-{query}",
                name=f"{args.name_prefix}/{query}",
                log_group_names=list(args.log_group_names),
                query_string=text,
                opts=child,
            )
            for query, text in (("errors-per-service", ERRORS_PER_SERVICE), ("one-request", ONE_REQUEST))
        ]
        # Dashboards are global to the account ("All dashboards in your account are global, not
        # region-specific": CloudWatch API Reference, PutDashboard), so the name carries the stack's prefix.
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=args.name_prefix,
            dashboard_body=dashboard_body(args.name_prefix, args.region, args.panels),
            opts=child,
        )
        self.register_outputs(
            {"queries": [q.name for q in self.queries], "dashboard": self.dashboard.dashboard_name}
        )
