"""Network: VPC, security groups, flow logs, and the application load balancer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from .model import (
    Context,
    Resource,
    ResourceRule,
    Rule,
    StackRule,
    Violation,
    as_bool,
    as_list,
    get_path,
    is_set,
    is_true,
    is_unknown,
    number,
    of_type,
    parse_json,
    referrers,
    refers_to,
)
from .s3 import BUCKETS, ENCRYPTION

VPC = "aws:ec2/vpc:Vpc"
DEFAULT_SECURITY_GROUP = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
LOAD_BALANCERS = ("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer")
LISTENERS = ("aws:lb/listener:Listener", "aws:alb/listener:Listener")
LISTENER_RULES = ("aws:lb/listenerRule:ListenerRule", "aws:alb/listenerRule:ListenerRule")
WEB_ACL = "aws:wafv2/webAcl:WebAcl"
WEB_ACL_ASSOCIATION = "aws:wafv2/webAclAssociation:WebAclAssociation"
WEB_ACL_LOGGING = "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
METRIC_ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
# What every production web ACL blocks with (AWS WAF Developer Guide, "AWS Managed Rules rule groups
# list": the baseline rule group, known bad inputs, and the Amazon IP reputation list), whose rules
# block unless the rule's override action says count.
REQUIRED_MANAGED_GROUPS = (
    "AWSManagedRulesCommonRuleSet",
    "AWSManagedRulesKnownBadInputsRuleSet",
    "AWSManagedRulesAmazonIpReputationList",
)
# A rate-based rule counts requests per client when it aggregates by IP (the source address) or by
# FORWARDED_IP (a header's address); CONSTANT counts everyone together and CUSTOM_KEYS may not name a
# client at all (WAF API Reference, RateBasedStatement.AggregateKeyType).
PER_CLIENT_KEYS = frozenset({"IP", "FORWARDED_IP"})
# PutLoggingConfiguration (WAF API Reference): a logging destination's name "must start with
# aws-waf-logs-"; for a log group, that is its name.
WAF_LOG_PREFIX = "aws-waf-logs-"

WORLD_CIDRS = frozenset({"0.0.0.0/0", "::/0"})
# The only ports the internet may reach, and only on the load balancer's security group.
PUBLIC_PORTS = frozenset({80, 443})
FLOW_LOG_TRAFFIC = frozenset({"ALL", "REJECT"})
# ELB.17's recommended policies: TLS 1.2 as the floor with forward-secret AEAD ciphers only, or TLS 1.3
# only; with their FIPS and post-quantum variants. The "Ext" policies re-admit CBC ciphers.
MODERN_TLS_POLICIES = frozenset(
    {
        "ELBSecurityPolicy-TLS13-1-2-2021-06",
        "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
        "ELBSecurityPolicy-TLS13-1-3-2021-06",
        "ELBSecurityPolicy-TLS13-1-2-FIPS-2023-04",
        "ELBSecurityPolicy-TLS13-1-2-Res-FIPS-2023-04",
        "ELBSecurityPolicy-TLS13-1-3-FIPS-2023-04",
        "ELBSecurityPolicy-TLS13-1-2-PQ-2025-09",
        "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09",
        "ELBSecurityPolicy-TLS13-1-3-PQ-2025-09",
    }
)


def _is_application(lb: Resource) -> bool:
    return lb.get("loadBalancerType") in (None, "application")


def _application_lbs(resources: Sequence[Resource]) -> list[Resource]:
    return [lb for lb in of_type(resources, *LOAD_BALANCERS) if _is_application(lb)]


# --- security groups ------------------------------------------------------------------------------


def _default_sg_closed(resources: Sequence[Resource], ctx: Context) -> list[Violation]:
    found: list[Violation] = []
    for vpc in of_type(resources, VPC):
        if not referrers(vpc, resources, (DEFAULT_SECURITY_GROUP,), "vpcId"):
            found.append(
                Violation(
                    vpc.urn,
                    f"VPC '{vpc.name}' does not manage its default security group, which keeps "
                    "AWS's allow-all rules: adopt it with an empty aws.ec2.DefaultSecurityGroup",
                )
            )
    for group in of_type(resources, DEFAULT_SECURITY_GROUP):
        rules = [k for k in ("ingress", "egress") if is_set(group.get(k))]
        if rules:
            found.append(
                Violation(group.urn, f"default security group '{group.name}' has {' and '.join(rules)} rules")
            )
    return found


class _Opening(NamedTuple):
    """An ingress rule open to the internet."""

    declared: Resource  # the rule resource, or the group for an inline rule
    group: Resource | None  # the security group it opens (None: not one of the stack's)
    protocol: Any
    from_port: Any
    to_port: Any

    def only_public_port(self) -> bool:
        if any(is_unknown(v) for v in (self.protocol, self.from_port, self.to_port)):
            return True
        low, high = number(self.from_port), number(self.to_port)
        tcp = str(self.protocol).lower() in ("tcp", "6")
        return tcp and low is not None and low == high and int(low) in PUBLIC_PORTS


def _world_open(cidrs: list[Any]) -> bool:
    return bool(WORLD_CIDRS & {c for c in cidrs if isinstance(c, str)})


def _openings(resources: Sequence[Resource]) -> list[_Opening]:
    groups = of_type(resources, SECURITY_GROUP)

    def target(rule: Resource) -> Resource | None:
        return next((g for g in groups if refers_to(rule, "securityGroupId", g)), None)

    found: list[_Opening] = []
    for rule in of_type(resources, INGRESS_RULE):
        if _world_open([rule.get("cidrIpv4"), rule.get("cidrIpv6")]):
            found.append(
                _Opening(rule, target(rule), rule.get("ipProtocol"), rule.get("fromPort"), rule.get("toPort"))
            )
    for rule in of_type(resources, SECURITY_GROUP_RULE):
        cidrs = as_list(rule.get("cidrBlocks")) + as_list(rule.get("ipv6CidrBlocks"))
        if rule.get("type") == "ingress" and _world_open(cidrs):
            found.append(
                _Opening(rule, target(rule), rule.get("protocol"), rule.get("fromPort"), rule.get("toPort"))
            )
    for group in groups:
        for entry in as_list(group.get("ingress")):
            cidrs = as_list(get_path(entry, "cidrBlocks")) + as_list(get_path(entry, "ipv6CidrBlocks"))
            if _world_open(cidrs):
                ports = (get_path(entry, "fromPort"), get_path(entry, "toPort"))
                found.append(_Opening(group, group, get_path(entry, "protocol"), *ports))
    return found


def _no_world_ingress(resources: Sequence[Resource], ctx: Context) -> list[Violation]:
    lbs = _application_lbs(resources)
    alb_groups = {
        g.urn
        for g in of_type(resources, SECURITY_GROUP)
        if any(refers_to(lb, "securityGroups", g) for lb in lbs)
    }
    found: list[Violation] = []
    for opening in _openings(resources):
        name = opening.declared.name
        if opening.group is None or opening.group.urn not in alb_groups:
            where = (
                f"security group '{opening.group.name}'"
                if opening.group
                else "a security group no load balancer uses"
            )
            found.append(Violation(opening.declared.urn, f"'{name}' opens {where} to the internet"))
        elif not opening.only_public_port():
            found.append(
                Violation(
                    opening.declared.urn,
                    f"'{name}' opens the load balancer to the internet beyond TCP 80/443 (one port per rule)",
                )
            )
    return found


def _flow_logs(resources: Sequence[Resource], ctx: Context) -> list[Violation]:
    found: list[Violation] = []
    for vpc in of_type(resources, VPC):
        logs = referrers(vpc, resources, (FLOW_LOG,), "vpcId")
        traffic = [log.get("trafficType") for log in logs]
        if not any(is_unknown(t) or t in FLOW_LOG_TRAFFIC for t in traffic):
            found.append(
                Violation(vpc.urn, f"VPC '{vpc.name}' has no flow log capturing ALL (or REJECT) traffic")
            )
    return found


# --- load balancer --------------------------------------------------------------------------------


def _drop_invalid_headers(lb: Resource, ctx: Context) -> list[str]:
    if not _is_application(lb) or is_true(lb.get("dropInvalidHeaderFields")):
        return []
    return ["invalid HTTP headers are forwarded to targets: set dropInvalidHeaderFields true"]


def _lb_deletion_protection(lb: Resource, ctx: Context) -> list[str]:
    if is_true(lb.get("enableDeletionProtection")):
        return []
    return ["production load balancer has no deletion protection: set enableDeletionProtection true"]


def _lb_access_logs(lb: Resource, ctx: Context) -> list[str]:
    if is_true(lb.get("accessLogs", "enabled")) and is_set(lb.get("accessLogs", "bucket")):
        return []
    return ["production load balancer writes no access logs: set accessLogs {bucket, enabled: true}"]


def _tls_policy(listener: Resource, ctx: Context) -> list[str]:
    if listener.get("protocol") != "HTTPS":
        return []
    problems = []
    policy = listener.get("sslPolicy")
    if not (is_unknown(policy) or policy in MODERN_TLS_POLICIES):
        problems.append(
            f"HTTPS listener uses TLS policy {policy!r}; use ELBSecurityPolicy-TLS13-1-2-2021-06 or newer"
        )
    if not is_set(listener.get("certificateArn")):
        problems.append("HTTPS listener has no certificateArn")
    return problems


def _redirects_to_https(actions: Any) -> bool:
    if is_unknown(actions):
        return True
    listed = as_list(actions)
    return bool(listed) and all(
        get_path(a, "type") == "redirect" and _https(get_path(a, "redirect", "protocol")) for a in listed
    )


def _https(protocol: Any) -> bool:
    return is_unknown(protocol) or protocol == "HTTPS"


def _http_redirects(resources: Sequence[Resource], ctx: Context) -> list[Violation]:
    listeners = of_type(resources, *LISTENERS)
    # Plain HTTP may serve traffic only in a stack without a certificate (dev without TLS).
    if not ctx.production and not any(listener.get("protocol") == "HTTPS" for listener in listeners):
        return []
    found: list[Violation] = []
    for listener in listeners:
        if listener.get("protocol") != "HTTP":
            continue
        if not _redirects_to_https(listener.get("defaultActions")):
            found.append(
                Violation(listener.urn, f"HTTP listener '{listener.name}' does not only redirect to HTTPS")
            )
        for rule in referrers(listener, resources, LISTENER_RULES, "listenerArn"):
            if not _redirects_to_https(rule.get("actions")):
                found.append(Violation(rule.urn, f"listener rule '{rule.name}' serves plain HTTP"))
    return found


def _https_required(resources: Sequence[Resource], ctx: Context) -> list[Violation]:
    listeners = of_type(resources, *LISTENERS)
    return [
        Violation(
            lb.urn, f"production load balancer '{lb.name}' has no HTTPS listener (a certificate is required)"
        )
        for lb in _application_lbs(resources)
        if not any(
            listener.get("protocol") == "HTTPS" and refers_to(listener, "loadBalancerArn", lb)
            for listener in listeners
        )
    ]


# --- AWS WAF --------------------------------------------------------------------------------------


def _alb_waf(resources: Sequence[Resource], ctx: Context) -> list[Violation]:
    associations = of_type(resources, WEB_ACL_ASSOCIATION)
    acls = of_type(resources, WEB_ACL)
    found = []
    for lb in _application_lbs(resources):
        if as_bool(lb.get("internal")) is True:
            continue
        guarding = [a for a in associations if refers_to(a, "resourceArn", lb)]
        if not guarding:
            found.append(
                Violation(lb.urn, f"internet-facing load balancer '{lb.name}' has no AWS WAF web ACL")
            )
            continue
        for association in guarding:
            for acl in acls:
                scope = acl.get("scope")
                if refers_to(association, "webAclArn", acl) and not is_unknown(scope) and scope != "REGIONAL":
                    found.append(
                        Violation(
                            acl.urn, f"web ACL '{acl.name}' on a load balancer must have scope REGIONAL"
                        )
                    )
    return found


def _alb_log_bucket_sse_s3(resources: Sequence[Resource], ctx: Context) -> list[Violation]:
    """ELB User Guide for Application Load Balancers, "Enable access logs", bucket requirements: "The
    only server-side encryption option that's supported is Amazon S3-managed keys (SSE-S3)". A bucket
    whose default encryption is SSE-KMS receives no logs, and the load balancer reports nothing."""
    found = []
    for lb in _application_lbs(resources):
        if not is_true(lb.get("accessLogs", "enabled")):
            continue
        name = lb.get("accessLogs", "bucket")
        for bucket in of_type(resources, *BUCKETS):
            by_dependency = bucket.urn in lb.property_dependencies.get("accessLogs", ())
            if not by_dependency and not (isinstance(name, str) and name in bucket.identities):
                continue
            for config in referrers(bucket, resources, ENCRYPTION, "bucket"):
                rules = config.get("rules")
                if is_unknown(rules):
                    continue
                for rule in as_list(rules):
                    algorithm = get_path(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm")
                    if isinstance(algorithm, str) and algorithm != "AES256":
                        found.append(
                            Violation(
                                config.urn,
                                f"bucket '{bucket.name}' receives '{lb.name}' access logs but encrypts with "
                                f"{algorithm}: ALB log delivery supports SSE-S3 (AES256) only",
                            )
                        )
    return found


def _waf_logging(resources: Sequence[Resource], ctx: Context) -> list[Violation]:
    configs = of_type(resources, WEB_ACL_LOGGING)
    groups = of_type(resources, LOG_GROUP)
    found = []
    for acl in of_type(resources, WEB_ACL):
        mine = [c for c in configs if refers_to(c, "resourceArn", acl)]
        if not mine:
            found.append(
                Violation(acl.urn, f"web ACL '{acl.name}' logs nothing: add a WebAclLoggingConfiguration")
            )
        for config in mine:
            for group in groups:
                name = group.get("name")
                wrong = isinstance(name, str) and not name.startswith(WAF_LOG_PREFIX)
                if wrong and refers_to(config, "logDestinationConfigs", group):
                    found.append(
                        Violation(
                            config.urn,
                            f"log group '{name}' cannot receive WAF logs: its name must start with {WAF_LOG_PREFIX}",
                        )
                    )
    return found


def _camel(value: Any) -> Any:
    """A rule_json document (the API's PascalCase) with the engine's camelCase keys."""
    if isinstance(value, dict):
        return {(k[:1].lower() + k[1:] if isinstance(k, str) else k): _camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel(v) for v in value]
    return value


def _acl_rules(acl: Resource) -> list[Any] | None:
    """The web ACL's rules, whether given as `rules` or as `ruleJson`; None while unknown."""
    rules = acl.get("rules")
    if rules is None and acl.get("ruleJson") is not None:
        rules = parse_json(acl.get("ruleJson"))
        rules = rules if is_unknown(rules) else _camel(rules)
    if is_unknown(rules):
        return None
    return as_list(rules)


def _blocking_groups(rules: list[Any]) -> set[str] | None:
    """The AWS managed rule groups that block (override action `none`); None when one is unknown."""
    found: set[str] = set()
    for rule in rules:
        group = get_path(rule, "statement", "managedRuleGroupStatement")
        if group is None:
            continue
        if is_unknown(group):
            return None
        if group.get("vendorName") != "AWS":
            continue
        override = get_path(rule, "overrideAction")
        if is_unknown(override):
            return None
        # `count` only counts what the group's rules would block.
        if isinstance(override, dict) and override.get("count") is not None:
            continue
        found.add(str(group.get("name")))
    return found


def _blocks_per_client(rule: Any) -> bool | None:
    statement = get_path(rule, "statement", "rateBasedStatement")
    if statement is None:
        return False
    if is_unknown(statement) or is_unknown(get_path(rule, "action")):
        return None
    key = statement.get("aggregateKeyType", "IP")  # the API's default
    return key in PER_CLIENT_KEYS and get_path(rule, "action", "block") is not None


def _blocked_requests_alarmed(acl: Resource, alarms: Sequence[Resource]) -> bool:
    """An alarm with an action on the web ACL's BlockedRequests. The WebACL dimension is the web
    ACL's metric name (AWS WAF Developer Guide, "AWS WAF metrics and dimensions")."""
    metric_name = acl.get("visibilityConfig", "metricName")
    for alarm in alarms:
        if alarm.get("namespace") != "AWS/WAFV2" or alarm.get("metricName") != "BlockedRequests":
            continue
        dimension = alarm.get("dimensions", "WebACL")
        names_acl = is_unknown(dimension) or is_unknown(metric_name) or dimension == metric_name
        actions = alarm.get("alarmActions")
        if names_acl and (is_unknown(actions) or as_list(actions)):
            return True
    return False


def _waf_protections(resources: Sequence[Resource], ctx: Context) -> list[Violation]:
    alarms = of_type(resources, METRIC_ALARM)
    found = []
    for acl in of_type(resources, WEB_ACL):
        rules = _acl_rules(acl)
        if rules is None:
            continue
        problems = []
        groups = _blocking_groups(rules)
        if groups is not None:
            missing = [g for g in REQUIRED_MANAGED_GROUPS if g not in groups]
            if missing:
                problems.append(f"no blocking rule for the AWS managed rule groups {', '.join(missing)}")
        verdicts = [_blocks_per_client(rule) for rule in rules]
        if None not in verdicts and True not in verdicts:
            problems.append(
                "no rate-based rule that blocks per client IP (aggregateKeyType IP or FORWARDED_IP)"
            )
        if not _blocked_requests_alarmed(acl, alarms):
            problems.append("no alarm with an action on its AWS/WAFV2 BlockedRequests (dimension WebACL)")
        found += [Violation(acl.urn, f"web ACL '{acl.name}': {p}") for p in problems]
    return found


RULES: list[Rule] = [
    StackRule(
        name="ec2-default-security-group-closed",
        control="FSBP EC2.2",
        description="Every VPC's default security group allows no traffic.",
        severity="high",
        remediation="Adopt it with aws.ec2.DefaultSecurityGroup(vpc_id=vpc.id) and no ingress or egress.",
        resource_types=(VPC, DEFAULT_SECURITY_GROUP),
        check=_default_sg_closed,
    ),
    StackRule(
        name="ec2-no-world-ingress",
        control="FSBP EC2.18",
        description="Only the load balancer's security group is open to the internet, and only on TCP 80 and 443.",
        severity="high",
        remediation="Admit 0.0.0.0/0 and ::/0 only in the ALB's security group (one rule each for 80 and 443); "
        "let other groups reference the ALB's group (referenced_security_group_id).",
        resource_types=(INGRESS_RULE, SECURITY_GROUP_RULE, SECURITY_GROUP),
        check=_no_world_ingress,
    ),
    StackRule(
        name="ec2-vpc-flow-logs",
        control="FSBP EC2.6",
        description="In production, every VPC has flow logs.",
        severity="medium",
        remediation='Add aws.ec2.FlowLog(vpc_id=vpc.id, traffic_type="ALL", log_destination=log_group.arn, ...) '
        "(config motion:flowLogs).",
        resource_types=(VPC,),
        check=_flow_logs,
        production_only=True,
    ),
    ResourceRule(
        name="alb-drop-invalid-headers",
        control="FSBP ELB.4",
        description="Application load balancers drop invalid HTTP headers.",
        severity="medium",
        remediation="Set drop_invalid_header_fields=True.",
        resource_types=LOAD_BALANCERS,
        check=_drop_invalid_headers,
    ),
    ResourceRule(
        name="alb-deletion-protection",
        control="FSBP ELB.6",
        description="In production, load balancers have deletion protection.",
        severity="medium",
        remediation="Set enable_deletion_protection=True (config motion:albDeletionProtection).",
        resource_types=LOAD_BALANCERS,
        check=_lb_deletion_protection,
        production_only=True,
    ),
    ResourceRule(
        name="alb-access-logs",
        control="FSBP ELB.5",
        description="In production, load balancers write access logs to S3.",
        severity="medium",
        remediation='Set access_logs={"bucket": logs_bucket.id, "enabled": True} (config motion:albAccessLogs).',
        resource_types=LOAD_BALANCERS,
        check=_lb_access_logs,
        production_only=True,
    ),
    ResourceRule(
        name="alb-tls-policy",
        control="FSBP ELB.17",
        description="HTTPS listeners have a certificate and a modern TLS policy.",
        severity="high",
        remediation='Set certificate_arn and ssl_policy="ELBSecurityPolicy-TLS13-1-2-2021-06".',
        resource_types=LISTENERS,
        check=_tls_policy,
    ),
    StackRule(
        name="alb-http-redirects-to-https",
        control="FSBP ELB.1",
        description="Once a certificate is configured (always in production), HTTP listeners only redirect to HTTPS.",
        severity="high",
        remediation='Give the HTTP listener one default action {"type": "redirect", "redirect": {"protocol": '
        '"HTTPS", "port": "443", "status_code": "HTTP_301"}} and attach path rules to the HTTPS listener.',
        resource_types=LISTENERS,
        check=_http_redirects,
    ),
    StackRule(
        name="alb-https-required",
        control="FSBP ELB.1",
        description="In production, every application load balancer serves HTTPS.",
        severity="high",
        remediation="Set motion:certificateArn for the stack, so the platform creates the HTTPS listener.",
        resource_types=LOAD_BALANCERS,
        check=_https_required,
        production_only=True,
    ),
    StackRule(
        name="alb-waf",
        control="NIST ELB.16",
        description="In production, internet-facing Application Load Balancers are associated with a REGIONAL "
        "AWS WAF web ACL.",
        severity="medium",
        remediation="Create aws.wafv2.WebAcl(scope='REGIONAL') and aws.wafv2.WebAclAssociation(resource_arn=alb.arn) "
        "(config motion:waf).",
        resource_types=LOAD_BALANCERS,
        check=_alb_waf,
        production_only=True,
    ),
    StackRule(
        name="waf-logging",
        control="NIST WAF.11",
        description="Every AWS WAF web ACL logs its traffic, to a destination named aws-waf-logs-*.",
        severity="low",
        remediation="Create aws.wafv2.WebAclLoggingConfiguration(resource_arn=acl.arn, log_destination_configs="
        "[log_group.arn]) with a log group named aws-waf-logs-<name>.",
        resource_types=(WEB_ACL,),
        check=_waf_logging,
    ),
    StackRule(
        name="alb-access-log-bucket-sse-s3",
        control="Motion LOG-1",
        description="A bucket that receives Application Load Balancer access logs is encrypted with S3-managed "
        "keys (SSE-S3), the only encryption ALB log delivery supports.",
        severity="medium",
        remediation="Give the access log bucket sse_algorithm AES256 (components/platform/platform.py "
        "_access_log_bucket).",
        resource_types=(*LOAD_BALANCERS, *BUCKETS),
        check=_alb_log_bucket_sse_s3,
    ),
    StackRule(
        name="waf-protections",
        control="Motion WAF-1",
        description="In production, every AWS WAF web ACL blocks with the AWS managed common, known-bad-inputs "
        "and IP-reputation rule groups and a per-client-IP rate-based rule, and its blocked requests are "
        "alarmed.",
        severity="medium",
        remediation="Build the web ACL with components/platform/waf.py (config motion:waf, motion:wafRateLimit).",
        resource_types=(WEB_ACL, METRIC_ALARM),
        check=_waf_protections,
        production_only=True,
    ),
]
