"""The messages table, as plain data in the shape boto3's `create_table` takes.

The local backend (`devstack.mail_resources`) and the Pulumi component both build the table from
`TABLE`, so the two cannot drift. The key design (all keys are strings):

| item | `pk` | `sk` | holds |
|---|---|---|---|
| message | `MSG#<message id>` | `MESSAGE` | content + overall state (`send_state`) |
| delivery | `MSG#<message id>` | `TO#<recipient's user id>` | that recipient's e-mail: `send_state`, claim, lease, `ses_message_id` |
| sender's mailbox entry | `USER#<sender's user id>` | `<created_at>#<message id>` | content, `folder` = `sent` |
| recipient's mailbox entry | `INBOX#<recipient's user id>` | `<created_at>#<message id>` | content, `folder` = `received` |

Listing a user's mail is two `Query`s (their `USER#` and `INBOX#` partitions, both named by the
token's `sub`, never by an address) read newest first; `created_at` is a fixed-width
UTC timestamp, so the sort key orders by time and the message id breaks ties. No index is needed:
mailbox entries carry the content, so a page is one read per partition and no write fans out.
"""

from __future__ import annotations

from typing import Any, Final

PARTITION_KEY: Final = "pk"
SORT_KEY: Final = "sk"

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
}


# The user directory (`mailer.directory`) is a table of its own with the same key schema; delivery
# records and quota counters expire through TTL on this attribute.
USERS_TTL_ATTRIBUTE: Final = "expires_at"
USERS_TABLE: Final[dict[str, Any]] = {**TABLE, "TimeToLiveAttribute": USERS_TTL_ATTRIBUTE}
# Send quota counters (`mailer.quota`), a table of their own so the API's write permission on it
# cannot touch the directory.
QUOTAS_TABLE: Final[dict[str, Any]] = USERS_TABLE


def create_table_kwargs(table_name: str) -> dict[str, Any]:
    """Arguments for `dynamodb.create_table` (fresh copies, so callers may modify them)."""
    kwargs: dict[str, Any] = {"TableName": table_name}
    for key, value in TABLE.items():  # TimeToLiveAttribute is not a create_table argument
        kwargs[key] = [dict(entry) for entry in value] if isinstance(value, list) else value
    return kwargs
