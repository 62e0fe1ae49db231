"""ARNs built from where a component's resources live, for policies that must name a resource before
it exists (or one of AWS's own, like a managed policy).

The partition is looked up (`aws.get_partition`), never written: `aws` is one of AWS's partitions
(with `aws-cn` and `aws-us-gov`), and an ARN with another's names nothing there, so a policy naming it
grants nothing and a role trusting it is never assumed (IAM User Guide, "IAM identifiers", ARNs:
`arn:partition:service:region:account-id:resource`). tests/infra/test_arns.py holds the program to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class Place:
    """The account, region and partition a component's resources are in (each an invoke's output)."""

    account: pulumi.Output[str]
    region: pulumi.Output[str]
    partition: pulumi.Output[str]

    @staticmethod
    def of(parent: pulumi.Resource) -> Place:
        invoke = pulumi.InvokeOptions(parent=parent)
        return Place(
            account=aws.get_caller_identity_output(opts=invoke).account_id,
            region=aws.get_region_output(opts=invoke).region,
            partition=aws.get_partition_output(opts=invoke).partition,
        )

    def arn(
        self, service: str, resource: pulumi.Input[str], *, regional: bool = True, in_account: bool = True
    ) -> pulumi.Output[str]:
        """`arn:<partition>:<service>:<region>:<account>:<resource>` (region or account left empty
        for services whose ARNs have none: IAM, S3)."""
        return pulumi.Output.concat(
            "arn:",
            self.partition,
            ":",
            service,
            ":",
            self.region if regional else "",
            ":",
            self.account if in_account else "",
            ":",
            resource,
        )

    def managed_policy(self, path: str) -> pulumi.Output[str]:
        """An AWS managed policy's ARN (`arn:<partition>:iam::aws:policy/<path>`)."""
        return pulumi.Output.concat("arn:", self.partition, ":iam::aws:policy/", path)
