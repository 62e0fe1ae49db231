"""Customer managed KMS keys for the data Motion keeps, each with a key policy granting its service
exactly what the service's documentation asks for."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws


def log_key_policy(
    region: pulumi.Input[str], account: pulumi.Input[str], partition: pulumi.Input[str]
) -> pulumi.Output[str]:
    """CloudWatch Logs User Guide, "Encrypt log data in CloudWatch Logs using AWS Key Management Service",
    step 2: the regional service principal logs.<region>.amazonaws.com may use the key, only for log
    groups of this account and region (the kms:EncryptionContext:aws:logs:arn condition; CloudWatch
    Logs passes the log group's ARN as that encryption context). Writers (Lambda, ECS, flow logs, API
    Gateway) need nothing from the key: CloudWatch Logs encrypts what they put."""
    return pulumi.Output.json_dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    # The default key policy: the account's IAM policies decide who administers the key.
                    "Sid": "AccountAdministers",
                    "Effect": "Allow",
                    "Principal": {"AWS": pulumi.Output.concat("arn:", partition, ":iam::", account, ":root")},
                    "Action": "kms:*",
                    "Resource": "*",
                },
                {
                    "Sid": "CloudWatchLogsEncryptsLogGroups",
                    "Effect": "Allow",
                    "Principal": {"Service": pulumi.Output.concat("logs.", region, ".amazonaws.com")},
                    "Action": [
                        "kms:Encrypt*",
                        "kms:Decrypt*",
                        "kms:ReEncrypt*",
                        "kms:GenerateDataKey*",
                        "kms:Describe*",
                    ],
                    "Resource": "*",
                    "Condition": {
                        "ArnLike": {
                            "kms:EncryptionContext:aws:logs:arn": pulumi.Output.concat(
                                "arn:", partition, ":logs:", region, ":", account, ":log-group:*"
                            )
                        }
                    },
                },
            ],
        }
    )


class LogKey(pulumi.ComponentResource):
    """The stack's key for its CloudWatch log groups (`alias/<prefix>-logs`); `arn` is what a log group
    names as its kms_key_id."""

    def __init__(self, name: str, name_prefix: str, protected: bool, opts: pulumi.ResourceOptions) -> None:
        super().__init__("motion:kms:LogKey", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOptions(parent=self)
        account = aws.get_caller_identity_output(opts=invoke).account_id
        region = aws.get_region_output(opts=invoke).region
        partition = aws.get_partition_output(opts=invoke).partition
        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"{name_prefix} CloudWatch log groups",
            enable_key_rotation=True,
            deletion_window_in_days=30 if protected else 7,
            policy=log_key_policy(region, account, partition),
            opts=child,
        )
        aws.kms.Alias(
            f"{name}-alias", name=f"alias/{name_prefix}-logs", target_key_id=self.key.key_id, opts=child
        )
        self.arn = self.key.arn
        self.register_outputs({"arn": self.arn})
