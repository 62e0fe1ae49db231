"""The messages table (layout in `mailer.schema`): storing messages, the send claims, mailboxes.

Each recipient gets an e-mail of their own (no shared To:), so each has a delivery item
(`MSG#<message id>` / `TO#<recipient user id>`), created by its first claim. Its state moves only
through conditional writes:

    pending --claim--> claimed --about to call SES--> sending --SES accepted--> sent
       ^                  |                              |
       |                  +--lease ran out: reclaimed    +--SES refused--> pending (nothing sent)
       +------------------------------------------------+
                                                         +--outcome unknown--> unknown

A claim carries a lease that outlives the invocation holding it (the Lambda's remaining time plus
a margin). `claimed` means "mine, and SES has not been called": a holder that dies there leaves
nothing sent, so once its lease runs out the next delivery of the record takes the claim over and
sends. Only the step into `sending`, written just before the SES call, says "SES may have it". A
live lease (either state) means another invocation is on it right now: retry later. `sending` with
an expired lease means the holder died between calling SES and recording the answer: sending again
could deliver it twice, so the delivery becomes `unknown`, published as the `DeliveriesUnknown`
metric (alarmed) and logged with the reason, and its record goes to the dead-letter queue for an
operator (SES's send events, tagged with the message id and the recipient's index, tell whether it
went out). The guarantee: at most one e-mail per recipient, and exactly one unless the handler
died inside that one window, which is always reported. At-least-once delivery from SQS thus never
becomes two e-mails, and a crash anywhere else costs only a retry.

The message item's own `send_state` sums its deliveries up: `pending` until every recipient's
e-mail is `sent` (then `sent`), `unknown` as soon as one delivery is.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from mailer.message import MailMessage, Recipient
from mailer.schema import PARTITION_KEY, SORT_KEY

MESSAGE_SORT_KEY = "MESSAGE"
PENDING, CLAIMED, SENDING, SENT, UNKNOWN = "pending", "claimed", "sending", "sent", "unknown"

_BATCH_WRITE_LIMIT = 25  # items per BatchWriteItem call
_BATCH_GET_LIMIT = 100  # keys per BatchGetItem call
ClaimOutcome = Literal["claimed", "already_sent", "in_flight", "stale", "unknown"]

_NAMES = {
    "#pk": PARTITION_KEY,
    "#sk": SORT_KEY,
    "#state": "send_state",
    "#outcome": "outcome",
    "#rank": "outcome_rank",
    "#outcome_at": "outcome_at",
    "#outcome_detail": "outcome_detail",
    "#ses": "ses_message_id",
    "#sent_at": "sent_at",
    "#confirmed_by": "confirmed_by",
    "#claim": "claim_id",
    "#lease": "lease_until",
    "#attempts": "attempts",
    "#error": "last_error",
}


def message_key(message_id: str) -> dict[str, Any]:
    return {PARTITION_KEY: {"S": f"MSG#{message_id}"}, SORT_KEY: {"S": MESSAGE_SORT_KEY}}


def delivery_key(message_id: str, recipient_id: str) -> dict[str, Any]:
    return {PARTITION_KEY: {"S": f"MSG#{message_id}"}, SORT_KEY: {"S": f"TO#{recipient_id}"}}


def user_partition(user_id: str) -> str:
    return f"USER#{user_id}"


def inbox_partition(user_id: str) -> str:
    """Where a user's received mail is kept: by user id, never by an address a token claims."""
    return f"INBOX#{user_id}"


@dataclass(frozen=True, slots=True)
class Claim:
    outcome: ClaimOutcome
    claim_id: str | None = None
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class Page:
    messages: list[dict[str, Any]]
    next_before: str | None


def _held(item: dict[str, Any], state: str, claim_id: str) -> bool:
    """Whether a delivery item is in `state` under `claim_id`."""
    return item.get("send_state", {}).get("S") == state and item.get("claim_id", {}).get("S") == claim_id


def _names(*keys: str) -> dict[str, str]:
    return {key: _NAMES[key] for key in keys}


