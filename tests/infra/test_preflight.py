"""`make preflight`: the committed stacks are honest examples and fail it; a complete stack whose DNS
records are published (answered by a real resolver, dnsmasq on 127.0.0.1) passes it. The SES
account is asked of the local SES stand-in (devstack/ses.py, `GET /v2/email/account`) through
`AWS_ENDPOINT_URL_SESV2`, as boto3 reads it."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.servers import DnsServer, MotoServer, free_port
from devstack.ses import PRODUCTION_ACCOUNT, SANDBOX_ACCOUNT, SesStandIn
from stacktools import preflight
from stacktools.stack_files import engine_config
from tests.infra.harness import ROOT, run_program

DOMAIN = "motionhq.net"  # not a reserved name; nothing here ever asks the internet about it


def clerk_key(host: str, env: str = "live") -> str:
    return f"pk_{env}_" + base64.b64encode(f"{host}$".encode()).decode()


def complete_production() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "Pulumi.production.yaml").read_text())
    document["config"].update(
        {
            "motion:domain": f"api.{DOMAIN}",
            "motion:certificateArn": (
                "arn:aws:acm:us-east-1:210987654321:certificate/0f3c9a52-6b7e-4d4e-9f4a-2b1c7d8e9f00"
            ),
            "motion:authIssuer": f"https://clerk.{DOMAIN}",
            "motion:authJwksUrl": f"https://clerk.{DOMAIN}/.well-known/jwks.json",
            "motion:clerkPublishableKey": clerk_key(f"clerk.{DOMAIN}"),
            "motion:sesSenderDomain": f"mail.{DOMAIN}",
            "motion:frontendDomains": [f"app.{DOMAIN}", DOMAIN],
            "motion:alarmEmail": f"oncall@{DOMAIN}",
            # What `pulumi config set --secret` writes: ciphertext under `secure`.
            "vercel:apiToken": {"secure": "v1:cGxhY2Vob2xkZXI=:Y2lwaGVydGV4dA=="},
        }
    )
    return document


def program_outputs(document: dict[str, Any]) -> dict[str, Any]:
    """The stack's outputs as the program computes them (under mocks), as `pulumi stack output --json`."""
    values = engine_config("production", document["config"])
    return json.loads(json.dumps(run_program("production", values).outputs))


@pytest.fixture
def stack_file(tmp_path: Path) -> Path:
    path = tmp_path / "Pulumi.production.yaml"
    path.write_text(yaml.safe_dump(complete_production()))
    return path


@pytest.fixture(scope="module")
def outputs() -> dict[str, Any]:
    return program_outputs(complete_production())


def served(records: list[dict[str, str]]) -> dict[str, Any]:
    """DnsServer's arguments that publish `records` (CNAME, A, MX and TXT records) as they are."""
    addresses: dict[str, list[str]] = {}
    texts: dict[str, list[str]] = {}
    for record in records:
        if record["type"] == "A":
            addresses.setdefault(record["name"], []).append(record["value"])
        if record["type"] == "TXT":
            texts.setdefault(record["name"], []).append(record["value"])
    cnames = {r["name"]: r["value"] for r in records if r["type"] == "CNAME"}
    mx = {}
    for record in records:
        if record["type"] == "MX":
            preference, host = record["value"].split()
            mx[record["name"]] = (int(preference), host)
    counted = len(cnames) + len(mx) + sum(map(len, addresses.values())) + sum(map(len, texts.values()))
    assert counted == len(records), "only CNAME, A, MX and TXT records, one CNAME and MX per name"
    return {"cnames": cnames, "addresses": addresses, "mx": mx, "txt": texts}


@pytest.fixture
def published(outputs: dict[str, Any]) -> Iterator[DnsServer]:
    with DnsServer(**served(outputs["dnsRecords"])) as server:
        yield server


# No AWS credentials nor configuration of this machine's, and no instance metadata to ask: the SES
# check finds no credentials unless a test gives it the stand-in's.
NO_AWS = {
    "PATH": "/usr/bin:/bin",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stacktools.preflight", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env if env is not None else NO_AWS,
    )


@pytest.fixture
def ses(moto_server: MotoServer) -> Iterator[SesStandIn]:
    with SesStandIn(moto_server.endpoint, port=free_port()) as server:
        yield server


