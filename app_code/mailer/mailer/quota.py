"""Per-user send quota: e-mails (one per recipient) per clock hour and per UTC day.

The stage's throttle is shared by every user; this is each user's own. A charge is one
conditional `UpdateItem` on the user's counter item in the quotas table, so concurrent requests
of one user can never together exceed either limit (DynamoDB applies conditional writes to an
item one at a time): the request that would cross a limit fails its condition and is answered
429 with Retry-After, the end of the window that is full.

The item `pk` = `QUOTA#<user id>`, `sk` = `COUNTERS` holds one number per window, named after it
(`h_2026120123`, `d_20261201`), so one update covers both windows without a transaction. Each
charge also removes the previous 24 hours' and the previous day's attributes, so the item stays
small, and sets `expires_at` (TTL) to the end of the next day, so idle users' items go away.

A request with an `Idempotency-Key` is charged once however often it is retried: its charge is a
transaction (TransactWriteItems) of the counter update and a marker item `sk` = `CHARGE#<message
id>`, put only if absent. A retry finds the marker, cancels the transaction on it, and is answered
as already charged, without counting again. Markers expire after CHARGE_MARKER_SECONDS; a retry
later than that is charged again (the worker still sends the message only once). A refund removes
the marker with the charge, so the retry of a request whose publish failed is charged normally.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from mailer.schema import PARTITION_KEY, SORT_KEY, USERS_TTL_ATTRIBUTE

COUNTERS_SORT_KEY = "COUNTERS"
CHARGE_SORT_KEY_PREFIX = "CHARGE#"
HOUR, DAY = 3600, 86400
# How long a keyed request's charge is remembered (README: clients retry within minutes).
CHARGE_MARKER_SECONDS = DAY


@dataclass(frozen=True, slots=True)
class Charge:
    """The outcome of asking for `emails` more e-mails at `at` (epoch seconds)."""

    allowed: bool
    emails: int
    at: int
    retry_after: int = 0  # seconds until the full window ends (when refused)
    reason: str = ""
    # The keyed request's message id (its charge marker), None for an unkeyed request.
    charge_id: str | None = None
    # True when a retry of an already-charged keyed request: nothing was counted this time.
    repeated: bool = False


def _hour_name(at: int) -> str:
    return "h_" + time.strftime("%Y%m%d%H", time.gmtime(at))


def _day_name(at: int) -> str:
    return "d_" + time.strftime("%Y%m%d", time.gmtime(at))


def quota_key(user_id: str) -> dict[str, Any]:
    return {PARTITION_KEY: {"S": f"QUOTA#{user_id}"}, SORT_KEY: {"S": COUNTERS_SORT_KEY}}


def marker_key(user_id: str, charge_id: str) -> dict[str, Any]:
    return {PARTITION_KEY: {"S": f"QUOTA#{user_id}"}, SORT_KEY: {"S": CHARGE_SORT_KEY_PREFIX + charge_id}}


class SendQuota:
    def __init__(self, dynamodb: Any, table: str, per_hour: int, per_day: int) -> None:
        self._db = dynamodb
        self._table = table
        self.per_hour = per_hour
        self.per_day = per_day

    def charge(
        self, user_id: str, emails: int, now: float | None = None, charge_id: str | None = None
    ) -> Charge:
        """Count `emails` against both windows, or refuse; `charge_id` (a keyed request's message id)
        makes the charge once-only for that request."""
        at = int(time.time() if now is None else now)
        to_hour_end = HOUR - at % HOUR
        to_day_end = DAY - at % DAY
        if emails > self.per_hour:
            return Charge(
                False,
                emails,
                at,
                to_hour_end,
                f"{emails} recipients exceed the hourly quota of {self.per_hour} e-mails",
            )
        names = {"#h": _hour_name(at), "#d": _day_name(at), "#exp": USERS_TTL_ATTRIBUTE}
        # Windows already over: removed so the item does not grow (a 24-hour gap leaves nothing).
        stale = [_hour_name(at - HOUR * back) for back in range(1, 25)] + [_day_name(at - DAY)]
        names.update({f"#s{i}": name for i, name in enumerate(stale)})
        values = {
            ":zero": {"N": "0"},
            ":n": {"N": str(emails)},
            ":hroom": {"N": str(self.per_hour - emails)},
            ":droom": {"N": str(self.per_day - emails)},
            ":exp": {"N": str(at + to_day_end + DAY)},
        }
        update = {
            "TableName": self._table,
            "Key": quota_key(user_id),
            "UpdateExpression": (
                "SET #h = if_not_exists(#h, :zero) + :n, #d = if_not_exists(#d, :zero) + :n, "
                "#exp = :exp REMOVE " + ", ".join(f"#s{i}" for i in range(len(stale)))
            ),
            "ConditionExpression": (
                "(attribute_not_exists(#h) OR #h <= :hroom) AND (attribute_not_exists(#d) OR #d <= :droom)"
            ),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if charge_id is None:
            try:
                self._db.update_item(**update)
            except self._db.exceptions.ConditionalCheckFailedException as err:
                return self._refused(err.response.get("Item") or {}, names, emails, at)
            return Charge(True, emails, at)
        marker = {
            "TableName": self._table,
            "Item": {
                **marker_key(user_id, charge_id),
                "emails": {"N": str(emails)},
                "at": {"N": str(at)},
                USERS_TTL_ATTRIBUTE: {"N": str(at + CHARGE_MARKER_SECONDS)},
            },
            "ConditionExpression": "attribute_not_exists(#pk)",
            "ExpressionAttributeNames": {"#pk": PARTITION_KEY},
        }
        try:
            self._db.transact_write_items(TransactItems=[{"Put": marker}, {"Update": update}])
        except self._db.exceptions.TransactionCanceledException as err:
            reasons = err.response.get("CancellationReasons") or []
            codes = [r.get("Code") for r in reasons]
            if codes[:1] == ["ConditionalCheckFailed"]:
                # Charged by an earlier attempt of this request (marker present): not again.
                return Charge(True, emails, at, charge_id=charge_id, repeated=True)
            if len(codes) > 1 and codes[1] == "ConditionalCheckFailed":
                return self._refused(reasons[1].get("Item") or {}, names, emails, at)
            raise
        return Charge(True, emails, at, charge_id=charge_id)

    def _refused(self, item: dict[str, Any], names: dict[str, str], emails: int, at: int) -> Charge:
        day_used = int(item.get(names["#d"], {}).get("N", "0"))
        if day_used + emails > self.per_day:
            return Charge(
                False,
                emails,
                at,
                DAY - at % DAY,
                f"daily quota of {self.per_day} e-mails reached ({day_used} sent today)",
            )
        hour_used = int(item.get(names["#h"], {}).get("N", "0"))
        return Charge(
            False,
            emails,
            at,
            HOUR - at % HOUR,
            f"hourly quota of {self.per_hour} e-mails reached ({hour_used} sent this hour)",
        )

    def refund(self, user_id: str, charge: Charge) -> None:
        """Give back an allowed charge whose message was not accepted after all (publish failed). A
        repeated charge counted nothing, so it gives nothing back (the first attempt's charge stands
        for a message that attempt may have queued)."""
        if not charge.allowed or charge.repeated:
            return
        update = {
            "TableName": self._table,
            "Key": quota_key(user_id),
            "UpdateExpression": "ADD #h :minus, #d :minus",
            "ConditionExpression": "attribute_exists(#pk)",
            "ExpressionAttributeNames": {
                "#h": _hour_name(charge.at),
                "#d": _day_name(charge.at),
                "#pk": PARTITION_KEY,
            },
            "ExpressionAttributeValues": {":minus": {"N": str(-charge.emails)}},
        }
        if charge.charge_id is None:
            self._db.update_item(**update)
            return
        marker = {"TableName": self._table, "Key": marker_key(user_id, charge.charge_id)}
        self._db.transact_write_items(TransactItems=[{"Delete": marker}, {"Update": update}])
