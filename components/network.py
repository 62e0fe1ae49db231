"""VPC with public, private (app) and isolated (data) subnets per AZ, NAT per strategy, gateway endpoints."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.aws.arns import Place
from components.aws.iam import assume_role_policy, policy_document, statement
from components.config.model import NetworkConfig

# What a flow log's role needs on its log group, as the VPC User Guide lists it ("IAM role for publishing
# flow logs to CloudWatch Logs"); DescribeLogGroups is granted apart (see `_flow_logs`).
FLOW_LOG_GROUP_ACTIONS = (
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "logs:DescribeLogStreams",
)


@dataclass(frozen=True)
class NetworkArgs:
    name_prefix: str
    network: NetworkConfig
    availability_zones: tuple[str, ...]
    log_retention_days: int
    log_kms_key_arn: pulumi.Input[str] | None


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]
    isolated_subnet_ids: list[pulumi.Output[str]]
    # Per tier, what a task in it needs before it can reach the internet: its default route and the
    # subnets' association with that route table.
    egress: dict[str, list[pulumi.Resource]]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("motion:network:Network", name, None, opts)
        cfg = args.network
        child = pulumi.ResourceOptions(parent=self)
        prefix = args.name_prefix
        zones = args.availability_zones[: cfg.az_count]

        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=cfg.vpc_cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": f"{prefix}-vpc"},
            opts=child,
        )
        self.vpc_id = self.vpc.id
        # Adopt the default security group and leave it without rules, so nothing can use it by accident.
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg",
            vpc_id=self.vpc.id,
            ingress=[],
            egress=[],
            tags={"Name": f"{prefix}-default-closed"},
            opts=child,
        )
        igw = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=self.vpc.id, tags={"Name": f"{prefix}-igw"}, opts=child
        )

        subnets: dict[str, list[aws.ec2.Subnet]] = {"public": [], "private": [], "isolated": []}
        for tier in subnets:
            for index, zone in enumerate(zones):
                subnets[tier].append(
                    aws.ec2.Subnet(
                        f"{name}-{tier}-{index}",
                        vpc_id=self.vpc.id,
                        cidr_block=cfg.subnet_cidr(tier, index),
                        availability_zone=zone,
                        map_public_ip_on_launch=False,
                        tags={"Name": f"{prefix}-{tier}-{zone}", "tier": tier},
                        opts=child,
                    )
                )
        self.public_subnet_ids = [s.id for s in subnets["public"]]
        self.private_subnet_ids = [s.id for s in subnets["private"]]
        self.isolated_subnet_ids = [s.id for s in subnets["isolated"]]

        public_rt = aws.ec2.RouteTable(
            f"{name}-public-rt", vpc_id=self.vpc.id, tags={"Name": f"{prefix}-public"}, opts=child
        )
        self.egress = {"public": [], "private": []}
        self.egress["public"].append(
            aws.ec2.Route(
                f"{name}-public-default",
                route_table_id=public_rt.id,
                destination_cidr_block="0.0.0.0/0",
                gateway_id=igw.id,
                opts=child,
            )
        )
        for index, subnet in enumerate(subnets["public"]):
            self.egress["public"].append(
                aws.ec2.RouteTableAssociation(
                    f"{name}-public-{index}", subnet_id=subnet.id, route_table_id=public_rt.id, opts=child
                )
            )

        nat_ids = self._nat_gateways(name, prefix, cfg, subnets["public"], igw, child)
        route_tables = [public_rt]
        for index, subnet in enumerate(subnets["private"]):
            rt = aws.ec2.RouteTable(
                f"{name}-private-rt-{index}",
                vpc_id=self.vpc.id,
                tags={"Name": f"{prefix}-private-{zones[index]}"},
                opts=child,
            )
            if nat_ids:
                # Each AZ leaves through its own NAT where there is one per AZ, so losing an AZ
                # never cuts egress for the others.
                self.egress["private"].append(
                    aws.ec2.Route(
                        f"{name}-private-default-{index}",
                        route_table_id=rt.id,
                        destination_cidr_block="0.0.0.0/0",
                        nat_gateway_id=nat_ids[index % len(nat_ids)],
                        opts=child,
                    )
                )
            self.egress["private"].append(
                aws.ec2.RouteTableAssociation(
                    f"{name}-private-{index}", subnet_id=subnet.id, route_table_id=rt.id, opts=child
                )
            )
            route_tables.append(rt)
        isolated_rt = aws.ec2.RouteTable(
            f"{name}-isolated-rt", vpc_id=self.vpc.id, tags={"Name": f"{prefix}-isolated"}, opts=child
        )
        for index, subnet in enumerate(subnets["isolated"]):
            aws.ec2.RouteTableAssociation(
                f"{name}-isolated-{index}", subnet_id=subnet.id, route_table_id=isolated_rt.id, opts=child
            )
        route_tables.append(isolated_rt)

        # Gateway endpoints are free and keep S3/DynamoDB traffic off the NAT gateways (and the internet).
        region = aws.get_region_output(opts=pulumi.InvokeOptions(parent=self)).region
        for service in ("s3", "dynamodb"):
            aws.ec2.VpcEndpoint(
                f"{name}-{service}-endpoint",
                vpc_id=self.vpc.id,
                service_name=pulumi.Output.concat("com.amazonaws.", region, f".{service}"),
                vpc_endpoint_type="Gateway",
                route_table_ids=[rt.id for rt in route_tables],
                tags={"Name": f"{prefix}-{service}"},
                opts=child,
            )
        if cfg.flow_logs:
            self._flow_logs(name, prefix, args.log_retention_days, args.log_kms_key_arn, child)

        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "public_subnet_ids": self.public_subnet_ids,
                "private_subnet_ids": self.private_subnet_ids,
                "isolated_subnet_ids": self.isolated_subnet_ids,
            }
        )

    def _nat_gateways(
        self,
        name: str,
        prefix: str,
        cfg: NetworkConfig,
        public: list[aws.ec2.Subnet],
        igw: aws.ec2.InternetGateway,
        child: pulumi.ResourceOptions,
    ) -> list[pulumi.Output[str]]:
        count = {"none": 0, "single": 1, "per_az": len(public)}[cfg.nat_strategy]
        ids = []
        for index in range(count):
            eip = aws.ec2.Eip(
                f"{name}-nat-eip-{index}", domain="vpc", tags={"Name": f"{prefix}-nat-{index}"}, opts=child
            )
            nat = aws.ec2.NatGateway(
                f"{name}-nat-{index}",
                allocation_id=eip.id,
                subnet_id=public[index].id,
                tags={"Name": f"{prefix}-nat-{index}"},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
            )
            ids.append(nat.id)
        return ids

    def _flow_logs(
        self,
        name: str,
        prefix: str,
        retention: int,
        kms_key_arn: pulumi.Input[str] | None,
        child: pulumi.ResourceOptions,
    ) -> None:
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs",
            name=f"/motion/{prefix}/vpc-flow-logs",
            retention_in_days=retention,
            kms_key_id=kms_key_arn,
            opts=child,
        )
        place = Place.of(self)
        account = place.account
        # The trust and permissions AWS documents for a flow log that publishes to CloudWatch Logs
        # ("IAM role for publishing flow logs to CloudWatch Logs", VPC User Guide,
        # vpc/latest/userguide/flow-logs-iam-role.html): the five logs actions, and a trust policy pinned
        # to our account and our account's flow logs (confused deputy).
        role = aws.iam.Role(
            f"{name}-flow-logs-role",
            assume_role_policy=assume_role_policy(
                "vpc-flow-logs.amazonaws.com",
                account,
                source_arn=place.arn("ec2", "vpc-flow-log/*"),
            ),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-flow-logs-write",
            role=role.id,
            policy=policy_document(
                statement(
                    FLOW_LOG_GROUP_ACTIONS,
                    [log_group.arn, pulumi.Output.concat(log_group.arn, ":*")],
                    sid="WriteFlowLogs",
                ),
                # DescribeLogGroups lists groups; it names no single one, so it is scoped to this
                # account's and region's log groups rather than to ours.
                statement(
                    ["logs:DescribeLogGroups"],
                    [place.arn("logs", "log-group:*")],
                    sid="FindLogGroup",
                ),
            ),
            opts=child,
        )
        aws.ec2.FlowLog(
            f"{name}-flow-log",
            vpc_id=self.vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=log_group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=60,
            opts=child,
        )