def ses_env(endpoint: str) -> dict[str, str]:
    """The CLI's environment with SES at `endpoint` (the stand-in checks no signature)."""
    return {
        **NO_AWS,
        "AWS_ENDPOINT_URL_SESV2": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }


@pytest.mark.parametrize("stack", ["dev", "production"])
def test_committed_stacks_are_examples_and_fail_preflight(stack: str) -> None:
    result = run_cli("--stack", stack)
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert f"Preflight of stack '{stack}'" in out
    assert f"motion:sesSenderDomain = mail.{'dev.' if stack == 'dev' else ''}motion.example" in out
    assert "example is reserved for documentation and examples (RFC 2606)" in out
    assert f"vercel:apiToken: not set (pulumi config set --secret vercel:apiToken -s {stack}" in out
    assert "known after the first `pulumi up`" in out
    # No credentials: said, and nothing else changes.
    assert "could not check the SES account in us-east-1: Unable to locate credentials" in out


def test_production_names_the_documentation_account_certificate() -> None:
    out = run_cli("--stack", "production").stdout
    assert "motion:certificateArn = arn:aws:acm:us-east-1:123456789012:certificate/" in out
    assert "account 123456789012 is AWS's documentation account" in out
    assert "motion:clerkPublishableKey = pk_live_" in out and "Clerk instance clerk.motion.example" in out


def test_a_complete_stack_with_its_records_published_passes(
    stack_file: Path, outputs: dict[str, Any], published: DnsServer, tmp_path: Path, ses: SesStandIn
) -> None:
    outputs_file = tmp_path / "outputs.json"
    outputs_file.write_text(json.dumps(outputs))
    names = {r["name"] for r in outputs["dnsRecords"]}
    assert f"api.{DOMAIN}" in names and sum(n.endswith(f"._domainkey.mail.{DOMAIN}") for n in names) == 3
    assert {f"app.{DOMAIN}", DOMAIN} <= names  # the frontend's domains, onto Vercel
    result = run_cli(
        "--stack",
        "production",
        "--stack-file",
        str(stack_file),
        "--outputs",
        str(outputs_file),
        "--nameserver",
        published.nameserver,
        env=ses_env(ses.endpoint),  # an account with production access: nothing to say
    )
    assert result.returncode == 0, result.stdout + result.stderr
    first, *rest = result.stdout.strip().splitlines()
    assert first == "Preflight of stack 'production': nothing left, ready"
    # What no check can see stays listed, not blocking: the Clerk webhook secret, named by its ARN.
    assert rest == [
        "after the first `pulumi up`:",
        '  - create the Clerk webhook endpoint for the mail directory (README, "Clerk webhooks") and store '
        f"its signing secret in {outputs['mailWebhookSecretArn']}: until then every delivery is refused "
        "and nobody can be mailed",
    ]
    assert outputs["mailWebhookSecretArn"].startswith("arn:aws:secretsmanager:")


def test_an_unpublished_record_fails_and_is_named(stack_file: Path, outputs: dict[str, Any]) -> None:
    records = {r["name"]: r["value"] for r in outputs["dnsRecords"]}
    missing = next(name for name in records if "_domainkey" in name)
    wrong = f"api.{DOMAIN}"
    unpointed = DOMAIN  # the apex frontend domain, still on its old host
    kept = [r for r in outputs["dnsRecords"] if r["name"] not in (missing, wrong, unpointed)]
    kept += [
        {"name": wrong, "type": "CNAME", "value": "old-alb.elb.amazonaws.com"},
        {"name": unpointed, "type": "A", "value": "192.0.2.10"},
    ]
    with DnsServer(**served(kept)) as server:
        status, text = preflight.run(
            "production", stack_file, outputs, preflight.dns_resolver(server.nameserver)
        )
    assert status == 1
    assert f"CNAME {missing} -> {records[missing]} (SES DKIM): DNS answers nothing" in text
    assert f"CNAME {wrong} -> {records[wrong]} (API host -> load balancer): DNS answers old-alb.elb" in text
    assert f"A {unpointed} -> {records[unpointed]} (frontend -> Vercel): DNS answers 192.0.2.10" in text
    # The three records, and the reminder that never blocks (the Clerk webhook secret).
    assert text.count("\n  - ") == 4 and "Clerk webhook endpoint" in text, text


