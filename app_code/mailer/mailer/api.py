"""The mail API Lambda, behind an API Gateway HTTP API (payload format 2.0) with a JWT authorizer.

The authorizer has already verified the token; this function uses one claim it passes on
(`requestContext.authorizer.jwt.claims`): `sub`, the caller's user id. Nothing else in the token is
trusted for mail: the caller's address (Reply-To) and name, the recipients' addresses and who shares
a project with whom all come from the user directory (`mailer.directory`), which Clerk's webhooks
keep. Received mail is found by `sub` too, so a token whose `email` claim names someone else's
address gets nothing of theirs.

- `POST /mail/messages` `{"recipients": ["<user id>", ...], "subject": "...", "body": "..."}`:
  validate; every recipient must be a directory user sharing a project with the caller (else 403
  naming each refused recipient); assign a message id, publish the event (with the addresses the
  directory holds) to SQS, answer 202 `{"id": ...}`. The mailer stores and sends it, one e-mail per
  recipient. Each recipient counts against the sender's quota (`mailer.quota`, per hour and per
  day); a request that would exceed it gets 429 with Retry-After and is not queued.
  With an `Idempotency-Key` header the id is derived from (caller, key) instead of drawn at random,
  so a retried request yields the same id, and the mailer, idempotent on the id, sends one e-mail.
- `GET /mail/messages?limit=20&cursor=...`: the caller's sent and received messages, newest first,
  and `next_cursor` (null on the last page).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from mailer import API_ROUTES, SEND_ROUTE
from mailer.directory import DirectoryUser, UserDirectory
from mailer.logs import get_logger, log
from mailer.message import MAX_USER_ID_CHARS, MailMessage, Recipient, keyed_message_id
from mailer.metrics import EMAILS_ACCEPTED, QUOTA_REFUSALS, emf
from mailer.quota import SendQuota
from mailer.settings import Settings
from mailer.store import MessageStore
from mailer.validation import (
    Problem,
    SendRequest,
    ValidationError,
    encode_cursor,
    parse_idempotency_key,
    parse_list_query,
    parse_send_request,
)

ROUTES = API_ROUTES


def response(status: int, document: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", **(headers or {})},
        "body": json.dumps(document, separators=(",", ":"), ensure_ascii=False),
        "isBase64Encoded": False,
    }


def _route(event: dict[str, Any]) -> str:
    route = event.get("routeKey")
    if isinstance(route, str) and route != "$default":
        return route
    # A `$default` route still tells us the method and path.
    http = (event.get("requestContext") or {}).get("http") or {}
    return f"{http.get('method', '')} {event.get('rawPath', '')}"


def _claims(event: dict[str, Any]) -> dict[str, Any] | None:
    context = event.get("requestContext")
    authorizer = context.get("authorizer") if isinstance(context, dict) else None
    jwt = authorizer.get("jwt") if isinstance(authorizer, dict) else None
    claims = jwt.get("claims") if isinstance(jwt, dict) else None
    return claims if isinstance(claims, dict) else None


def _body(event: dict[str, Any]) -> str | None:
    body = event.get("body")
    if body is None or not event.get("isBase64Encoded"):
        return body if isinstance(body, str) else None
    import base64
    import binascii

    try:
        return base64.b64decode(body, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationError([Problem("", "body is not valid base64-encoded UTF-8")]) from None


class Forbidden(Exception):
    """The request is well-formed but the caller may not send it; `problems` say why."""

    def __init__(self, message: str, problems: list[Problem]) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems


class MailApi:
    def __init__(
        self,
        settings: Settings,
        store: MessageStore,
        sqs: Any,
        directory: UserDirectory,
        quota: SendQuota,
        logger: logging.Logger | None = None,
    ) -> None:
        if settings.mail_queue_url is None:
            raise ValueError("the mail API needs MAIL_QUEUE_URL")
        self._settings = settings
        self._queue_url = settings.mail_queue_url
        self._store = store
        self._directory = directory
        self._quota = quota
        self._sqs = sqs
        self._log = logger or get_logger(settings.log_level)

    def handle(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        route = _route(event)
        if route not in ROUTES:
            return response(404, {"message": "Not Found"})
        claims = _claims(event) or {}
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub.strip() or len(sub) > MAX_USER_ID_CHARS:
            # Only reachable if the route was deployed without the authorizer (or the identity
            # provider issues ids the mailer would refuse): refuse, never guess.
            return response(401, {"message": "Unauthorized"})
        request_id = getattr(context, "aws_request_id", None)
        try:
            if route == SEND_ROUTE:
                return self._send(event, sub, request_id)
            return self._list(event, sub, request_id)
        except ValidationError as err:
            return response(
                400, {"message": "invalid request", "problems": [p.as_dict() for p in err.problems]}
            )
        except Forbidden as err:
            log(
                self._log,
                logging.WARNING,
                "send refused",
                sender_id=sub,
                reason=err.message,
                refused=[p.field for p in err.problems],
                aws_request_id=request_id,
            )
            return response(403, {"message": err.message, "problems": [p.as_dict() for p in err.problems]})

    def _resolve(self, sub: str, request: SendRequest) -> tuple[DirectoryUser, tuple[Recipient, ...]]:
        """The sender and the recipients as the directory knows them, or Forbidden with every reason.

        An unknown user id and a user who shares no project with the sender get the same answer,
        so the API cannot be used to find out who exists.
        """
        users = self._directory.get_many([sub, *request.recipients])
        sender = users.get(sub)
        if sender is None or not sender.mailable:
            raise Forbidden(
                "your account is not in the mail directory yet",
                [Problem("", "the sender has no primary e-mail address in the directory")],
            )
        refused: list[Problem] = []
        recipients: list[Recipient] = []
        for index, user_id in enumerate(request.recipients):
            user = users.get(user_id)
            if user is None or user.email is None or not (user.projects & sender.projects):
                refused.append(Problem(f"recipients[{index}]", "not a user who shares a project with you"))
            else:
                recipients.append(Recipient(user.user_id, user.email))
        if refused:
            raise Forbidden("some recipients cannot be mailed", refused)
        return sender, tuple(recipients)

    def _send(self, event: dict[str, Any], sub: str, request_id: str | None) -> dict[str, Any]:
        idempotency_key = parse_idempotency_key(event.get("headers"))
        request = parse_send_request(_body(event), self._settings.max_recipients)
        try:
            sender, recipients = self._resolve(sub, request)
        except Forbidden:
            raise
        except Exception:
            log(self._log, logging.ERROR, "directory lookup failed", exc_info=True, sender_id=sub)
            return response(503, {"message": "the user directory is unavailable; try again"})
        try:
            # A keyed request is charged once however often it is retried (mailer.quota).
            charge_id = keyed_message_id(sub, idempotency_key) if idempotency_key is not None else None
            charge = self._quota.charge(sub, len(recipients), charge_id=charge_id)
        except Exception:
            log(self._log, logging.ERROR, "quota check failed", exc_info=True, sender_id=sub)
            return response(503, {"message": "the send quota cannot be checked right now; try again"})
        if not charge.allowed:
            log(
                self._log,
                logging.WARNING,
                "quota refused",
                sender_id=sub,
                recipients=len(recipients),
                reason=charge.reason,
                retry_after=charge.retry_after,
                aws_request_id=request_id,
                **emf({QUOTA_REFUSALS: 1}),
            )
            return response(
                429,
                {
                    "message": "send quota exceeded",
                    "reason": charge.reason,
                    "retry_after": charge.retry_after,
                },
                {"retry-after": str(charge.retry_after)},
            )
        message = MailMessage.accept(
            request,
            sender_id=sub,
            sender_email=sender.email,
            sender_name=sender.display_name,
            recipients=recipients,
            idempotency_key=idempotency_key,
        )
        fields: dict[str, Any] = {
            "message_id": message.message_id,
            "sender_id": sub,
            "aws_request_id": request_id,
            "keyed": idempotency_key is not None,
            "repeated": charge.repeated,
        }
        try:
            self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=message.to_event())
        except Exception:
            log(self._log, logging.ERROR, "publishing failed", exc_info=True, **fields)
            try:
                # Not accepted, so not counted; if the refund fails the user loses a little quota.
                self._quota.refund(sub, charge)
            except Exception:
                log(self._log, logging.WARNING, "quota refund failed", exc_info=True, **fields)
            return response(503, {"message": "the message could not be queued; try again"})
        log(
            self._log,
            logging.INFO,
            "queued",
            recipients=len(message.recipients),
            **fields,
            # A retry of an accepted keyed request adds no e-mails (the worker sends it once).
            **emf({EMAILS_ACCEPTED: 0 if charge.repeated else len(message.recipients)}),
        )
        return response(202, {"id": message.message_id, "status": "queued", "created_at": message.created_at})

    def _list(self, event: dict[str, Any], sub: str, request_id: str | None) -> dict[str, Any]:
        query = parse_list_query(event.get("queryStringParameters"))
        try:
            page = self._store.list_mailbox(sub, query.limit, query.before)
        except Exception:
            log(
                self._log,
                logging.ERROR,
                "listing failed",
                exc_info=True,
                user_id=sub,
                aws_request_id=request_id,
            )
            return response(503, {"message": "messages are unavailable right now; try again"})
        return response(
            200,
            {
                "messages": page.messages,
                "next_cursor": encode_cursor(page.next_before) if page.next_before else None,
            },
        )


_lock = threading.Lock()
_api: MailApi | None = None


def _default_api() -> MailApi:
    global _api
    with _lock:
        if _api is None:
            from mailer import aws

            settings = Settings.from_env("api")
            # Both required for the api role (Settings.from_env refuses to build without them).
            assert settings.users_table is not None and settings.quotas_table is not None
            dynamodb = aws.client("dynamodb")
            _api = MailApi(
                settings,
                MessageStore(dynamodb, settings.messages_table),
                aws.client("sqs"),
                UserDirectory(dynamodb, settings.users_table),
                SendQuota(dynamodb, settings.quotas_table, settings.quota_per_hour, settings.quota_per_day),
            )
        return _api


def reset() -> None:
    """Forget the API built from the environment (tests and local runs change the environment)."""
    global _api
    with _lock:
        _api = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _default_api().handle(event, context)
