"""Helpers for the mailing service tests: the SES outbox, per-test resources, event builders."""

from __future__ import annotations

import json
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

from mailer.api import MailApi
from mailer.directory import UserDirectory
from mailer.message import MailMessage, Recipient
from mailer.quota import SendQuota
from mailer.settings import Settings
from mailer.store import MessageStore
from mailer.validation import SendRequest
from mailer.worker import Worker

from devstack.mail_resources import MailResources


@dataclass
class Outbox:
    """The e-mails the local SES accepted, read from moto's model dump (`/moto-api/data.json`)."""

    endpoint: str

    def sent(self, subject_token: str) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.endpoint}/moto-api/data.json", timeout=10) as resp:
            data = json.loads(resp.read())
        messages = data.get("ses", {}).get("Message", [])
        return [m for m in messages if subject_token in m["subject"]]


class Clients:
    """boto3 clients built once and shared (they are thread-safe); quacks like a boto3 Session.

    Building a client costs ~20 ms, which, per test, would dominate the suite's run time.
    """

    def __init__(self, session: Any) -> None:
        self._session = session
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._session.client(service)
        return self._clients[service]


@dataclass
class MailEnv:
    resources: MailResources
    session: Clients
    token: str  # unique per test; put it in subjects to find this test's e-mails

    @property
    def sqs(self) -> Any:
        return self.session.client("sqs")

    @property
    def dynamodb(self) -> Any:
        return self.session.client("dynamodb")

    def settings(self, **overrides: Any) -> Settings:
        env = {**self.resources.env(), **{k: str(v) for k, v in overrides.items()}}
        return Settings.from_env("worker", env)

    def store(self) -> MessageStore:
        return MessageStore(self.dynamodb, self.resources.table_name)

    def worker(self, ses: Any = None, store: MessageStore | None = None, **kwargs: Any) -> Worker:
        return Worker(self.settings(), store or self.store(), ses or self.session.client("sesv2"), **kwargs)

    def directory(self) -> UserDirectory:
        return UserDirectory(self.dynamodb, self.resources.users_table)

    def add_user(
        self,
        user_id: str,
        email: str | None,
        projects: tuple[str, ...] = ("p_demo",),
        name: str | None = None,
    ) -> None:
        """A user as Clerk's webhooks would have put them in the directory."""
        directory = self.directory()
        directory.put_profile(user_id, email, name)
        for project in projects:
            directory.add_membership(user_id, project)

    def quota(self, per_hour: int = 100, per_day: int = 300) -> SendQuota:
        return SendQuota(self.dynamodb, self.resources.quotas_table, per_hour, per_day)

    def api(self, sqs: Any = None, quota: SendQuota | None = None, **overrides: Any) -> MailApi:
        return MailApi(
            self.settings(**overrides), self.store(), sqs or self.sqs, self.directory(), quota or self.quota()
        )

    def message(
        self, sender: str = "user_alice", recipients: tuple[str, ...] = ("bob@example.org",), **kwargs: Any
    ) -> MailMessage:
        """A message as the API accepts it; each recipient address stands for user `u_<local part>`."""
        request = SendRequest(
            recipients=tuple(f"u_{r.partition('@')[0]}" for r in recipients),
            subject=kwargs.pop("subject", f"hello {self.token}"),
            body=kwargs.pop("body", "Hi Bob,\nsee you at the review.\n"),
        )
        return MailMessage.accept(
            request,
            sender_id=sender,
            sender_email=kwargs.pop("sender_email", None),
            recipients=tuple(Recipient(f"u_{r.partition('@')[0]}", r) for r in recipients),
            **kwargs,
        )

    def queue_depth(self, queue_url: str) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )


def sqs_record(body: str, message_id: str | None = None, receive_count: int = 1) -> dict[str, Any]:
    """An SQS record as Lambda delivers it (only what a handler may look at)."""
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": uuid.uuid4().hex,
        "body": body,
        "attributes": {"ApproximateReceiveCount": str(receive_count), "SentTimestamp": "1700000000000"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:test",
        "awsRegion": "us-east-1",
    }


def claims_event(
    route: str,
    sub: str | None = "user_alice",
    body: Any = None,
    query: dict[str, str] | None = None,
    **claims: str,
) -> dict[str, Any]:
    """A payload 2.0 event as the JWT authorizer would pass it to the handler."""
    method, _, path = route.partition(" ")
    jwt_claims = {"iss": "https://clerk.motion.local", **claims}
    if sub is not None:
        jwt_claims["sub"] = sub
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route,
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {
            "http": {"method": method, "path": path},
            "authorizer": {"jwt": {"claims": jwt_claims, "scopes": None}},
        },
        "isBase64Encoded": False,
    }
    if body is not None:
        event["body"] = body if isinstance(body, str) else json.dumps(body)
    if query:
        event["queryStringParameters"] = query
    return event