def test_the_secret_may_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    document = complete_production()
    del document["config"]["vercel:apiToken"]
    path = tmp_path / "Pulumi.production.yaml"
    path.write_text(yaml.safe_dump(document))
    monkeypatch.delenv("VERCEL_API_TOKEN", raising=False)
    status, text = preflight.run("production", path, None, lambda name, kind: [])
    assert status == 1 and "vercel:apiToken: not set" in text
    monkeypatch.setenv("VERCEL_API_TOKEN", "token-from-ci")
    status, text = preflight.run("production", path, None, lambda name, kind: [])
    assert status == 0, text
    assert "known after the first `pulumi up`" in text  # named as the next step, not a failure


def preflight_with(stack_file: Path, key: str, value: Any) -> tuple[int, str]:
    """Preflight (no outputs) of the complete stack with one config value changed."""
    document = yaml.safe_load(stack_file.read_text())
    document["config"][key] = value
    stack_file.write_text(yaml.safe_dump(document))
    return preflight.run("production", stack_file, None, lambda name, kind: [])


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (
            "motion:clerkPublishableKey",
            clerk_key("motion-prod.clerk.accounts.dev"),
            f"motion:authIssuer: https://clerk.{DOMAIN} is not on the Clerk instance of clerkPublishableKey "
            "(motion-prod.clerk.accounts.dev)",
        ),
        # The CLI's own check (Pulumi.yaml's schema): a list written as a JSON string is no array.
        (
            "motion:frontendDomains",
            f'["app.{DOMAIN}"]',
            "the Pulumi CLI refuses the stack file: Stack 'production' with configuration key "
            "'frontendDomains' must be of type 'array<string>'",
        ),
        (
            "motion:natStrategy",
            "sometimes",
            "config the program rejects:\n  - motion:natStrategy: 'sometimes' is not a NAT strategy",
        ),
    ],
    ids=["clerk-instance", "cli-schema", "loader"],
)
def test_config_that_would_fail_is_listed(stack_file: Path, key: str, value: Any, expected: str) -> None:
    status, text = preflight_with(stack_file, key, value)
    assert status == 1
    assert expected in text


@pytest.mark.parametrize(
    ("value", "placeholder"),
    [
        ("api.motion.example", True),
        ("https://clerk.example.com/x", True),
        ("ops@corp.test", True),
        ("arn:aws:acm:us-east-1:111122223333:certificate/x", True),
        ("http://localhost:5173", False),  # the Vite dev server: a real dev origin
        ("api.motionhq.net", False),
        ("arn:aws:acm:us-east-1:210987654321:certificate/x", False),
        ("notexample.com", False),
        (clerk_key("clerk.motion.example"), True),
        (clerk_key("motion-dev.clerk.accounts.dev", "test"), False),
    ],
)
def test_placeholder_rules(value: str, placeholder: bool) -> None:
    assert (preflight.placeholder_reason(value) is not None) is placeholder


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run_cli("--stack", "nosuchstack").returncode == 2
    bad = tmp_path / "outputs.json"
    bad.write_text("{not json")
    result = run_cli("--stack", "dev", "--outputs", str(bad))
    assert result.returncode == 2 and "cannot read outputs" in result.stderr


def test_outputs_without_dns_records_fail_and_say_so(stack_file: Path) -> None:
    status, text = preflight.run("production", stack_file, {"baseUrl": "https://x"}, lambda name, kind: [])
    assert status == 1
    assert "the outputs have no dnsRecords list (is this `pulumi stack output --json`?)" in text


