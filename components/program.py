"""The composition root: one function that builds a whole stack from its config, so tests can run it
once per stack in one process."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.config import StackConfig
from components.network import Network, NetworkArgs
from components.platform import Platform, PlatformArgs


@dataclass(frozen=True)
class Stack:
    """What `build` made, for tests and for `__main__` to export."""

    config: StackConfig
    network: Network
    platform: Platform
    outputs: dict[str, pulumi.Input[object]]


def build(config: StackConfig) -> Stack:
    # One explicit provider carries the region and the default tags, so every AWS resource is tagged.
    provider = aws.Provider(
        "aws", region=config.region, default_tags=aws.ProviderDefaultTagsArgs(tags=config.tags)
    )
    with_aws = pulumi.ResourceOptions(providers={"aws": provider})
    zones = aws.get_availability_zones(state="available", opts=pulumi.InvokeOptions(provider=provider)).names

    network = Network(
        "network",
        NetworkArgs(
            name_prefix=config.name_prefix,
            network=config.network,
            availability_zones=tuple(zones),
            log_retention_days=config.log_retention_days,
        ),
        opts=with_aws,
    )
    platform = Platform(
        "platform",
        PlatformArgs(
            name_prefix=config.name_prefix,
            vpc_id=network.vpc_id,
            vpc_cidr=config.network.vpc_cidr,
            public_subnet_ids=network.public_subnet_ids,
            certificate_arn=config.certificate_arn,
            domain=config.domain,
            container_insights=config.container_insights,
            deletion_protection=config.alb_deletion_protection,
            access_logs=config.alb_access_logs,
            log_retention_days=config.log_retention_days,
            alarm_email=config.alarm_email,
        ),
        opts=with_aws,
    )

    outputs: dict[str, pulumi.Input[object]] = {
        "region": config.region,
        "vpcId": network.vpc_id,
        "baseUrl": platform.base_url,
        "albDnsName": platform.alb.dns_name,
        "clusterName": platform.cluster_name,
    }
    for key, value in outputs.items():
        pulumi.export(key, value)
    return Stack(config=config, network=network, platform=platform, outputs=outputs)
