"""DynamoDB tables built from a table schema in boto3's `create_table` shape (plain data, which the
services keep in their own schema modules), so the local backend and the cloud create identical tables
from one source."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NotRequired, TypedDict

import pulumi
import pulumi_aws as aws


class KeyElement(TypedDict):
    AttributeName: str
    KeyType: Literal["HASH", "RANGE"]


class AttributeDefinition(TypedDict):
    AttributeName: str
    AttributeType: Literal["S", "N", "B"]


class Projection(TypedDict):
    ProjectionType: Literal["ALL", "KEYS_ONLY", "INCLUDE"]
    NonKeyAttributes: NotRequired[Sequence[str]]


class GlobalSecondaryIndex(TypedDict):
    IndexName: str
    KeySchema: Sequence[KeyElement]
    Projection: Projection


class TableSchema(TypedDict):
    """A table as boto3's `create_table` takes it, plus `TimeToLiveAttribute` (set apart, by
    UpdateTimeToLive, in the API)."""

    KeySchema: Sequence[KeyElement]
    AttributeDefinitions: Sequence[AttributeDefinition]
    BillingMode: NotRequired[str]
    GlobalSecondaryIndexes: NotRequired[Sequence[GlobalSecondaryIndex]]
    TimeToLiveAttribute: NotRequired[str]


def table_args(
    name: str,
    schema: TableSchema,
    data_protection: bool,
    kms_key_arn: pulumi.Input[str] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for `aws.dynamodb.Table` named `name` with `schema`'s keys, attributes,
    indexes and TTL: on-demand, KMS-encrypted (with `kms_key_arn`, a key of ours, else the AWS managed
    key), PITR and deletion protection when `data_protection` asks for them."""
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
