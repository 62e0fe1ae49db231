"""AWS WAF under mocks: a REGIONAL web ACL on the public load balancer in production, with AWS's managed
rule groups and a rate limit per IP, full logs to an `aws-waf-logs-` group, and an alarm on blocks."""

from __future__ import annotations

from components.config.keys import WAF_RATE_LIMIT_RANGE
from stacktools.mocked_program import computed_outputs
from tests.infra.harness import StackRun

ACL = "aws:wafv2/webAcl:WebAcl"
WAF_TYPES = (
    ACL,
    "aws:wafv2/webAclAssociation:WebAclAssociation",
    "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration",
)


def arn(run: StackRun, type_: str, name: str) -> str:
    resource = next(r for r in run.of_type(type_) if r.name == name)
    return computed_outputs(resource.type, resource.name, resource.inputs, run.config.region)["arn"]


def test_dev_runs_without_waf_and_production_with_it(dev: StackRun, production: StackRun) -> None:
    assert not dev.config.waf and not [r for t in WAF_TYPES for r in dev.of_type(t)]
    assert production.config.waf and all(len(production.of_type(t)) == 1 for t in WAF_TYPES)


def test_the_web_acl_guards_the_public_load_balancer(production: StackRun) -> None:
    acl = production.one(ACL)
    assert acl.inputs["scope"] == "REGIONAL"  # an ALB takes a regional web ACL, never CLOUDFRONT
    assert acl.inputs["defaultAction"] == {"allow": {}}
    association = production.one("aws:wafv2/webAclAssociation:WebAclAssociation").inputs
    assert association["webAclArn"] == arn(production, ACL, acl.name)
    assert association["resourceArn"] == arn(production, "aws:lb/loadBalancer:LoadBalancer", "platform-alb")


def test_managed_rule_groups_block_and_the_rate_rule_counts_per_ip(production: StackRun) -> None:
    acl = production.one(ACL).inputs
    rules = {r["name"]: r for r in acl["rules"]}
    managed = {
        "AWSManagedRulesCommonRuleSet",
        "AWSManagedRulesKnownBadInputsRuleSet",
        "AWSManagedRulesAmazonIpReputationList",
    }
    assert set(rules) == managed | {"rate-limit-per-ip"}
    assert len({r["priority"] for r in rules.values()}) == len(rules), "priorities must be unique"
    for group in managed:
        rule = rules[group]
        statement = rule["statement"]["managedRuleGroupStatement"]
        assert (statement["vendorName"], statement["name"]) == ("AWS", group)
        # A rule group's rule takes an override action, never an action (CreateWebACL rejects that).
        assert rule["overrideAction"] == {"none": {}} and "action" not in rule
    rate = rules["rate-limit-per-ip"]
    statement = rate["statement"]["rateBasedStatement"]
    assert statement["aggregateKeyType"] == "IP" and statement["limit"] == production.config.waf_rate_limit
    low, high = WAF_RATE_LIMIT_RANGE
    assert low <= statement["limit"] <= high
    # Rate-based rule high-level settings: "Valid settings are 60, 120, 300, and 600".
    assert statement["evaluationWindowSec"] in (60, 120, 300, 600)
    assert rate["action"] == {"block": {}} and "overrideAction" not in rate
    for visibility in [acl["visibilityConfig"], *(r["visibilityConfig"] for r in rules.values())]:
        assert visibility["cloudwatchMetricsEnabled"] is True and visibility["sampledRequestsEnabled"] is True
        # VisibilityConfig MetricName: A-Z, a-z, 0-9, - and _, 1 to 128 characters, not All or Default_Action.
        name = visibility["metricName"]
        assert 1 <= len(name) <= 128 and name.replace("-", "").replace("_", "").isalnum()
        assert name not in ("All", "Default_Action")


def test_logs_go_to_an_aws_waf_logs_group_without_tokens(production: StackRun) -> None:
    logging = production.one("aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration").inputs
    acl = production.one(ACL)
    assert logging["resourceArn"] == arn(production, ACL, acl.name)
    group = next(g for g in production.of_type("aws:cloudwatch/logGroup:LogGroup") if g.name == "waf-logs")
    # PutLoggingConfiguration: the destination's name "must start with aws-waf-logs-".
    assert group.inputs["name"].startswith("aws-waf-logs-")
    assert group.inputs["retentionInDays"] == production.config.log_retention_days
    assert logging["logDestinationConfigs"] == [arn(production, group.type, group.name)]
    redacted = logging["redactedFields"]
    assert {"singleHeader": {"name": "authorization"}} in redacted
    assert {"singleHeader": {"name": "sec-websocket-protocol"}} in redacted
    assert {"queryString": {}} in redacted


def test_an_alarm_fires_on_blocked_requests(production: StackRun) -> None:
    alarm = next(
        a.inputs
        for a in production.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
        if a.name == "waf-blocked"
    )
    acl = production.one(ACL).inputs
    assert (alarm["namespace"], alarm["metricName"]) == ("AWS/WAFV2", "BlockedRequests")
    # The WebACL dimension is the web ACL's metric name, not its name or ARN.
    assert alarm["dimensions"] == {
        "Region": production.config.region,
        "Rule": "ALL",
        "WebACL": acl["visibilityConfig"]["metricName"],
    }
    assert alarm["alarmActions"] and alarm["okActions"]
