"""The user directory: who may be mailed, at which address, and which projects they share.

The mail API never takes an address from a request or a token: recipients are named by user id
and resolved here, and the sender's own address (Reply-To) and display name come from here too.
The directory follows Clerk through its webhooks (`mailer.webhook`); Svix does not promise to
deliver them in order, so every change is a single-item update that commutes with the others:

| item | `pk` | `sk` | holds |
|---|---|---|---|
| user | `USER#<user id>` | `PROFILE` | `email`, `display_name` (from user.created/updated), `projects` (string set, from organizationMembership.created/deleted) |
| delivery | `DELIVERY#<svix-id>` | `DELIVERY` | `expires_at` (TTL): a webhook delivery already applied |

A membership that arrives before its user.created makes an item with `projects` and no `email`:
such a user cannot be mailed until the profile arrives, which is the safe side.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mailer.schema import PARTITION_KEY, SORT_KEY

PROFILE_SORT_KEY = "PROFILE"
DELIVERY_SORT_KEY = "DELIVERY"
_BATCH_GET_LIMIT = 100  # keys per BatchGetItem call


@dataclass(frozen=True, slots=True)
class DirectoryUser:
    user_id: str
    email: str | None
    display_name: str | None
    projects: frozenset[str]

    @property
    def mailable(self) -> bool:
        return self.email is not None


def user_key(user_id: str) -> dict[str, Any]:
    return {PARTITION_KEY: {"S": f"USER#{user_id}"}, SORT_KEY: {"S": PROFILE_SORT_KEY}}


def _user(item: dict[str, Any]) -> DirectoryUser:
    email = item.get("email", {}).get("S")
    name = item.get("display_name", {}).get("S")
    return DirectoryUser(
        user_id=item["user_id"]["S"],
        email=email,
        display_name=name,
        projects=frozenset(item.get("projects", {}).get("SS", [])),
    )


class UserDirectory:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def get(self, user_id: str) -> DirectoryUser | None:
        return self.get_many([user_id]).get(user_id)

    def get_many(self, user_ids: Iterable[str]) -> dict[str, DirectoryUser]:
        """The users found, by id; ids not in the directory are simply absent."""
        wanted = list(dict.fromkeys(user_ids))
        found: dict[str, DirectoryUser] = {}
        for start in range(0, len(wanted), _BATCH_GET_LIMIT):
            # Consistent reads: a membership just removed must stop mail at once.
            pending: dict[str, Any] = {
                self._table: {
                    "Keys": [user_key(u) for u in wanted[start : start + _BATCH_GET_LIMIT]],
                    "ConsistentRead": True,
                }
            }
            for _ in range(5):
                result = self._db.batch_get_item(RequestItems=pending)
                for item in result.get("Responses", {}).get(self._table, []):
                    if "user_id" in item:
                        user = _user(item)
                        found[user.user_id] = user
                pending = result.get("UnprocessedKeys") or {}
                if not pending:
                    break
            else:
                raise RuntimeError("DynamoDB left directory reads unprocessed")
        return found

    def put_profile(self, user_id: str, email: str | None, display_name: str | None) -> None:
        """Set the user's address and name, keeping whatever memberships already arrived."""
        names = {"#uid": "user_id", "#email": "email", "#name": "display_name"}
        sets, removes, values = ["#uid = :uid"], [], {":uid": {"S": user_id}}
        for placeholder, value in (("#email", email), ("#name", display_name)):
            if value is None:
                removes.append(placeholder)
            else:
                sets.append(f"{placeholder} = {placeholder.replace('#', ':')}")
                values[placeholder.replace("#", ":")] = {"S": value}
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        self._db.update_item(
            TableName=self._table,
            Key=user_key(user_id),
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def delete_user(self, user_id: str) -> None:
        self._db.delete_item(TableName=self._table, Key=user_key(user_id))

    def add_membership(self, user_id: str, project_id: str) -> None:
        # ADD on a string set is atomic, so concurrent membership events never lose each other.
        self._db.update_item(
            TableName=self._table,
            Key=user_key(user_id),
            UpdateExpression="SET #uid = :uid ADD #projects :project",
            ExpressionAttributeNames={"#uid": "user_id", "#projects": "projects"},
            ExpressionAttributeValues={":uid": {"S": user_id}, ":project": {"SS": [project_id]}},
        )

    def remove_membership(self, user_id: str, project_id: str) -> None:
        # A removal for a user not in the directory changes nothing.
        with contextlib.suppress(self._db.exceptions.ConditionalCheckFailedException):
            self._db.update_item(
                TableName=self._table,
                Key=user_key(user_id),
                UpdateExpression="DELETE #projects :project",
                # Without the condition, removing from an absent user would create an empty item.
                ConditionExpression="attribute_exists(#pk)",
                ExpressionAttributeNames={"#projects": "projects", "#pk": PARTITION_KEY},
                ExpressionAttributeValues={":project": {"SS": [project_id]}},
            )

    def remember_delivery(self, delivery_id: str, expires_at: int) -> bool:
        """Record a webhook delivery id; False if it was recorded before (a replay)."""
        try:
            self._db.put_item(
                TableName=self._table,
                Item={
                    PARTITION_KEY: {"S": f"DELIVERY#{delivery_id}"},
                    SORT_KEY: {"S": DELIVERY_SORT_KEY},
                    "expires_at": {"N": str(expires_at)},
                },
                ConditionExpression="attribute_not_exists(#pk)",
                ExpressionAttributeNames={"#pk": PARTITION_KEY},
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def forget_delivery(self, delivery_id: str) -> None:
        """Undo `remember_delivery` when applying the event failed, so Svix's retry is applied."""
        self._db.delete_item(
            TableName=self._table,
            Key={PARTITION_KEY: {"S": f"DELIVERY#{delivery_id}"}, SORT_KEY: {"S": DELIVERY_SORT_KEY}},
        )
