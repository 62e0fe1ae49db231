"""Input checks shared by the API (requests) and the worker (events): one definition of "valid".

Every check reports *what* is wrong and *where* (`field`), so a 400 tells the caller how to fix the
request, and a malformed event's log line tells an operator why it went to the dead-letter queue.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailer import IDEMPOTENCY_KEY_HEADER

MAX_SUBJECT_CHARS = 200
# Each participant's mailbox entry carries the body: 10,000 characters (<= 40 KB of UTF-8) keep an
# item far below DynamoDB's 400 KB and a 25-item batch write near 1 MB; the event stays far below
# SQS's message size limit.
MAX_BODY_CHARS = 10_000
MAX_ADDRESS_CHARS = 254
MAX_LOCAL_PART_CHARS = 64
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
_IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,128}")

# ASCII only: SES needs internationalised domains in punycode, and a non-ASCII local part needs
# SMTPUTF8, which we do not promise. Quoted local parts and display names are refused on purpose.
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TLD = r"(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})"
_ADDRESS = re.compile(rf"{_LOCAL}@(?:{_LABEL}\.)+{_TLD}")
# Subjects become a header line: no control characters at all, so no header injection. Bodies may
# hold line breaks and tabs, nothing else below U+0020.
# Lone surrogates and U+FFFE/U+FFFF cannot be encoded for (or are refused by) SQS, so they would
# turn a valid-looking request into a failed publish.
_SUBJECT_FORBIDDEN = re.compile("[\x00-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
_BODY_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")

# Always used with fullmatch, and [0-9] rather than \d, which would accept any Unicode digit.
MESSAGE_ID = re.compile(r"[0-9a-f]{32}")
CREATED_AT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
MAILBOX_SORT_KEY = re.compile(CREATED_AT.pattern + "#" + MESSAGE_ID.pattern)
_CURSOR_PREFIX = "v1:"


@dataclass(frozen=True, slots=True)
class Problem:
    field: str
    problem: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "problem": self.problem}


class ValidationError(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p.field or 'request'}: {p.problem}" for p in problems))


@dataclass(frozen=True, slots=True)
class SendRequest:
    recipients: tuple[str, ...]
    subject: str
    body: str


def normalize_address(value: str) -> str | None:
    """The canonical form of an address, or None if it is not one we can send to.

    Lower-cased as a whole: mailbox partitions are keyed by address, and real mail systems treat
    local parts case-insensitively, so `Bob@x.org` and `bob@x.org` must be one mailbox.
    """
    address = value.strip()
    if len(address) > MAX_ADDRESS_CHARS or not _ADDRESS.fullmatch(address):
        return None
    if len(address.rpartition("@")[0]) > MAX_LOCAL_PART_CHARS:
        return None
    return address.lower()


# Clerk's user ids look like `user_2abc...`; other printable ASCII without spaces or `@` is allowed
# too (test and local ids), but never an address: recipients are Motion users, not mailboxes.
USER_ID = re.compile(r"[A-Za-z0-9_.:|-]{1,255}")


def check_recipients(value: Any, max_recipients: int, problems: list[Problem]) -> tuple[str, ...]:
    """The recipients' user ids, in order, each once. Addresses are refused: the API resolves
    users in its directory, so a request can never name a mailbox outside Motion."""
    if value is None:
        problems.append(Problem("recipients", "required"))
        return ()
    if not isinstance(value, list):
        problems.append(Problem("recipients", "must be a list of user ids"))
        return ()
    if not value:
        problems.append(Problem("recipients", "at least one recipient is required"))
        return ()
    if len(value) > max_recipients:
        problems.append(
            Problem("recipients", f"at most {max_recipients} recipients are allowed, got {len(value)}")
        )
        return ()
    seen: dict[str, None] = {}
    for index, item in enumerate(value):
        field = f"recipients[{index}]"
        if not isinstance(item, str):
            problems.append(Problem(field, "must be a string"))
            continue
        if "@" in item:
            problems.append(Problem(field, "must be the user id of a Motion user, not an e-mail address"))
            continue
        if not USER_ID.fullmatch(item):
            problems.append(Problem(field, f"not a user id: {item[:80]!r}"))
            continue
        seen.setdefault(item, None)
    return tuple(seen)


def check_subject(value: Any, problems: list[Problem]) -> str:
    if value is None:
        problems.append(Problem("subject", "required"))
        return ""
    if not isinstance(value, str):
        problems.append(Problem("subject", "must be a string"))
        return ""
    subject = value.strip()
    if not subject:
        problems.append(Problem("subject", "must not be empty"))
    elif len(subject) > MAX_SUBJECT_CHARS:
        problems.append(
            Problem("subject", f"must be at most {MAX_SUBJECT_CHARS} characters, got {len(subject)}")
        )
    elif _SUBJECT_FORBIDDEN.search(subject):
        problems.append(
            Problem("subject", "must not contain line breaks, control characters or unpaired surrogates")
        )
    return subject


def check_body(value: Any, problems: list[Problem]) -> str:
    if value is None:
        problems.append(Problem("body", "required"))
        return ""
    if not isinstance(value, str):
        problems.append(Problem("body", "must be a string"))
        return ""
    if not value.strip():
        problems.append(Problem("body", "must not be empty"))
    elif len(value) > MAX_BODY_CHARS:
        problems.append(Problem("body", f"must be at most {MAX_BODY_CHARS} characters, got {len(value)}"))
    elif _BODY_FORBIDDEN.search(value):
        problems.append(
            Problem(
                "body",
                "must not contain control characters (other than tab and line breaks) or unpaired surrogates",
            )
        )
    return value


_SEND_FIELDS = ("recipients", "subject", "body")


def parse_send_request(raw: str | None, max_recipients: int) -> SendRequest:
    if raw is None or not raw.strip():
        raise ValidationError([Problem("", "a JSON body with recipients, subject and body is required")])
    try:
        document = json.loads(raw)
    except ValueError as err:
        raise ValidationError([Problem("", f"body is not valid JSON: {err}")]) from None
    if not isinstance(document, dict):
        raise ValidationError([Problem("", "body must be a JSON object")])
    problems = [Problem(str(key), "unexpected field") for key in document if key not in _SEND_FIELDS]
    recipients = check_recipients(document.get("recipients"), max_recipients, problems)
    subject = check_subject(document.get("subject"), problems)
    body = check_body(document.get("body"), problems)
    if problems:
        raise ValidationError(problems)
    return SendRequest(recipients=recipients, subject=subject, body=body)


def parse_idempotency_key(headers: Any) -> str | None:
    """The request's `Idempotency-Key` header, None without one; 1 to 128 printable ASCII characters."""
    value = headers.get(IDEMPOTENCY_KEY_HEADER) if isinstance(headers, Mapping) else None
    if value is None:
        return None
    if not isinstance(value, str) or not _IDEMPOTENCY_KEY.fullmatch(value):
        raise ValidationError([Problem("Idempotency-Key", "must be 1 to 128 printable ASCII characters")])
    return value


