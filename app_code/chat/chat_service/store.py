"""Message persistence: DynamoDB through boto3 in a thread pool, and the ordered batcher in front of it.

boto3 is blocking, so every call runs on a small dedicated thread pool. Sends are batched into
BatchWriteItem calls (up to 25 items) that run concurrently, but `OrderedPersister` hands finished
batches back strictly in submission order. Keys are assigned in submission order, so the instance
publishes each project's messages in key order no matter which write finished first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from chat_service.schema import CLAIM_PARTITION_PREFIX, CLAIM_TTL_SECONDS, PARTITION_KEY, SORT_KEY, TABLE

log = logging.getLogger(__name__)

BATCH_LIMIT = 25  # BatchWriteItem's maximum
UNPROCESSED_RETRIES = 6
CONFLICT_RETRIES = 4
TTL_ATTRIBUTE: str = TABLE["TimeToLiveAttribute"]


@dataclass(frozen=True, slots=True)
class StoredMessage:
    project: str
    key: str
    user: str
    text: str
    ts: int
    # The sender's id for the message (protocol `client_id`); not part of the event or the item.
    client_id: str | None = None

    def event(self) -> dict[str, Any]:
        return {
            "type": "message",
            "project": self.project,
            "id": self.key,
            "user": self.user,
            "text": self.text,
            "ts": self.ts,
        }

    def item(self) -> dict[str, Any]:
        return {
            PARTITION_KEY: {"S": self.project},
            SORT_KEY: {"S": self.key},
            "user_id": {"S": self.user},
            "text": {"S": self.text},
            "ts": {"N": str(self.ts)},
        }

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> StoredMessage:
        return cls(
            project=item[PARTITION_KEY]["S"],
            key=item[SORT_KEY]["S"],
            user=item["user_id"]["S"],
            text=item["text"]["S"],
            ts=int(item["ts"]["N"]),
        )


class PartialWriteError(RuntimeError):
    """Some messages of a batch were stored and these (by key) were not: only their senders fail."""

    def __init__(self, unwritten: set[str]) -> None:
        super().__init__(f"DynamoDB left {len(unwritten)} messages unprocessed")
        self.unwritten = unwritten


@dataclass(slots=True)
class WriteResult:
    # Key -> the message stored under the same client id before (this one was not stored).
    earlier: dict[str, StoredMessage] = field(default_factory=dict)
    # Keys of messages that were not stored (their senders are told to send again).
    unwritten: set[str] = field(default_factory=set)


class MessageStore(Protocol):
    """Blocking calls; the service runs them on its thread pool."""

    def write(self, messages: list[StoredMessage]) -> WriteResult:
        """Store the messages, each on its own account: the result says which were not stored and
        which carried a client id the sender used before (not stored again: mapped to the message
        stored then). Raises only when nothing can be said about any of them."""

    def page(
        self, project: str, *, before: str | None, after: str | None, limit: int, consistent: bool = False
    ) -> tuple[list[StoredMessage], bool]:
        """Up to `limit` messages and whether there are more: newest first, or oldest first with
        `after`; `consistent` reads every write acknowledged before the query (catch-ups need it)."""


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
            {"Put": {"TableName": self._table, "Item": message.item()}},
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
        requests = [{"PutRequest": {"Item": m.item()}} for m in messages]
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
        items = [StoredMessage.from_item(item) for item in response.get("Items", [])]
        return items[:limit], len(items) > limit


class NoStore:
    """CHAT_PERSIST=false (benchmarks only): nothing is written and history is empty."""

    def write(self, messages: list[StoredMessage]) -> WriteResult:
        return WriteResult()

    def page(
        self, project: str, *, before: str | None, after: str | None, limit: int, consistent: bool = False
    ) -> tuple[list[StoredMessage], bool]:
        return [], False


T = TypeVar("T")


class _Batch(Generic[T]):
    __slots__ = ("error", "finished", "items")

    def __init__(self, items: list[T]) -> None:
        self.items = items
        self.finished = False
        self.error: BaseException | None = None


class OrderedPersister(Generic[T]):
    """Writes submitted items in concurrent batches; `on_done` sees them in submission order.

    With `write=None` nothing is written and `on_done` runs at once, inside `submit`.
    """

    def __init__(
        self,
        write: Callable[[list[T]], None] | None,
        on_done: Callable[[list[T], BaseException | None], None],
        executor: Executor,
        max_in_flight: int,
    ) -> None:
        self._write = write
        self._on_done = on_done
        self._executor = executor
        self._max_in_flight = max_in_flight
        self._queue: list[T] = []
        self._in_flight: deque[_Batch[T]] = deque()
        self._running = 0
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.items = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def pending(self) -> int:
        return len(self._queue) + sum(len(b.items) for b in self._in_flight)

    def submit(self, item: T) -> None:
        if self._write is None:
            self._on_done([item], None)
            return
        self._queue.append(item)
        self._idle.clear()
        # Everything submitted during one pass of the event loop goes out together.
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        while self._queue and self._running < self._max_in_flight:
            batch = _Batch(self._queue[:BATCH_LIMIT])
            del self._queue[:BATCH_LIMIT]
            self.batches += 1
            self.items += len(batch.items)
            self._in_flight.append(batch)
            self._running += 1
            task = asyncio.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: _Batch[T]) -> None:
        assert self._write is not None
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._write, batch.items)
        except Exception as err:
            log.warning("persisting %d messages failed: %s", len(batch.items), err)
            batch.error = err
        batch.finished = True
        self._running -= 1
        while self._in_flight and self._in_flight[0].finished:
            done = self._in_flight.popleft()
            try:
                self._on_done(done.items, done.error)
            except Exception:
                log.exception("handling persisted messages failed")
        if self._queue:
            self._flush()
        elif not self._in_flight:
            self._idle.set()

    async def drain(self) -> None:
        """Wait until everything submitted is written and handed back."""
        await self._idle.wait()
