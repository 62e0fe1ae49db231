"""Network: subnets per AZ and tier, NAT per strategy, endpoints, closed default security group."""

from __future__ import annotations

import ipaddress
import itertools

from tests.infra.harness import StackRun, run_with

SUBNET = "aws:ec2/subnet:Subnet"


def tiers(run: StackRun) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for subnet in run.of_type(SUBNET):
        out.setdefault(subnet.inputs["tags"]["tier"], []).append(subnet.inputs)
    return out


def test_dev_spans_two_azs_without_nat(dev: StackRun) -> None:
    by_tier = tiers(dev)
    assert {t: len(s) for t, s in by_tier.items()} == {"public": 2, "private": 2, "isolated": 2}
    assert {s["availabilityZone"] for s in by_tier["private"]} == {"us-east-1a", "us-east-1b"}
    assert dev.of_type("aws:ec2/natGateway:NatGateway") == []
    assert dev.of_type("aws:ec2/eip:Eip") == []
    # Without NAT no private route leads out; only the public table has a default route (to the IGW).
    routes = dev.of_type("aws:ec2/route:Route")
    assert [r.inputs.get("gatewayId") for r in routes] == ["network-igw-id"]


def test_production_spans_three_azs_with_one_nat_per_az(production: StackRun) -> None:
    by_tier = tiers(production)
    assert {t: len(s) for t, s in by_tier.items()} == {"public": 3, "private": 3, "isolated": 3}
    nats = production.of_type("aws:ec2/natGateway:NatGateway")
    assert len(nats) == 3
    public = {
        s.id: s.inputs["availabilityZone"]
        for s in production.of_type(SUBNET)
        if s.inputs["tags"]["tier"] == "public"
    }
    nat_az = {n.id: public[n.inputs["subnetId"]] for n in nats}
    assert sorted(nat_az.values()) == ["us-east-1a", "us-east-1b", "us-east-1c"]
    for eip in production.of_type("aws:ec2/eip:Eip"):
        assert eip.inputs["domain"] == "vpc"
    # Each private route table leaves through the NAT in its own AZ.
    tables = {t.id: t.inputs["tags"]["Name"] for t in production.of_type("aws:ec2/routeTable:RouteTable")}
    private_routes = [r for r in production.of_type("aws:ec2/route:Route") if "natGatewayId" in r.inputs]
    assert len(private_routes) == 3
    for route in private_routes:
        table_az = tables[route.inputs["routeTableId"]].rsplit("-", 1)[-1]
        assert nat_az[route.inputs["natGatewayId"]].endswith(table_az[-1])


def test_single_nat_strategy_shares_one_gateway() -> None:
    run = run_with("dev", natStrategy="single")
    assert len(run.of_type("aws:ec2/natGateway:NatGateway")) == 1
    nat_routes = [r for r in run.of_type("aws:ec2/route:Route") if "natGatewayId" in r.inputs]
    assert len(nat_routes) == 2 and len({r.inputs["natGatewayId"] for r in nat_routes}) == 1


def test_subnet_cidrs_lie_in_the_vpc_and_never_overlap(stack: StackRun) -> None:
    vpc = ipaddress.ip_network(stack.one("aws:ec2/vpc:Vpc").inputs["cidrBlock"])
    nets = [ipaddress.ip_network(s.inputs["cidrBlock"]) for s in stack.of_type(SUBNET)]
    assert all(n.subnet_of(vpc) for n in nets)  # type: ignore[arg-type]
    for a, b in itertools.combinations(nets, 2):
        assert not a.overlaps(b), (a, b)


def test_adding_an_az_keeps_existing_subnets() -> None:
    two = {s.name: s.inputs["cidrBlock"] for s in run_with("dev", azCount=2).of_type(SUBNET)}
    three = {s.name: s.inputs["cidrBlock"] for s in run_with("dev", azCount=3).of_type(SUBNET)}
    assert all(three[name] == cidr for name, cidr in two.items())