def encode_cursor(sort_key: str) -> str:
    return base64.urlsafe_b64encode((_CURSOR_PREFIX + sort_key).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str | None:
    """The sort key a cursor points past, or None if it is not one of ours.

    Cursors are not signed: one only narrows a query over the caller's own partitions, so a forged
    cursor can skip or repeat the caller's own messages and nothing else.
    """
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not text.startswith(_CURSOR_PREFIX):
        return None
    sort_key = text[len(_CURSOR_PREFIX) :]
    return sort_key if MAILBOX_SORT_KEY.fullmatch(sort_key) else None


@dataclass(frozen=True, slots=True)
class ListQuery:
    limit: int
    before: str | None


def parse_list_query(params: Mapping[str, str] | None) -> ListQuery:
    params = params or {}
    problems = [
        Problem(str(key), "unexpected query parameter") for key in params if key not in ("limit", "cursor")
    ]
    limit = DEFAULT_PAGE_SIZE
    raw_limit = params.get("limit")
    if raw_limit is not None:
        if re.fullmatch(r"[0-9]{1,3}", raw_limit) and 1 <= int(raw_limit) <= MAX_PAGE_SIZE:
            limit = int(raw_limit)
        else:
            problems.append(Problem("limit", f"must be an integer from 1 to {MAX_PAGE_SIZE}"))
    before = None
    raw_cursor = params.get("cursor")
    if raw_cursor is not None:
        before = decode_cursor(raw_cursor)
        if before is None:
            problems.append(Problem("cursor", "not a cursor returned by this API"))
    if problems:
        raise ValidationError(problems)
    return ListQuery(limit=limit, before=before)