def test_unpublished_mail_from_and_dmarc_records_are_named(stack_file: Path, outputs: dict[str, Any]) -> None:
    """The MX and TXT records are checked as DNS presents them: an MX as `<preference> <host>.`, a TXT
    as quoted strings (RFC 1035 section 3.3.14), compared with the text to publish."""
    listed = outputs["dnsRecords"]
    bounce = f"bounce.mail.{DOMAIN}"
    dmarc = f"_dmarc.mail.{DOMAIN}"
    assert {(r["name"], r["type"]) for r in listed} >= {(bounce, "MX"), (bounce, "TXT"), (dmarc, "TXT")}
    kept = [r for r in listed if r["name"] not in (bounce, dmarc)]
    kept += [
        {"name": bounce, "type": "MX", "value": "10 feedback-smtp.us-east-1.amazonses.com"},
        {"name": bounce, "type": "TXT", "value": "v=spf1 -all"},
    ]
    with DnsServer(**served(kept)) as server:
        status, text = preflight.run(
            "production", stack_file, outputs, preflight.dns_resolver(server.nameserver)
        )
    assert status == 1
    assert f"MX {bounce} -> 10 feedback-smtp.us-east-1.amazonses.com" not in text  # published
    assert (
        f"TXT {bounce} -> v=spf1 include:amazonses.com ~all (SES MAIL FROM SPF): DNS answers v=spf1 -all"
        in text
    )
    assert f"TXT {dmarc} -> v=DMARC1; p=none (DMARC): DNS answers nothing" in text
    assert text.count("\n  - ") == 3, text


def test_with_a_hosted_zone_nothing_is_left_to_publish(tmp_path: Path) -> None:
    """The program writes every record in the zone: the outputs list none, and preflight passes
    without asking DNS anything."""
    document = complete_production()
    document["config"].update(
        {
            "motion:hostedZoneId": "Z0123456789ABCDEFGHIJ",
            "motion:hostedZoneName": DOMAIN,
            "motion:certificateArn": "",
        }
    )
    path = tmp_path / "Pulumi.production.yaml"
    path.write_text(yaml.safe_dump(document))
    zoned = program_outputs(document)
    assert zoned["dnsRecords"] == [] and zoned["hostedZoneId"] == "Z0123456789ABCDEFGHIJ"

    def no_dns(name: str, kind: str) -> list[str]:
        raise AssertionError(f"asked DNS for {kind} {name}")

    status, text = preflight.run("production", path, zoned, no_dns)
    assert status == 0, text
    status, text = preflight.run("production", path, None, no_dns)
    assert status == 0 and "none with motion:hostedZoneId, where the program writes them" in text


# --- the SES account ------------------------------------------------------------------------------


def account(**changes: Any) -> dict[str, Any]:
    return {**json.loads(json.dumps(PRODUCTION_ACCOUNT)), **changes}


def test_an_account_in_the_sandbox_is_a_note_with_its_quota(stack_file: Path, ses: SesStandIn) -> None:
    ses.account = {
        **SANDBOX_ACCOUNT,
        "SendQuota": {"Max24HourSend": 200.0, "MaxSendRate": 1.0, "SentLast24Hours": 7.0},
    }
    result = run_cli("--stack", "production", "--stack-file", str(stack_file), env=ses_env(ses.endpoint))
    assert result.returncode == 0, result.stdout + result.stderr  # a note, not a blocker
    assert result.stdout.startswith("Preflight of stack 'production': nothing left, ready")
    assert (
        "notes (not blocking):\n  - the SES account in us-east-1 is in the SES sandbox: only verified"
        in result.stdout
    )
    # The figures are the account's, not the sandbox's documented defaults.
    assert "at most 200 messages per 24 hours and 1 per second (7 sent in the last 24 hours)" in result.stdout
    assert "aws sesv2 put-account-details --region us-east-1 --production-access-enabled" in result.stdout
    ses.account = {
        **SANDBOX_ACCOUNT,
        "SendQuota": {"Max24HourSend": 500.0, "MaxSendRate": 2.5, "SentLast24Hours": 0.0},
    }
    again = run_cli("--stack", "production", "--stack-file", str(stack_file), env=ses_env(ses.endpoint))
    assert "at most 500 messages per 24 hours and 2.5 per second" in again.stdout


