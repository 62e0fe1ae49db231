"""The messages table, as plain data in the shape boto3's `create_table` takes.

The local backend, the tests and the Pulumi component all build the table from `TABLE`, so they
cannot drift apart.

| attribute | type | |
|---|---|---|
| `project_id` | S | partition key: one project's conversation |
| `message_key` | S | sort key: `<13-digit epoch ms>#<8-char instance id><10-char counter>` |
| `user_id` | S | the sender (`sub` of their token) |
| `text` | S | the message |
| `ts` | N | server time the message was accepted, epoch ms |

A send that carries a client id also writes, in the same transaction, a claim of that id:
`project_id` = `send#<project>`, `message_key` = `<user>#<client id>`, holding the message's key,
`ts` and `text`, and `expires_at` (TTL, a day on): a resend of the id finds the claim and is
answered with the stored message. Claims live in partitions of their own, so history never sees
them.

The sort key orders by time and is unique per message: the instance id and a counter follow the
millisecond, so two messages in the same millisecond (on one instance or on two) never share a key
and never overwrite each other. Keys are fixed-width, so string order is time order; the message's
public `id` is its key.
"""

from __future__ import annotations

from typing import Any, Final

PARTITION_KEY: Final = "project_id"
SORT_KEY: Final = "message_key"

TABLE: Final[dict[str, Any]] = {
    "KeySchema": [
        {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
        {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
    ],
    "AttributeDefinitions": [
        {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
        {"AttributeName": SORT_KEY, "AttributeType": "S"},
    ],
    "BillingMode": "PAY_PER_REQUEST",
    # Only send claims carry it; messages never expire.
    "TimeToLiveAttribute": "expires_at",
}
CLAIM_PARTITION_PREFIX: Final = "send#"
CLAIM_TTL_SECONDS: Final = 86_400


def create_table_kwargs(table_name: str) -> dict[str, Any]:
    """Arguments for `dynamodb.create_table` (fresh copies, so callers may modify them)."""
    kwargs: dict[str, Any] = {"TableName": table_name}
    for key, value in TABLE.items():
        if key == "TimeToLiveAttribute":  # not a create_table argument (UpdateTimeToLive sets it)
            continue
        kwargs[key] = [dict(entry) for entry in value] if isinstance(value, list) else value
    return kwargs