def _content(message: MailMessage) -> dict[str, Any]:
    item: dict[str, Any] = {
        "message_id": {"S": message.message_id},
        "sender_id": {"S": message.sender_id},
        "recipients": {
            "L": [{"M": {"user_id": {"S": r.user_id}, "email": {"S": r.email}}} for r in message.recipients]
        },
        "subject": {"S": message.subject},
        "body": {"S": message.body},
        "created_at": {"S": message.created_at},
    }
    if message.sender_email is not None:
        item["sender_email"] = {"S": message.sender_email}
    if message.sender_name is not None:
        item["sender_name"] = {"S": message.sender_name}
    return item


def _optional(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return str(value["S"]) if value else None


def _message(item: dict[str, Any]) -> MailMessage:
    return MailMessage(
        message_id=item["message_id"]["S"],
        sender_id=item["sender_id"]["S"],
        sender_email=_optional(item, "sender_email"),
        sender_name=_optional(item, "sender_name"),
        recipients=tuple(
            Recipient(value["M"]["user_id"]["S"], value["M"]["email"]["S"])
            for value in item["recipients"]["L"]
        ),
        subject=item["subject"]["S"],
        body=item["body"]["S"],
        created_at=item["created_at"]["S"],
    )


def _entry(item: dict[str, Any], folders: Iterable[str], viewer: str) -> dict[str, Any]:
    folders = sorted(folders)
    recipients = [value["M"]["user_id"]["S"] for value in item["recipients"]["L"]]
    # The sender sees every recipient; a recipient sees only themselves, as in their e-mail.
    shown = recipients if "sent" in folders else [r for r in recipients if r == viewer]
    return {
        "id": item["message_id"]["S"],
        "folders": folders,
        "from": {
            "user_id": item["sender_id"]["S"],
            "name": _optional(item, "sender_name"),
            "email": _optional(item, "sender_email"),
        },
        # User ids only: recipients' addresses stay in the message item, for the worker.
        "to": shown,
        "subject": item["subject"]["S"],
        "body": item["body"]["S"],
        "created_at": item["created_at"]["S"],
    }


def _until_processed(call: Callable[[dict[str, Any]], Any], request: dict[str, Any], what: str) -> None:
    """Run a batch call until DynamoDB leaves nothing unprocessed. Unprocessed items are DynamoDB
    asking us to slow down: back off, then give up (the caller's record is redelivered by SQS, or
    its request answered 503) rather than hold the whole batch."""
    for delay in (0.05, 0.1, 0.2, 0.4, None):
        left = call(request) or {}
        if not left:
            return
        if delay is None:
            raise RuntimeError(
                f"DynamoDB left {sum(len(v) if isinstance(v, list) else len(v.get('Keys', [])) for v in left.values())} {what}"
            )
        request = left
        time.sleep(delay)


class MessageStore:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def save(self, message: MailMessage) -> bool:
        """Store the message and every participant's mailbox entry; False if it was stored before.

        The message item is written first and only if absent, so a redelivery never resets its
        delivery state. Mailbox entries follow as plain puts: they are fully determined by the
        event, so rewriting them changes nothing, and a redelivery completes whatever a crash
        left half-written. Once a send was claimed they are known to be complete (the claim
        comes after them), so a duplicate of a claimed message costs one conditional write.
        (Not a transaction: that would cost twice the write capacity for an atomicity the
        redelivery already gives us.)

        Two events may share an id yet differ (a request retried with the same `Idempotency-Key`
        is accepted again, at another time): whichever was stored first is the message, so its
        mailbox entries are the ones (re)written, and `claim` hands it back for sending.
        """
        try:
            self._db.put_item(
                TableName=self._table,
                Item={**message_key(message.message_id), **_content(message), "send_state": {"S": PENDING}},
                ConditionExpression="attribute_not_exists(#pk)",
                ExpressionAttributeNames=_names("#pk"),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            created = True
        except self._db.exceptions.ConditionalCheckFailedException as err:
            created = False
            stored = err.response.get("Item") or self.get_message_item(message.message_id)
            state = (stored or {}).get("send_state", {}).get("S")
            if state is not None and state != PENDING:
                return False
            if stored is not None:
                message = _message(stored)
        self._write_mailboxes(message)
        return created

    def _write_mailboxes(self, message: MailMessage) -> None:
        content = _content(message)
        sort_key = {"S": message.mailbox_sort_key}
        items = [
            {
                PARTITION_KEY: {"S": user_partition(message.sender_id)},
                SORT_KEY: sort_key,
                "folder": {"S": "sent"},
            }
        ]
        items += [
            {
                PARTITION_KEY: {"S": inbox_partition(r.user_id)},
                SORT_KEY: sort_key,
                "folder": {"S": "received"},
            }
            for r in message.recipients
        ]
        requests = [{"PutRequest": {"Item": {**item, **content}}} for item in items]
        for start in range(0, len(requests), _BATCH_WRITE_LIMIT):
            pending = {self._table: requests[start : start + _BATCH_WRITE_LIMIT]}
            _until_processed(
                lambda request: self._db.batch_write_item(RequestItems=request).get("UnprocessedItems"),
                pending,
                "mailbox entries unwritten",
            )

    def stored_message(self, message_id: str) -> MailMessage | None:
        """The message as stored (the one to send, which may differ from a later event; see `save`)."""
        item = self.get_message_item(message_id)
        return _message(item) if item is not None else None

    def claim(self, message_id: str, recipient_id: str, lease_until_ms: int, now_ms: int) -> Claim:
        """Take the right to send this recipient's e-mail, or say why not (see the module docstring)."""
        claim_id = os.urandom(8).hex()
        try:
            result = self._db.update_item(
                TableName=self._table,
                Key=delivery_key(message_id, recipient_id),
                UpdateExpression=(
                    "SET #state = :claimed, #claim = :claim, #lease = :lease, "
                    "#attempts = if_not_exists(#attempts, :zero) + :one"
                ),
                # The first claim creates the delivery item; a claim whose holder died before
                # calling SES is taken over once its lease has run out.
                ConditionExpression=(
                    "attribute_not_exists(#state) OR #state = :pending OR (#state = :claimed AND #lease <= :now)"
                ),
                ExpressionAttributeNames=_names("#state", "#claim", "#lease", "#attempts"),
                ExpressionAttributeValues={
                    ":claimed": {"S": CLAIMED},
                    ":now": {"N": str(now_ms)},
                    ":pending": {"S": PENDING},
                    ":claim": {"S": claim_id},
                    ":lease": {"N": str(lease_until_ms)},
                    ":zero": {"N": "0"},
                    ":one": {"N": "1"},
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self._db.exceptions.ConditionalCheckFailedException as err:
            current = err.response.get("Item") or self.get_delivery_item(message_id, recipient_id)
            if current is None:
                raise RuntimeError(
                    f"delivery {message_id}/{recipient_id} vanished during its claim"
                ) from None
            return self._why_not(current, now_ms)
        item = result["Attributes"]
        return Claim("claimed", claim_id=claim_id, attempts=int(item["attempts"]["N"]))

    @staticmethod
    def _why_not(item: dict[str, Any], now_ms: int) -> Claim:
        state = item.get("send_state", {}).get("S")
        holder = item.get("claim_id", {}).get("S")
        if state == SENT:
            return Claim("already_sent", claim_id=holder)
        if state == UNKNOWN:
            return Claim("unknown", claim_id=holder)
        if state == SENDING and int(item.get("lease_until", {}).get("N", "0")) <= now_ms:
            return Claim("stale", claim_id=holder)
        # A live lease, or `pending` again because the holder released it a moment ago: either
        # way the next delivery decides, after the visibility timeout.
        return Claim("in_flight", claim_id=holder)

    def begin_send(self, message_id: str, recipient_id: str, claim_id: str) -> bool:
        """Written just before the SES call: from here on, SES may have the e-mail. False when the
        claim is no longer ours (our lease ran out and another delivery took it over)."""
        try:
            self._db.update_item(
                TableName=self._table,
                Key=delivery_key(message_id, recipient_id),
                UpdateExpression="SET #state = :sending",
                ConditionExpression="#state = :claimed AND #claim = :claim",
                ExpressionAttributeNames=_names("#state", "#claim"),
                ExpressionAttributeValues={
                    ":sending": {"S": SENDING},
                    ":claimed": {"S": CLAIMED},
                    ":claim": {"S": claim_id},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self._db.exceptions.ConditionalCheckFailedException as err:
            # The SDK retries a call whose answer was lost: if the first attempt landed, the item is
            # already `sending` under our claim, which is success, not a takeover.
            return _held(err.response.get("Item") or {}, SENDING, claim_id)
        return True

    def mark_sent(
        self, message_id: str, recipient_id: str, claim_id: str, ses_message_id: str, sent_at: str
    ) -> None:
        # Conditioned on our claim only: if a late duplicate already declared the outcome unknown,
        # we know better now, and `sent` must win so that nobody ever sends it again.
        self._db.update_item(
            TableName=self._table,
            Key=delivery_key(message_id, recipient_id),
            UpdateExpression="SET #state = :sent, ses_message_id = :ses, sent_at = :at REMOVE #lease",
            ConditionExpression="#claim = :claim",
            ExpressionAttributeNames=_names("#state", "#claim", "#lease"),
            ExpressionAttributeValues={
                ":sent": {"S": SENT},
                ":ses": {"S": ses_message_id},
                ":at": {"S": sent_at},
                ":claim": {"S": claim_id},
            },
        )

    def mark_message_sent(self, message_id: str) -> None:
        """Every recipient's e-mail is sent: a later duplicate of the event costs one write."""
        self._set_message_state(message_id, SENT)

    def _set_message_state(self, message_id: str, state: str) -> None:
        self._db.update_item(
            TableName=self._table,
            Key=message_key(message_id),
            UpdateExpression="SET #state = :state",
            ExpressionAttributeNames=_names("#state"),
            ExpressionAttributeValues={":state": {"S": state}},
        )

    def release(self, message_id: str, recipient_id: str, claim_id: str, reason: str) -> bool:
        """Give the claim back after SES refused the e-mail, so a later delivery may try again."""
        return self._transition(message_id, recipient_id, claim_id, PENDING, reason, remove_lease=True)

    def mark_unknown(self, message_id: str, recipient_id: str, claim_id: str, reason: str) -> bool:
        """True when the delivery is now `unknown` under `claim_id` (also when a retried call finds
        its first attempt landed); False when another outcome was recorded first (e.g. `sent`)."""
        changed = self._transition(message_id, recipient_id, claim_id, UNKNOWN, reason, remove_lease=False)
        if not changed:
            item = self.get_delivery_item(message_id, recipient_id) or {}
            changed = _held(item, UNKNOWN, claim_id)
        if changed:
            # The message is not done, and will not be without an operator: say so on it too.
            self._set_message_state(message_id, UNKNOWN)
        return changed

    def _transition(
        self, message_id: str, recipient_id: str, claim_id: str, state: str, reason: str, remove_lease: bool
    ) -> bool:
        return self._updated(
            Key=delivery_key(message_id, recipient_id),
            UpdateExpression="SET #state = :state, #error = :error"
            + (" REMOVE #lease" if remove_lease else ""),
            ConditionExpression="#state = :sending AND #claim = :claim",
            ExpressionAttributeNames=_names(
                "#state", "#claim", "#error", *(("#lease",) if remove_lease else ())
            ),
            ExpressionAttributeValues={
                ":state": {"S": state},
                ":error": {"S": reason[:1000]},
                ":sending": {"S": SENDING},
                ":claim": {"S": claim_id},
            },
        )

    # --- what SES reports afterwards (mailer.ses_events) -----------------------------------------

    def confirm_sent(self, message_id: str, recipient_id: str, ses_message_id: str, at: str) -> bool:
        """SES reported an event for this delivery, so it accepted the e-mail: a delivery still
        `sending` (its holder may have died before recording the answer) or `unknown` is `sent`.
        True when this changed it. A live holder's own `mark_sent` still succeeds (it is
        conditioned on its claim only), and its `release`/`mark_unknown` no longer can."""
        return self._updated(
            Key=delivery_key(message_id, recipient_id),
            UpdateExpression="SET #state = :sent, #ses = if_not_exists(#ses, :ses), "
            "#sent_at = if_not_exists(#sent_at, :at), #confirmed_by = :evidence REMOVE #lease",
            ConditionExpression="#state IN (:sending, :unknown)",
            ExpressionAttributeNames=_names("#state", "#lease", "#ses", "#sent_at", "#confirmed_by"),
            ExpressionAttributeValues={
                ":sent": {"S": SENT},
                ":ses": {"S": ses_message_id},
                ":at": {"S": at or "unknown"},
                ":evidence": {"S": "ses-event"},
                ":sending": {"S": SENDING},
                ":unknown": {"S": UNKNOWN},
            },
        )

    def sum_up(self, message_id: str, recipients: int) -> str:
        """Set the message's `send_state` from its deliveries (all `sent`: sent; any `unknown`:
        unknown; else pending) and return it."""
        states: list[str] = []
        start: dict[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :to)",
                "ExpressionAttributeNames": {**_names("#pk", "#sk", "#state")},
                "ExpressionAttributeValues": {":pk": {"S": f"MSG#{message_id}"}, ":to": {"S": "TO#"}},
                "ProjectionExpression": "#state",
                "ConsistentRead": True,
            }
            if start is not None:
                kwargs["ExclusiveStartKey"] = start
            result = self._db.query(**kwargs)
            states += [item.get("send_state", {}).get("S", PENDING) for item in result.get("Items", [])]
            start = result.get("LastEvaluatedKey")
            if start is None:
                break
        if len(states) == recipients and all(state == SENT for state in states):
            self._set_message_state(message_id, SENT)
            return SENT
        summary = UNKNOWN if UNKNOWN in states else PENDING
        # A delivery never leaves `sent`, so neither does its message: a summary read before a
        # worker or another event finished the last delivery must not write over their `sent`.
        if not self._updated(
            Key=message_key(message_id),
            UpdateExpression="SET #state = :state",
            ConditionExpression="attribute_not_exists(#state) OR #state <> :sent",
            ExpressionAttributeNames=_names("#state"),
            ExpressionAttributeValues={":state": {"S": summary}, ":sent": {"S": SENT}},
        ):
            return SENT
        return summary

    def record_outcome(
        self, message_id: str, recipient_id: str, outcome: str, rank: int, at: str, detail: str
    ) -> bool:
        """Move the delivery's outcome up the ladder (`mailer.ses_events.LADDER`); False when it is
        there or higher already (a duplicate, or an event that arrived after a later one)."""
        return self._updated(
            Key=delivery_key(message_id, recipient_id),
            UpdateExpression="SET #outcome = :outcome, #rank = :rank, #outcome_at = :at, "
            "#outcome_detail = :detail",
            ConditionExpression="attribute_exists(#pk) AND (attribute_not_exists(#rank) OR #rank < :rank)",
            ExpressionAttributeNames=_names("#pk", "#outcome", "#rank", "#outcome_at", "#outcome_detail"),
            ExpressionAttributeValues={
                ":outcome": {"S": outcome},
                ":rank": {"N": str(rank)},
                ":at": {"S": at or "unknown"},
                ":detail": {"S": detail or "-"},
            },
        )

    def deliveries(self, messages: dict[str, list[str]]) -> dict[str, dict[str, str]]:
        """message id -> {recipient id -> status} for the sender's view: SES's latest outcome when
        there is one, else the send state (`pending` until the e-mail is sent)."""
        keys = [delivery_key(m, r) for m, recipients in messages.items() for r in recipients]
        found: dict[str, dict[str, str]] = {m: dict.fromkeys(rs, PENDING) for m, rs in messages.items()}

        def read(request: dict[str, Any]) -> Any:
            result = self._db.batch_get_item(RequestItems=request)
            for item in result.get("Responses", {}).get(self._table, []):
                message_id = item[PARTITION_KEY]["S"].removeprefix("MSG#")
                recipient_id = item[SORT_KEY]["S"].removeprefix("TO#")
                state = item.get("send_state", {}).get("S", PENDING)
                shown = item.get("outcome", {}).get("S") or (state if state in (SENT, UNKNOWN) else PENDING)
                found.setdefault(message_id, {})[recipient_id] = shown
            return result.get("UnprocessedKeys")

        for start in range(0, len(keys), _BATCH_GET_LIMIT):
            pending: dict[str, Any] = {
                self._table: {
                    "Keys": keys[start : start + _BATCH_GET_LIMIT],
                    "ProjectionExpression": "#pk, #sk, #state, #outcome",
                    "ExpressionAttributeNames": _names("#pk", "#sk", "#state", "#outcome"),
                }
            }

            _until_processed(read, pending, "delivery states unread")
        return found

    def _updated(self, **request: Any) -> bool:
        """A conditional UpdateItem: False when its condition did not hold (nothing was written)."""
        try:
            self._db.update_item(TableName=self._table, **request)
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def get_message_item(self, message_id: str) -> dict[str, Any] | None:
        result = self._db.get_item(TableName=self._table, Key=message_key(message_id), ConsistentRead=True)
        item: dict[str, Any] | None = result.get("Item")
        return item

    def get_delivery_item(self, message_id: str, recipient_id: str) -> dict[str, Any] | None:
        result = self._db.get_item(
            TableName=self._table, Key=delivery_key(message_id, recipient_id), ConsistentRead=True
        )
        item: dict[str, Any] | None = result.get("Item")
        return item

    def list_mailbox(self, user_id: str, limit: int, before: str | None) -> Page:
        """The user's sent and received messages, newest first, `limit` at a time.

        Sort keys order all partitions on one time line, so "older than the last one shown" is a
        cursor valid across both. Each partition is read for `limit + 1` entries: if the merge
        holds more than `limit`, there is a next page, and otherwise both partitions are done.
        A message sent to oneself sits in both partitions under the same sort key and is shown
        once, in both folders.
        """
        # Both partitions are named by the authorizer's `sub` alone: no claim the identity provider
        # lets a user influence (such as `email`) can open someone else's mail.
        partitions = [user_partition(user_id), inbox_partition(user_id)]
        merged: dict[str, tuple[str, dict[str, Any], set[str]]] = {}
        for partition in partitions:
            for item in self._query(partition, before, limit + 1):
                message_id = item["message_id"]["S"]
                entry = merged.setdefault(message_id, (item[SORT_KEY]["S"], item, set()))
                entry[2].add(item["folder"]["S"])
        ordered = sorted(merged.values(), key=lambda entry: entry[0], reverse=True)
        page = ordered[:limit]
        next_before = page[-1][0] if len(ordered) > limit else None
        entries = [_entry(item, folders, user_id) for _, item, folders in page]
        # The sender sees what became of each recipient's e-mail (SES's events, mailer.ses_events).
        sent = {view["id"]: view["to"] for view in entries if "sent" in view["folders"]}
        if sent:
            states = self.deliveries(sent)
            for view in entries:
                if view["id"] in sent:
                    view["deliveries"] = [
                        {"user_id": r, "status": states[view["id"]].get(r, PENDING)} for r in view["to"]
                    ]
        return Page(messages=entries, next_before=next_before)

    def _query(self, partition: str, before: str | None, want: int) -> list[dict[str, Any]]:
        condition = "#pk = :pk" + (" AND #sk < :before" if before is not None else "")
        values: dict[str, Any] = {":pk": {"S": partition}}
        if before is not None:
            values[":before"] = {"S": before}
        items: list[dict[str, Any]] = []
        start: dict[str, Any] | None = None
        # A query page stops at 1 MB, possibly before `want` items: keep reading until we have
        # enough or the partition is exhausted, or "no next page" would be a lie.
        while len(items) < want:
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "KeyConditionExpression": condition,
                "ExpressionAttributeNames": _names("#pk", "#sk") if before is not None else _names("#pk"),
                "ExpressionAttributeValues": values,
                "ScanIndexForward": False,
                "Limit": want - len(items),
            }
            if start is not None:
                kwargs["ExclusiveStartKey"] = start
            result = self._db.query(**kwargs)
            items.extend(result.get("Items", []))
            start = result.get("LastEvaluatedKey")
            if start is None:
                break
        return items
