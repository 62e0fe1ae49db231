"""The per-user send quota, performed: bursts at the boundary, in parallel, against the real table."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from mailer.quota import SendQuota

from tests.services.mailer.support import MailEnv, claims_event

SEND = "POST /mail/messages"
TEAM = [f"user_m{i}" for i in range(5)]


@pytest.fixture(autouse=True)
def team(mail_env: MailEnv) -> None:
    mail_env.add_user("user_alice", "alice@example.org", ("p_demo",), name="Alice")
    mail_env.add_user("user_bob", "bob@example.org", ("p_demo",))
    for user in TEAM:
        mail_env.add_user(user, f"{user}@example.org", ("p_demo",))


def send(mail_env: MailEnv, api: Any, recipients: list[str], sub: str = "user_alice") -> dict[str, Any]:
    event = claims_event(SEND, sub=sub, body={"recipients": recipients, "subject": "s", "body": "b"})
    return dict(api.handle(event))


class OneCallAtATime:
    """The real DynamoDB client, one API call at a time.

    DynamoDB applies the writes to one item one after the other, each condition checked against
    the result of the previous write. The local emulator evaluates concurrent conditional updates
    of one item without that isolation (it accepted 11 of the 10 possible charges here), so the
    test restores DynamoDB's guarantee per call, and only per call: a quota that read the counter
    and wrote it back in two calls would still interleave with the other requests, and fail.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()
        self.exceptions = client.exceptions

    def update_item(self, **kwargs: Any) -> Any:
        with self._lock:
            return self._client.update_item(**kwargs)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(**kwargs: Any) -> Any:
            with self._lock:
                return attribute(**kwargs)

        return call


def test_parallel_requests_at_the_boundary_accept_exactly_the_quota(mail_env: MailEnv) -> None:
    """The reviewed attack, scaled down: 60 simultaneous requests of 5 recipients against an hourly
    quota of 50 e-mails: exactly 10 are accepted (50 e-mails), the other 50 get 429."""
    quota = SendQuota(OneCallAtATime(mail_env.dynamodb), mail_env.resources.quotas_table, 50, 1000)
    api = mail_env.api(quota=quota)
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: send(mail_env, api, TEAM), range(60)))
    statuses = [a["statusCode"] for a in answers]
    assert statuses.count(202) == 10 and statuses.count(429) == 50
    assert mail_env.queue_depth(mail_env.resources.queue_url) == 10
    refused = next(a for a in answers if a["statusCode"] == 429)
    retry_after = int(refused["headers"]["retry-after"])
    assert 0 < retry_after <= 3600
    assert json.loads(refused["body"])["reason"].startswith("hourly quota of 50 e-mails reached")
    # Another user's quota is their own.
    assert send(mail_env, api, ["user_alice"], sub="user_bob")["statusCode"] == 202


def test_the_daily_quota_holds_across_hours(mail_env: MailEnv) -> None:
    quota = mail_env.quota(per_hour=4, per_day=6)
    hour = 1_800_000_000 - 1_800_000_000 % 86400 + 3600  # 01:00 UTC on some day
    assert quota.charge("user_x", 4, now=hour).allowed
    refused = quota.charge("user_x", 1, now=hour + 10)
    assert not refused.allowed and refused.retry_after == 3600 - 10 and "hourly" in refused.reason
    assert quota.charge("user_x", 2, now=hour + 3600).allowed  # next hour: 6 today
    refused = quota.charge("user_x", 1, now=hour + 7200)
    assert not refused.allowed and "daily quota of 6" in refused.reason
    assert refused.retry_after == 86400 - 3 * 3600
    assert quota.charge("user_x", 4, now=hour + 86400).allowed  # a new day


def test_a_message_counts_each_recipient_and_too_many_is_a_429_with_a_reason(mail_env: MailEnv) -> None:
    api = mail_env.api(quota=mail_env.quota(per_hour=3, per_day=10))
    answer = send(mail_env, api, TEAM[:4])
    assert answer["statusCode"] == 429
    assert "4 recipients exceed the hourly quota of 3" in json.loads(answer["body"])["reason"]
    assert send(mail_env, api, TEAM[:3])["statusCode"] == 202
    assert send(mail_env, api, TEAM[:1])["statusCode"] == 429


