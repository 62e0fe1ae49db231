"""`make preflight STACK=<stack>`: what still stands between a stack and a working `pulumi up`.

Run it before the first `pulumi up` of a stack and again after it. It lists, and exits 1 while any
remain:

- config values that are still placeholders (hosts under the names RFC 2606 reserves for examples,
  ARNs in AWS's documentation account, Clerk keys for an example host) or that the loader rejects;
- secrets the program needs that neither the stack file (`secure:`) nor the environment provides;
- DNS records the stack needs published that DNS does not answer yet (with `--outputs`, the JSON of
  `pulumi stack output --json`; the program exports every record in `dnsRecords`, so this list and
  the program cannot drift apart; with `motion:hostedZoneId` the program writes them in Route 53
  and the list is empty). Without outputs, those records are not known yet (the load
  balancer's name and SES's DKIM tokens exist only after `pulumi up`): they are named as the next
  step, and do not fail the run;
- an SES account in the stack's region (`aws:region`) that cannot send (`GetAccount` says sending is
  disabled or the account is shut down), asked with the credentials boto3 finds, as `pulumi up`
  would use them. Notes that do not fail the run: an account still in the SES sandbox (it mails
  verified addresses only, within the sandbox's quota) and how to ask for production access, an
  account on probation, or that the account could not be asked at all (no credentials, access
  denied, endpoint down). `AWS_ENDPOINT_URL_SESV2` points the check elsewhere (boto3 reads it),
  `--skip-ses` leaves it out (offline).

Exit status: 0 nothing left, 1 something left, 2 usage error (no such stack file, unreadable outputs).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.config.keys import PROJECT, PROVIDER_SECRETS
from components.config.loader import ConfigError
from stacktools.stack_files import engine_config, load_engine_config
from stacktools.stack_schema import StackConfigError, load_yaml

ROOT = Path(__file__).resolve().parents[1]

# Names reserved for documentation and testing (RFC 2606 section 2 and 3, RFC 6761 section 6.4): no
# real host lives there. `localhost` is left out: it is a real origin in dev (the Vite dev server).
RESERVED_NAMES = ("example", "test", "invalid", "example.com", "example.net", "example.org")
# The account IDs AWS uses in its documentation (e.g. the IAM User Guide's examples).
DOCUMENTATION_ACCOUNTS = ("123456789012", "111122223333", "444455556666")
_HOST = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z][a-z0-9-]*", re.IGNORECASE)
_ARN_ACCOUNT = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:(\d{12}):")

Resolver = Callable[[str, str], list[str]]


# Sections that list what to know or do without failing the run.
NOT_BLOCKING = ("next", "notes")


@dataclass(frozen=True)
class Finding:
    section: str  # "placeholders" | "config" | "secrets" | "dns" | "ses" | "next" | "notes"
    text: str

    @property
    def blocking(self) -> bool:
        return self.section not in NOT_BLOCKING


def placeholder_reason(value: str) -> str | None:
    """Why a config value is an example rather than a real one, or None."""
    account = _ARN_ACCOUNT.match(value)
    if account and account.group(1) in DOCUMENTATION_ACCOUNTS:
        return f"account {account.group(1)} is AWS's documentation account"
    clerk = clerk_frontend_host(value)
    if clerk is not None:
        host_reason = _reserved_host(clerk)
        return f"the key is for Clerk instance {clerk} ({host_reason})" if host_reason else None
    return _reserved_host(value)


def _reserved_host(value: str) -> str | None:
    for host in _HOST.findall(value):
        lowered = host.lower()
        for reserved in RESERVED_NAMES:
            if lowered == reserved or lowered.endswith("." + reserved):
                return f"{lowered}: {reserved} is reserved for documentation and examples (RFC 2606)"
    return None


def clerk_frontend_host(value: str) -> str | None:
    """The Frontend API host a Clerk publishable key encodes (`pk_<env>_` + base64 of `<host>$`)."""
    match = re.fullmatch(r"pk_(?:test|live)_([A-Za-z0-9+/=_-]+)", value)
    if not match:
        return None
    encoded = match.group(1)
    try:
        decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_").decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded[:-1] if decoded.endswith("$") else None


def _flatten(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _flatten(item)


def check_config(stack: str, document: Mapping[str, Any]) -> list[Finding]:
    findings: list[Finding] = []
    config = document.get("config") or {}
    for key, value in sorted(config.items()):
        if isinstance(value, dict):  # `secure:` values are ciphertext
            continue
        for text in _flatten(value):
            reason = placeholder_reason(text)
            if reason:
                findings.append(Finding("placeholders", f"{key} = {text}: {reason}"))
    # What `pulumi up` does first: the CLI checks the file against Pulumi.yaml, then hands the program
    # the defaulted values as strings; the program's loader checks those.
    try:
        engine = engine_config(stack, config)
    except StackConfigError as err:
        findings.append(Finding("config", f"the Pulumi CLI refuses the stack file: {err}"))
        engine = engine_config(stack, config, validate=False)
    try:
        load_engine_config(stack, engine)
    except ConfigError as err:
        findings.extend(Finding("config", line.strip()[2:]) for line in str(err).splitlines()[1:])
    findings.extend(_clerk_instance(config))
    for key, variable in PROVIDER_SECRETS.items():
        if not isinstance(config.get(key), dict) and not os.environ.get(variable):
            how = (
                f"pulumi config set --secret {key} -s {stack}, or {variable} in the environment "
                f"(the workflows pass the {variable} repository secret)"
            )
            findings.append(Finding("secrets", f"{key}: not set ({how})"))
    return findings


def _clerk_instance(config: Mapping[str, Any]) -> list[Finding]:
    """Clerk signs session tokens with `iss` = the instance's Frontend API URL, the host its publishable
    key encodes, and serves the JWKS there: an issuer or JWKS URL for another host refuses every token."""
    key = config.get(f"{PROJECT}:clerkPublishableKey")
    host = clerk_frontend_host(key) if isinstance(key, str) else None
    if host is None:
        return []
    findings = []
    for name, expected in (("authIssuer", f"https://{host}"), ("authJwksUrl", f"https://{host}/")):
        value = config.get(f"{PROJECT}:{name}")
        if isinstance(value, str) and not (value.rstrip("/") + "/").startswith(expected.rstrip("/") + "/"):
            findings.append(
                Finding(
                    "config",
                    f"{PROJECT}:{name}: {value} is not on the Clerk instance of clerkPublishableKey ({host}); "
                    "tokens from that instance would be refused",
                )
            )
    return findings


def check_manual_steps(outputs: Mapping[str, Any] | None) -> list[Finding]:
    """What only an operator can do and nothing here can check: a reminder, not a blocker."""
    where = (outputs or {}).get("mailWebhookSecretArn") or "the `mailWebhookSecretArn` stack output"
    return [
        Finding(
            "next",
            'create the Clerk webhook endpoint for the mail directory (README, "Clerk webhooks") and store '
            f"its signing secret in {where}: until then every delivery is refused and nobody can be mailed",
        )
    ]


def check_dns(outputs: Mapping[str, Any] | None, resolve: Resolver) -> list[Finding]:
    if outputs is None:
        return [
            Finding(
                "next",
                "DNS records (the API host's CNAME onto the load balancer, SES's three DKIM CNAMEs, the "
                "MAIL FROM domain's MX and SPF records, the DMARC record, the frontend domains' A records "
                "onto Vercel; none with motion:hostedZoneId, where the program writes them) are "
                "known after the first `pulumi up`: publish them from `pulumi stack output dnsRecords`, "
                "then run `make preflight STACK=<stack> OUTPUTS=<file of pulumi stack output --json>`",
            )
        ]
    records = outputs.get("dnsRecords")
    if not isinstance(records, list):
        return [Finding("dns", "the outputs have no dnsRecords list (is this `pulumi stack output --json`?)")]
    findings = []
    for record in records:
        name, kind, value = str(record["name"]), str(record["type"]), str(record["value"])
        answers = [_canonical(_answer_text(kind, a)) for a in resolve(name, kind)]
        if _canonical(value) not in answers:
            found = ", ".join(answers) or "nothing"
            findings.append(
                Finding("dns", f"{kind} {name} -> {value} ({record.get('purpose', '')}): DNS answers {found}")
            )
    return findings


def _answer_text(kind: str, answer: str) -> str:
    """A TXT answer as its text: DNS presents it as quoted strings (RFC 1035 section 3.3.14), joined
    as one value (RFC 7208 section 3.3 for SPF)."""
    if kind != "TXT":
        return answer
    strings = re.findall(r'"((?:[^"\\]|\\.)*)"', answer)
    return "".join(strings) if strings else answer


def _canonical(name: str) -> str:
    return name.lower().rstrip(".")


def dns_resolver(nameserver: str | None = None) -> Resolver:
    """Look records up with dnspython, through the system's resolver or `host:port`."""
    import dns.exception
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=nameserver is None)
    if nameserver is not None:
        host, _, port = nameserver.rpartition(":")
        resolver.nameservers = [host or nameserver]
        resolver.port = int(port) if host else 53
    resolver.lifetime = 5.0

    def resolve(name: str, kind: str) -> list[str]:
        try:
            return [answer.to_text() for answer in resolver.resolve(name, kind)]
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
            return []
        except dns.exception.Timeout:
            return ["(no answer: timed out)"]

    return resolve


