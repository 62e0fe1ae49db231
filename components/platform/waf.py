"""AWS WAF in front of the public load balancer: one REGIONAL web ACL with AWS's managed rule groups and
a rate limit per client IP, its full logs in CloudWatch Logs, and an alarm when it blocks."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.aws.alarms import Alarm, create_alarms
from components.aws.dashboard import Graph, Metric, Panel

# AWS Managed Rules rule groups, evaluated in this order after the IP reputation list and the rate
# limit (AWS WAF Developer Guide, "AWS Managed Rules rule groups list"): the baseline for web
# applications, and request patterns known to be invalid or to exploit vulnerabilities (Log4j among
# them). The web ACL's capacity is 1500 WCU; together these take 25 + 700 + 200 and the rate rule 2.
IP_REPUTATION = "AWSManagedRulesAmazonIpReputationList"
MANAGED_RULE_GROUPS = (IP_REPUTATION, "AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet")
RATE_RULE = "rate-limit-per-ip"
# PutLoggingConfiguration (WAF API Reference): "The name that you give the destination must start with
# aws-waf-logs-".
LOG_GROUP_PREFIX = "aws-waf-logs-"
# Where clients put their Clerk token: the Authorization header, the WebSocket subprotocol offer, or
# the query string (the chat upgrade reads all three, app_code/chat/chat_service/adapters/upgrade.py). The
# logs keep none of them.
REDACTED_HEADERS = ("authorization", "sec-websocket-protocol")


@dataclass(frozen=True)
class WafArgs:
    name_prefix: str
    load_balancer_arn: pulumi.Input[str]
    rate_limit: int
    log_retention_days: int
    # The stack's log key (None: CloudWatch Logs' own encryption), as for every other log group.
    log_kms_key_arn: pulumi.Input[str] | None
    alarm_topic_arn: pulumi.Input[str]


def _visibility(metric: str) -> aws.wafv2.WebAclRuleVisibilityConfigArgs:
    return aws.wafv2.WebAclRuleVisibilityConfigArgs(
        cloudwatch_metrics_enabled=True, metric_name=metric, sampled_requests_enabled=True
    )


def _managed_rule(group: str, priority: int) -> aws.wafv2.WebAclRuleArgs:
    return aws.wafv2.WebAclRuleArgs(
        name=group,
        priority=priority,
        # `none`: the group's own actions (mostly Block) apply; `count` would only count.
        override_action=aws.wafv2.WebAclRuleOverrideActionArgs(
            none=aws.wafv2.WebAclRuleOverrideActionNoneArgs()
        ),
        statement=aws.wafv2.WebAclRuleStatementArgs(
            managed_rule_group_statement=aws.wafv2.WebAclRuleStatementManagedRuleGroupStatementArgs(
                name=group, vendor_name="AWS"
            )
        ),
        visibility_config=_visibility(group),
    )


class Waf(pulumi.ComponentResource):
    def __init__(self, name: str, args: WafArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("motion:platform:Waf", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        acl_name = f"{args.name_prefix}-alb"
        rate_rule = aws.wafv2.WebAclRuleArgs(
            name=RATE_RULE,
            priority=1,
            action=aws.wafv2.WebAclRuleActionArgs(block=aws.wafv2.WebAclRuleActionBlockArgs()),
            statement=aws.wafv2.WebAclRuleStatementArgs(
                # Requests per client IP in the 5-minute window (the default evaluation window).
                rate_based_statement=aws.wafv2.WebAclRuleStatementRateBasedStatementArgs(
                    aggregate_key_type="IP", limit=args.rate_limit, evaluation_window_sec=300
                )
            ),
            visibility_config=_visibility(RATE_RULE),
        )
        rules = [_managed_rule(IP_REPUTATION, 0), rate_rule] + [
            _managed_rule(group, priority) for priority, group in enumerate(MANAGED_RULE_GROUPS[1:], start=2)
        ]
        self.web_acl = aws.wafv2.WebAcl(
            f"{name}-acl",
            name=acl_name,
            description=f"{args.name_prefix} public load balancer",
            scope="REGIONAL",
            default_action=aws.wafv2.WebAclDefaultActionArgs(allow=aws.wafv2.WebAclDefaultActionAllowArgs()),
            rules=rules,
            visibility_config=aws.wafv2.WebAclVisibilityConfigArgs(
                cloudwatch_metrics_enabled=True, metric_name=acl_name, sampled_requests_enabled=True
            ),
            opts=child,
        )
        aws.wafv2.WebAclAssociation(
            f"{name}-alb",
            resource_arn=args.load_balancer_arn,
            web_acl_arn=self.web_acl.arn,
            opts=child,
        )
        # WAF adds the log group's resource policy for log delivery itself when logging is turned on
        # (PutLoggingConfiguration: "For an Amazon CloudWatch Logs log group, WAF creates a resource
        # policy on the log group"), which needs logs:PutResourcePolicy of the deploy role. The log key
        # needs no statement for WAF: the delivery writes through CloudWatch Logs, which encrypts with
        # the group's key itself (components/aws/kms.py, log_key_statement).
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"{LOG_GROUP_PREFIX}{args.name_prefix}",
            retention_in_days=args.log_retention_days,
            kms_key_id=args.log_kms_key_arn,
            opts=child,
        )
        aws.wafv2.WebAclLoggingConfiguration(
            f"{name}-logging",
            resource_arn=self.web_acl.arn,
            log_destination_configs=[self.log_group.arn],
            redacted_fields=[
                *(
                    aws.wafv2.WebAclLoggingConfigurationRedactedFieldArgs(
                        single_header=aws.wafv2.WebAclLoggingConfigurationRedactedFieldSingleHeaderArgs(
                            name=header
                        )
                    )
                    for header in REDACTED_HEADERS
                ),
                aws.wafv2.WebAclLoggingConfigurationRedactedFieldArgs(
                    query_string=aws.wafv2.WebAclLoggingConfigurationRedactedFieldQueryStringArgs()
                ),
            ],
            opts=child,
        )
        # AWS WAF Developer Guide, "AWS WAF metrics and dimensions": for an Application Load Balancer,
        # Region, Rule, WebACL, where WebACL is the web ACL's metric name and Rule "ALL" counts every rule.
        region = aws.get_region_output(opts=pulumi.InvokeOptions(parent=self)).region
        every_rule: dict[str, pulumi.Input[str]] = {"Region": region, "Rule": "ALL", "WebACL": acl_name}
        blocked = Alarm("blocked", "AWS/WAFV2", "BlockedRequests", "Sum", 1000.0, every_rule)
        alarms = create_alarms(self, name, f"{args.name_prefix}-waf", [blocked], args.alarm_topic_arn)
        self.panel = Panel(
            "WAF",
            [
                Graph.watching(
                    "Requests blocked and allowed",
                    [("blocked", blocked)],
                    Metric("AWS/WAFV2", "AllowedRequests", "Sum", every_rule, "allowed"),
                )
            ],
            alarms,
        )
        self.register_outputs({"web_acl_arn": self.web_acl.arn})