def test_production_access_gets_no_note(stack_file: Path, ses: SesStandIn) -> None:
    ses.account = account(SendQuota={"Max24HourSend": -1.0, "MaxSendRate": 50.0, "SentLast24Hours": 0.0})
    result = run_cli("--stack", "production", "--stack-file", str(stack_file), env=ses_env(ses.endpoint))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SES account" not in result.stdout and "notes" not in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("state", "blocking", "expected"),
    [
        (
            {"SendingEnabled": False},
            True,
            "SES cannot send from this account:\n  - the SES account in us-east-1 cannot send (sending is "
            "disabled; EnforcementStatus HEALTHY)",
        ),
        (
            {"SendingEnabled": False, "EnforcementStatus": "SHUTDOWN"},
            True,
            "cannot send (SES has shut the account down; EnforcementStatus SHUTDOWN)",
        ),
        (
            {"EnforcementStatus": "PROBATION"},
            False,
            "notes (not blocking):\n  - the SES account in us-east-1 is on probation (EnforcementStatus PROBATION)",
        ),
    ],
    ids=["sending-disabled", "shutdown", "probation"],
)
def test_an_account_that_cannot_send_or_is_on_probation_is_a_warning(
    stack_file: Path, ses: SesStandIn, state: dict[str, Any], blocking: bool, expected: str
) -> None:
    ses.account = account(**state)
    result = run_cli("--stack", "production", "--stack-file", str(stack_file), env=ses_env(ses.endpoint))
    assert result.returncode == (1 if blocking else 0), result.stdout + result.stderr
    assert expected in result.stdout, result.stdout
    assert "sandbox" not in result.stdout


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        ((500, "InternalFailure"), "InternalFailure: the stand-in was told to fail GetAccount"),
        ((403, "AccessDeniedException"), "AccessDeniedException: the stand-in was told to fail GetAccount"),
    ],
    ids=["500", "access-denied"],
)
def test_an_ses_that_fails_is_a_note_and_the_run_goes_on(
    stack_file: Path, ses: SesStandIn, failure: tuple[int, str], reason: str
) -> None:
    ses.account_failure = failure
    result = run_cli("--stack", "production", "--stack-file", str(stack_file), env=ses_env(ses.endpoint))
    assert result.returncode == 0, result.stdout + result.stderr  # as without the check
    assert f"could not check the SES account in us-east-1: {reason}" in result.stdout
    assert "known after the first `pulumi up`" in result.stdout  # the other checks ran
    # The committed stack still fails on its placeholders, no more and no less for SES's failure.
    committed = run_cli("--stack", "production", env=ses_env(ses.endpoint))
    assert (
        committed.returncode == 1
        and "account 123456789012 is AWS's documentation account" in committed.stdout
    )
    assert f"could not check the SES account in us-east-1: {reason}" in committed.stdout


def test_an_ses_that_is_down_is_a_note_and_the_run_goes_on(stack_file: Path) -> None:
    nothing_there = f"http://127.0.0.1:{free_port()}"
    result = run_cli("--stack", "production", "--stack-file", str(stack_file), env=ses_env(nothing_there))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        f'could not check the SES account in us-east-1: Could not connect to the endpoint URL: "{nothing_there}/v2/email/account"'
        in result.stdout
    )
    assert result.stdout.startswith("Preflight of stack 'production': nothing left, ready")


def test_skip_ses_asks_nothing(stack_file: Path) -> None:
    nothing_there = f"http://127.0.0.1:{free_port()}"
    result = run_cli(
        "--stack", "production", "--stack-file", str(stack_file), "--skip-ses", env=ses_env(nothing_there)
    )
    assert result.returncode == 0 and "SES account" not in result.stdout, result.stdout


def test_the_check_asks_the_stacks_region(tmp_path: Path, ses: SesStandIn) -> None:
    """The region asked is the stack's `aws:region` (what the client is built for), and the note and
    the command to run name it."""
    document = complete_production()
    document["config"]["aws:region"] = "eu-west-1"
    path = tmp_path / "Pulumi.production.yaml"
    path.write_text(yaml.safe_dump(document))
    ses.account = json.loads(json.dumps(SANDBOX_ACCOUNT))
    regions: list[str] = []

    def read(region: str) -> dict[str, Any]:
        regions.append(region)
        return dict(preflight.ses_account(region))

    env = ses_env(ses.endpoint)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        status, text = preflight.run("production", path, None, lambda name, kind: [], read)
    assert status == 0, text
    assert regions == ["eu-west-1"]
    assert "the SES account in eu-west-1 is in the SES sandbox" in text, text
    assert "--region eu-west-1" in text