# `aws sesv2 get-account`: GetAccountResponse in botocore's model of SES v2
# (botocore/data/sesv2/2019-09-27/service-2.json.gz): ProductionAccessEnabled and SendingEnabled
# (booleans), EnforcementStatus (a string: HEALTHY, PROBATION or SHUTDOWN, per its documentation),
# SendQuota {Max24HourSend, MaxSendRate, SentLast24Hours} (doubles; Max24HourSend -1 is unlimited).
AccountReader = Callable[[str], Mapping[str, Any]]


def ses_account(region: str) -> Mapping[str, Any]:
    """`GetAccount` in `region`, with boto3's credentials and endpoint (`AWS_ENDPOINT_URL_SESV2` is
    botocore's service-specific endpoint variable: configprovider.py, _get_service_env_var_name)."""
    import boto3
    from botocore.config import Config

    # One retry and short timeouts: an endpoint that is down is reported, not waited for.
    config = Config(connect_timeout=5, read_timeout=10, retries={"total_max_attempts": 2, "mode": "standard"})
    client = boto3.client("sesv2", region_name=region, config=config)
    response: Mapping[str, Any] = client.get_account()
    return response


def _figure(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else "?"


def check_ses_account(region: str, read: AccountReader) -> list[Finding]:
    """What SES's account state means for the stack's mail (see AccountReader for the fields).

    Sending disabled or a SHUTDOWN account blocks: the mailer's every SendEmail would be refused
    (AccountSuspendedException / SendingPausedException), so nobody could be mailed. PROBATION still
    sends, and the sandbox sends to verified addresses: worth knowing before `pulumi up`, not a reason
    to hold it back. An account that could not be read is reported and the run goes on, since the
    other checks do not need AWS."""
    from botocore.exceptions import BotoCoreError, ClientError

    if not region:
        return [Finding("notes", "could not check the SES account: the stack sets no aws:region")]
    try:
        account = read(region)
    except ClientError as err:
        detail = err.response.get("Error", {})
        reason = f"{detail.get('Code', '?')}: {detail.get('Message', '')}".rstrip(": ")
        return [Finding("notes", f"could not check the SES account in {region}: {reason}")]
    except BotoCoreError as err:  # no credentials, endpoint unreachable, unreadable answer
        return [Finding("notes", f"could not check the SES account in {region}: {err}")]
    findings = []
    status = account.get("EnforcementStatus")
    if account.get("SendingEnabled") is False or status == "SHUTDOWN":
        why = "SES has shut the account down" if status == "SHUTDOWN" else "sending is disabled"
        findings.append(
            Finding(
                "ses",
                f"the SES account in {region} cannot send ({why}; EnforcementStatus {status}): no e-mail "
                "goes out until it is resolved in the SES console's Reputation metrics, or, with "
                f"sending paused by you, `aws sesv2 put-account-sending-attributes --sending-enabled --region {region}`",
            )
        )
    elif status == "PROBATION":
        findings.append(
            Finding(
                "notes",
                f"the SES account in {region} is on probation (EnforcementStatus PROBATION): it still sends, "
                "but SES shuts it down unless its bounce and complaint rates fall (SES console, Reputation "
                "metrics)",
            )
        )
    if account.get("ProductionAccessEnabled") is False:
        quota = account.get("SendQuota") or {}
        findings.append(
            Finding(
                "notes",
                f"the SES account in {region} is in the SES sandbox: only verified addresses and domains "
                f"receive mail, at most {_figure(quota.get('Max24HourSend'))} messages per 24 hours and "
                f"{_figure(quota.get('MaxSendRate'))} per second ({_figure(quota.get('SentLast24Hours'))} "
                "sent in the last 24 hours); request production access with `aws sesv2 put-account-details "
                f"--region {region} --production-access-enabled --mail-type TRANSACTIONAL --website-url "
                "<the product's URL> --use-case-description <how Motion mails its users>` or in the SES "
                "console (Get set up, Request production access)",
            )
        )
    return findings


def report(stack: str, findings: Sequence[Finding]) -> str:
    blocking = [f for f in findings if f.blocking]
    titles = {
        "placeholders": "placeholders (replace with this stack's real values)",
        "config": "config the program rejects",
        "secrets": "secrets missing",
        "dns": "DNS records not published yet",
        "ses": "SES cannot send from this account",
        "next": "after the first `pulumi up`",
        "notes": "notes (not blocking)",
    }
    lines = [
        f"Preflight of stack '{stack}': "
        + (f"{len(blocking)} item(s) left before `pulumi up`" if blocking else "nothing left, ready")
    ]
    for section, title in titles.items():
        items = [f.text for f in findings if f.section == section]
        if items:
            lines.append(f"{title}:")
            lines.extend(f"  - {item}" for item in items)
    return "\n".join(lines)


def run(
    stack: str,
    stack_file: Path,
    outputs: Mapping[str, Any] | None,
    resolve: Resolver,
    read_account: AccountReader | None = None,
) -> tuple[int, str]:
    """The report and exit status; the SES account is asked only with `read_account` (the CLI passes
    `ses_account` unless --skip-ses), so that a library caller stays offline."""
    document = load_yaml(stack_file.read_text()) or {}
    findings = check_config(stack, document) + check_dns(outputs, resolve) + check_manual_steps(outputs)
    if read_account is not None:
        # The region as the engine hands it to the program (aws:region, defaulted, unvalidated).
        region = engine_config(stack, document.get("config") or {}, validate=False).get("aws:region", "")
        findings += check_ses_account(region, read_account)
    return (1 if any(f.blocking for f in findings) else 0), report(stack, findings)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make preflight", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--stack-file", type=Path, help="default: Pulumi.<stack>.yaml in the project")
    parser.add_argument("--outputs", type=Path, help="JSON of `pulumi stack output --json -s <stack>`")
    parser.add_argument("--nameserver", help="host[:port] to ask instead of the system's resolver")
    parser.add_argument(
        "--skip-ses", action="store_true", help="do not ask SES for the account's state (offline)"
    )
    args = parser.parse_args(argv)
    stack_file = args.stack_file or ROOT / f"Pulumi.{args.stack}.yaml"
    if not stack_file.is_file():
        print(f"preflight: no stack file {stack_file}", file=sys.stderr)
        return 2
    outputs = None
    if args.outputs is not None:
        try:
            outputs = json.loads(args.outputs.read_text())
        except (OSError, ValueError) as err:
            print(f"preflight: cannot read outputs {args.outputs}: {err}", file=sys.stderr)
            return 2
    status, text = run(
        args.stack, stack_file, outputs, dns_resolver(args.nameserver), None if args.skip_ses else ses_account
    )
    print(text)
    return status


if __name__ == "__main__":
    sys.exit(main())
