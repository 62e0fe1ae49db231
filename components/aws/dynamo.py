"""DynamoDB tables built from the services' own schema modules (plain data in boto3 `create_table`
shape), so the local backend and the cloud create identical tables from one source."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from components.facts import load_app_module


def table_args(
    name: str,
    schema_module: str,
    data_protection: bool,
    definition: str = "TABLE",
    kms_key_arn: pulumi.Input[str] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for `aws.dynamodb.Table`: on-demand, KMS-encrypted (with `kms_key_arn`, a key
    of ours, else the AWS managed key), PITR and deletion protection when the stack protects its data.
    `definition` names the module's table (a module may define several)."""
    schema: dict[str, Any] = getattr(load_app_module(schema_module), definition)
    keys = {k["KeyType"]: k["AttributeName"] for k in schema["KeySchema"]}
    indexes = [
        aws.dynamodb.TableGlobalSecondaryIndexArgs(
            name=index["IndexName"],
            hash_key=next(k["AttributeName"] for k in index["KeySchema"] if k["KeyType"] == "HASH"),
            range_key=next((k["AttributeName"] for k in index["KeySchema"] if k["KeyType"] == "RANGE"), None),
            projection_type=index["Projection"]["ProjectionType"],
            non_key_attributes=index["Projection"].get("NonKeyAttributes"),
        )
        for index in schema.get("GlobalSecondaryIndexes", [])
    ]
    return {
        "name": name,
        "billing_mode": "PAY_PER_REQUEST",
        "hash_key": keys["HASH"],
        "range_key": keys.get("RANGE"),
        "attributes": [
            aws.dynamodb.TableAttributeArgs(name=a["AttributeName"], type=a["AttributeType"])
            for a in schema["AttributeDefinitions"]
        ],
        "global_secondary_indexes": indexes or None,
        "server_side_encryption": aws.dynamodb.TableServerSideEncryptionArgs(
            enabled=True, kms_key_arn=kms_key_arn
        ),
        "point_in_time_recovery": aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=data_protection),
        "deletion_protection_enabled": data_protection,
        "ttl": aws.dynamodb.TableTtlArgs(attribute_name=schema["TimeToLiveAttribute"], enabled=True)
        if schema.get("TimeToLiveAttribute")
        else None,
    }