def test_a_publish_failure_gives_the_quota_back(mail_env: MailEnv) -> None:
    class DownSqs:
        def send_message(self, **kwargs: Any) -> Any:
            raise ConnectionError("queue unreachable")

    quota = mail_env.quota(per_hour=5, per_day=5)
    assert (
        mail_env.api(sqs=DownSqs(), quota=quota).handle(
            claims_event(SEND, body={"recipients": TEAM, "subject": "s", "body": "b"})
        )["statusCode"]
        == 503
    )
    assert send(mail_env, mail_env.api(quota=quota), TEAM)["statusCode"] == 202


def test_quota_refusals_and_accepted_volume_are_published_as_metrics(
    mail_env: MailEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    api = mail_env.api(quota=mail_env.quota(per_hour=5, per_day=5))
    assert send(mail_env, api, TEAM)["statusCode"] == 202
    assert send(mail_env, api, TEAM[:1])["statusCode"] == 429
    logs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    metrics = {
        m["Name"]: line[m["Name"]]
        for line in logs
        if "_aws" in line
        for directive in line["_aws"]["CloudWatchMetrics"]
        for m in directive["Metrics"]
    }
    assert metrics == {"EmailsAccepted": 5, "QuotaRefusals": 1}
    emf = next(line for line in logs if "_aws" in line)
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Motion/Mail"
    assert emf["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["FunctionName"]]
    assert isinstance(emf["FunctionName"], str)


def keyed(mail_env: MailEnv, api: Any, key: str, recipients: list[str] = TEAM) -> dict[str, Any]:
    event = claims_event(SEND, sub="user_alice", body={"recipients": recipients, "subject": "s", "body": "b"})
    event["headers"] = {**(event.get("headers") or {}), "idempotency-key": key}
    return dict(api.handle(event))


def test_retries_of_a_keyed_request_are_charged_once(
    mail_env: MailEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    # A client that times out and retries with the same Idempotency-Key sends one message: the
    # worker stores it once, and the quota counts it once. Quota 5, one request of 5 recipients
    # retried 4 times: all 202 with one id; a new request is then refused (5 of 5 used), and a
    # request under another key is a new message, refused too.
    api = mail_env.api(quota=mail_env.quota(per_hour=5, per_day=5))
    answers = [keyed(mail_env, api, "order-7") for _ in range(5)]
    assert [a["statusCode"] for a in answers] == [202] * 5
    assert len({json.loads(a["body"])["id"] for a in answers}) == 1
    assert send(mail_env, api, TEAM[:1])["statusCode"] == 429
    assert keyed(mail_env, api, "order-8", TEAM[:1])["statusCode"] == 429
    logs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    accepted = [line["EmailsAccepted"] for line in logs if "EmailsAccepted" in line]
    assert accepted == [5, 0, 0, 0, 0]


def test_a_keyed_request_refunded_after_a_publish_failure_is_charged_on_its_retry(mail_env: MailEnv) -> None:
    class DownSqs:
        def send_message(self, **kwargs: Any) -> Any:
            raise ConnectionError("queue unreachable")

    quota = mail_env.quota(per_hour=5, per_day=5)
    assert keyed(mail_env, mail_env.api(sqs=DownSqs(), quota=quota), "order-9")["statusCode"] == 503
    api = mail_env.api(quota=quota)
    # The refund took the marker with it: the retry is charged (and accepted), then holds the quota.
    assert keyed(mail_env, api, "order-9")["statusCode"] == 202
    assert send(mail_env, api, TEAM[:1])["statusCode"] == 429


def test_parallel_retries_of_one_keyed_request_charge_it_once(mail_env: MailEnv) -> None:
    quota = SendQuota(OneCallAtATime(mail_env.dynamodb), mail_env.resources.quotas_table, 10, 100)
    api = mail_env.api(quota=quota)
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: keyed(mail_env, api, "burst")["statusCode"], range(16)))
    assert codes == [202] * 16
    # 5 of 10 used by the one message: another 5 fit, a sixth does not.
    assert send(mail_env, api, TEAM)["statusCode"] == 202
    assert send(mail_env, api, TEAM[:1])["statusCode"] == 429
