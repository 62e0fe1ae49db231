"""The environment contract of both mailer Lambdas (see docs/service-settings.md, "Mailer").

Settings are read once per process and validated up front, so a misconfigured function fails on
its first invocation with one message naming every bad variable instead of half-working.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Role = Literal["api", "worker", "webhook", "events"]

# SES v2 SendEmail accepts at most 50 destinations per message, and we send one e-mail per message
# (that is what makes "one message id, one e-mail" checkable), so the cap cannot go higher.
SES_MAX_DESTINATIONS = 50
DEFAULT_MAX_RECIPIENTS = 50
# Per-user e-mails per clock hour / UTC day (the stack sets them: mailQuotaPerHour, mailQuotaPerDay).
DEFAULT_QUOTA_PER_HOUR = 100
DEFAULT_QUOTA_PER_DAY = 300
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

_SENDER = re.compile(r"(?:[^<>\r\n]*<[^<>\s]+@[^<>\s]+>|[^<>\s]+@[^<>\s]+)")


class SettingsError(ValueError):
    """A required variable is missing or a value is invalid; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    messages_table: str  # "" for the webhook, which never touches messages
    users_table: str | None = None
    webhook_secret_arn: str | None = None
    quotas_table: str | None = None
    quota_per_hour: int = DEFAULT_QUOTA_PER_HOUR
    quota_per_day: int = DEFAULT_QUOTA_PER_DAY
    mail_queue_url: str | None = None
    sender_address: str | None = None
    ses_configuration_set: str | None = None
    max_recipients: int = DEFAULT_MAX_RECIPIENTS
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, role: Role, environ: Mapping[str, str] | None = None) -> Settings:
        """The role's settings; one SettingsError naming every missing or invalid variable."""
        env = os.environ if environ is None else environ
        problems: list[str] = []

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def required(name: str) -> str | None:
            value = get(name)
            if value is None:
                problems.append(f"{name} must be set for the mail {role}")
            return value

        table = required("MESSAGES_TABLE") if role != "webhook" else get("MESSAGES_TABLE")
        # The directory: the API resolves recipients in it, the webhook keeps it.
        users_table = required("USERS_TABLE") if role in ("api", "webhook") else get("USERS_TABLE")
        # The ARN of the Svix signing secret, never the secret itself (it is read at runtime).
        secret_arn = required("WEBHOOK_SECRET_ARN") if role == "webhook" else get("WEBHOOK_SECRET_ARN")
        quotas_table = required("QUOTAS_TABLE") if role == "api" else get("QUOTAS_TABLE")
        quotas: dict[str, int] = {
            "QUOTA_PER_HOUR": DEFAULT_QUOTA_PER_HOUR,
            "QUOTA_PER_DAY": DEFAULT_QUOTA_PER_DAY,
        }
        for name in quotas:
            raw = get(name)
            if raw is None:
                continue
            if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 100_000:
                problems.append(f"{name} must be an integer from 1 to 100000, got {raw!r}")
            else:
                quotas[name] = int(raw)
        if quotas["QUOTA_PER_HOUR"] > quotas["QUOTA_PER_DAY"]:
            problems.append("QUOTA_PER_HOUR must not exceed QUOTA_PER_DAY")
        queue_url = required("MAIL_QUEUE_URL") if role == "api" else get("MAIL_QUEUE_URL")
        sender = required("SENDER_ADDRESS") if role == "worker" else get("SENDER_ADDRESS")
        if sender is not None and not _SENDER.fullmatch(sender):
            problems.append(
                f"SENDER_ADDRESS must be 'name@domain' or 'Display Name <name@domain>', got {sender!r}"
            )

        raw_max = get("MAX_RECIPIENTS")
        max_recipients = DEFAULT_MAX_RECIPIENTS
        if raw_max is not None:
            try:
                max_recipients = int(raw_max)
            except ValueError:
                problems.append(f"MAX_RECIPIENTS must be an integer, got {raw_max!r}")
            else:
                if not 1 <= max_recipients <= SES_MAX_DESTINATIONS:
                    problems.append(
                        f"MAX_RECIPIENTS must be between 1 and {SES_MAX_DESTINATIONS} "
                        f"(SES destinations per e-mail), got {max_recipients}"
                    )

        log_level = (get("LOG_LEVEL") or "INFO").upper()
        if log_level not in LOG_LEVELS:
            problems.append(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")

        # Everything at once, so one failed deploy shows every variable to fix.
        if problems:
            raise SettingsError(f"invalid mail {role} settings: " + "; ".join(problems))
        return cls(
            messages_table=table or "",
            users_table=users_table,
            webhook_secret_arn=secret_arn,
            quotas_table=quotas_table,
            quota_per_hour=quotas["QUOTA_PER_HOUR"],
            quota_per_day=quotas["QUOTA_PER_DAY"],
            mail_queue_url=queue_url,
            sender_address=sender,
            ses_configuration_set=get("SES_CONFIGURATION_SET"),
            max_recipients=max_recipients,
            log_level=log_level,
        )
