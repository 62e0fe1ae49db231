"""The message store on DynamoDB (boto3, blocking; the core runs its calls on threads), and `NoStore`.

Items are in the shape of `chat_service.schema`: a message is `project_id` / `message_key` with
`user_id`, `text` and `ts`; a send with a client id also writes its claim in the same transaction.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

from chat_service.core.messages import PartialWriteError, StoredMessage, WriteResult
from chat_service.schema import CLAIM_PARTITION_PREFIX, CLAIM_TTL_SECONDS, PARTITION_KEY, SORT_KEY, TABLE

log = logging.getLogger(__name__)

UNPROCESSED_RETRIES: Final = 6
CONFLICT_RETRIES: Final = 4
TTL_ATTRIBUTE: str = TABLE["TimeToLiveAttribute"]


def item(message: StoredMessage) -> dict[str, Any]:
    """`message` as a table item."""
    return {
        PARTITION_KEY: {"S": message.project},
        SORT_KEY: {"S": message.key},
        "user_id": {"S": message.user},
        "text": {"S": message.text},
        "ts": {"N": str(message.ts)},
    }


def from_item(data: dict[str, Any]) -> StoredMessage:
    return StoredMessage(
        project=data[PARTITION_KEY]["S"],
        key=data[SORT_KEY]["S"],
        user=data["user_id"]["S"],
        text=data["text"]["S"],
        ts=int(data["ts"]["N"]),
    )


class DynamoMessageStore:
    def __init__(self, table: str, region: str, max_connections: int) -> None:
        import boto3
        from botocore.config import Config

        # AWS_ENDPOINT_URL (local API) is honoured by boto3 itself. Timeouts are short because a
        # sender is waiting for its ack; the adaptive retry mode backs off when DynamoDB throttles.
        # botocore's client-side parameter validation costs about as much CPU as the rest of a
        # 25-item BatchWriteItem; the items are built here, and DynamoDB validates them anyway.
        config = Config(
            region_name=region,
            max_pool_connections=max_connections,
            connect_timeout=2,
            read_timeout=5,
            retries={"max_attempts": 4, "mode": "adaptive"},
            parameter_validation=False,
        )
        self._client = boto3.session.Session().client("dynamodb", config=config)
        self._table = table

    def write(self, messages: list[StoredMessage]) -> WriteResult:
        # Claimed sends one transaction each (the message and its claim, or neither), each with its
        # own outcome, so one failure or conflict never fails its neighbours; plain sends batched.
        result = WriteResult()
        plain = []
        for message in messages:
            if message.client_id is None:
                plain.append(message)
                continue
            try:
                stored = self._write_claimed(message)
            except Exception as err:
                log.warning("storing claimed send %s failed: %s", message.key, err)
                result.unwritten.add(message.key)
                continue
            if stored is not None:
                result.earlier[message.key] = stored
        if plain:
            try:
                self._write_batch(plain)
            except PartialWriteError as err:
                result.unwritten |= err.unwritten
            except Exception as err:
                if len(plain) == len(messages):
                    raise
                log.warning("storing %d messages failed: %s", len(plain), err)
                result.unwritten |= {m.key for m in plain}
        return result

    def _write_claimed(self, message: StoredMessage) -> StoredMessage | None:
        assert message.client_id is not None
        claim_key = {
            PARTITION_KEY: {"S": CLAIM_PARTITION_PREFIX + message.project},
            SORT_KEY: {"S": f"{message.user}#{message.client_id}"},
        }
        claim = {
            **claim_key,
            "message": {"S": message.key},
            "ts": {"N": str(message.ts)},
            "text": {"S": message.text},
            TTL_ATTRIBUTE: {"N": str(int(time.time()) + CLAIM_TTL_SECONDS)},
        }
        items = [
            {"Put": {"TableName": self._table, "Item": item(message)}},
            {
                "Put": {
                    "TableName": self._table,
                    "Item": claim,
                    "ConditionExpression": "attribute_not_exists(#pk)",
                    "ExpressionAttributeNames": {"#pk": PARTITION_KEY},
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
        ]
        delay = 0.02
        reasons: list[dict[str, Any]] = []
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                self._client.transact_write_items(TransactItems=items)
                return None
            except self._client.exceptions.TransactionCanceledException as err:
                reasons = err.response.get("CancellationReasons") or []
                codes = [r.get("Code") for r in reasons]
                # The same id sent twice at once (two tabs, or a resend while the first is being
                # written): the other transaction holds the claim; wait for it and ask again.
                if "TransactionConflict" in codes and attempt < CONFLICT_RETRIES:
                    time.sleep(delay)
                    delay *= 2
                    continue
                if len(reasons) < 2 or codes[1] != "ConditionalCheckFailed":
                    raise
                break
        # Claimed before: the message stored then, from the claim (read back if the error did not
        # carry it).
        old = reasons[1].get("Item") or self._read_claim(claim_key)
        return StoredMessage(
            message.project,
            old["message"]["S"],
            message.user,
            old["text"]["S"],
            int(old["ts"]["N"]),
            message.client_id,
        )

    def _read_claim(self, claim_key: dict[str, Any]) -> dict[str, Any]:
        # Query, not GetItem: the task role's two actions are BatchWriteItem and Query (and PutItem,
        # which the transaction's puts are authorized as).
        response = self._client.query(
            TableName=self._table,
            KeyConditionExpression=f"{PARTITION_KEY} = :p AND {SORT_KEY} = :s",
            ExpressionAttributeValues={":p": claim_key[PARTITION_KEY], ":s": claim_key[SORT_KEY]},
            ConsistentRead=True,
        )
        (item,) = response["Items"]
        return dict(item)

    def _write_batch(self, messages: list[StoredMessage]) -> None:
        requests = [{"PutRequest": {"Item": item(m)}} for m in messages]
        delay = 0.02
        for attempt in range(UNPROCESSED_RETRIES + 1):
            response = self._client.batch_write_item(RequestItems={self._table: requests})
            requests = response.get("UnprocessedItems", {}).get(self._table, [])
            if not requests:
                return
            if attempt < UNPROCESSED_RETRIES:
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        raise PartialWriteError({r["PutRequest"]["Item"][SORT_KEY]["S"] for r in requests})

    def page(
        self, project: str, *, before: str | None, after: str | None, limit: int, consistent: bool = False
    ) -> tuple[list[StoredMessage], bool]:
        values: dict[str, Any] = {":p": {"S": project}}
        condition = f"{PARTITION_KEY} = :p"
        if after is not None:
            condition += f" AND {SORT_KEY} > :k"
            values[":k"] = {"S": after}
        elif before is not None:
            condition += f" AND {SORT_KEY} < :k"
            values[":k"] = {"S": before}
        # One extra item tells whether another page exists without a second round trip.
        response = self._client.query(
            TableName=self._table,
            KeyConditionExpression=condition,
            ExpressionAttributeValues=values,
            ScanIndexForward=after is not None,
            Limit=limit + 1,
            # Eventually consistent reads may miss a write acknowledged just before; a catch-up
            # that missed one would never deliver it ("Read consistency", DynamoDB Developer Guide).
            ConsistentRead=consistent,
        )
        items = [from_item(data) for data in response.get("Items", [])]
        return items[:limit], len(items) > limit


class NoStore:
    """CHAT_PERSIST=false (benchmarks only): nothing is written and history is empty."""

    def write(self, messages: list[StoredMessage]) -> WriteResult:
        return WriteResult()

    def page(
        self, project: str, *, before: str | None, after: str | None, limit: int, consistent: bool = False
    ) -> tuple[list[StoredMessage], bool]:
        return [], False