def test_gateway_endpoints_cover_every_route_table(stack: StackRun) -> None:
    tables = {t.id for t in stack.of_type("aws:ec2/routeTable:RouteTable")}
    endpoints = stack.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert sorted(e.inputs["serviceName"] for e in endpoints) == [
        "com.amazonaws.us-east-1.dynamodb",
        "com.amazonaws.us-east-1.s3",
    ]
    for endpoint in endpoints:
        assert endpoint.inputs["vpcEndpointType"] == "Gateway"
        assert set(endpoint.inputs["routeTableIds"]) == tables


def test_default_security_group_has_no_rules(stack: StackRun) -> None:
    default = stack.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert default.inputs.get("ingress", []) == [] and default.inputs.get("egress", []) == []


def test_isolated_subnets_have_no_route_out(stack: StackRun) -> None:
    isolated_table = stack.one("aws:ec2/routeTable:RouteTable", "isolated")
    assert [
        r for r in stack.of_type("aws:ec2/route:Route") if r.inputs["routeTableId"] == isolated_table.id
    ] == []


def test_flow_logs_only_where_enabled(dev: StackRun, production: StackRun) -> None:
    assert dev.of_type("aws:ec2/flowLog:FlowLog") == []
    flow = production.one("aws:ec2/flowLog:FlowLog")
    assert flow.inputs["trafficType"] == "ALL" and flow.inputs["vpcId"] == "network-vpc-id"
    group = production.one("aws:cloudwatch/logGroup:LogGroup", "flow-logs")
    assert group.inputs["retentionInDays"] == 365
    policy = production.one("aws:iam/rolePolicy:RolePolicy", "flow-logs").json("policy")
    assert all(r.startswith("arn:aws:logs:") for s in policy["Statement"] for r in s["Resource"])


# What the VPC User Guide says a flow log's role must allow to publish to CloudWatch Logs ("IAM role
# for publishing flow logs to CloudWatch Logs", vpc/latest/userguide/flow-logs-iam-role.html), and the
# trust it documents (the service principal, with aws:SourceAccount and aws:SourceArn against the
# confused deputy). A role short of any of these deploys cleanly and then delivers no flow logs.
DOCUMENTED_FLOW_LOG_ACTIONS = (
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "logs:DescribeLogGroups",
    "logs:DescribeLogStreams",
)


def _iam_match(pattern: str, value: str) -> bool:
    """IAM's ARN matching: `*` any run of characters, `?` one character, case-sensitive."""
    import fnmatch

    return fnmatch.fnmatchcase(value, pattern)


def test_flow_log_role_has_the_documented_permissions_and_trust(production: StackRun) -> None:
    group = production.one("aws:cloudwatch/logGroup:LogGroup", "flow-logs")
    group_arn = f"arn:aws:logs:us-east-1:123456789012:log-group:{group.inputs['name']}"
    stream_arn = f"{group_arn}:log-stream:eni-0123-all"
    policy = production.one("aws:iam/rolePolicy:RolePolicy", "flow-logs").json("policy")
    for action in DOCUMENTED_FLOW_LOG_ACTIONS:
        # Stream-level actions are authorized on the stream, group-level ones on the group.
        target = stream_arn if action in ("logs:PutLogEvents", "logs:CreateLogStream") else group_arn
        assert any(
            s["Effect"] == "Allow"
            and action in s["Action"]
            and any(_iam_match(r, target) or _iam_match(r, group_arn + ":*") for r in s["Resource"])
            for s in policy["Statement"]
        ), f"the flow log role does not allow {action} on its log group"
    role = production.one("aws:iam/role:Role", "flow-logs-role")
    trust = role.json("assumeRolePolicy")["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "vpc-flow-logs.amazonaws.com"}]
    condition = trust[0]["Condition"]
    assert condition["StringEquals"] == {"aws:SourceAccount": "123456789012"}
    assert _iam_match(
        condition["ArnLike"]["aws:SourceArn"], "arn:aws:ec2:us-east-1:123456789012:vpc-flow-log/fl-0abc"
    )
    assert not _iam_match(
        condition["ArnLike"]["aws:SourceArn"], "arn:aws:ec2:us-east-1:210987654321:vpc-flow-log/fl-0abc"
    )
