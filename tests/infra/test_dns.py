"""DNS (components/dns.py) in both shapes: with a Route 53 hosted zone the program requests and validates
the API's certificate and writes every record; without one every record is a stack output.

The rules ported from the real tools, each cited where it is asserted:
- terraform-provider-aws website/docs/r/acm_certificate_validation.html.markdown ("DNS Validation with
  Route 53"): one `aws_route53_record` per `domain_validation_options` entry, its name, type and value,
  `ttl = 60`, `allow_overwrite = true`; `aws_acm_certificate_validation` with `certificate_arn` and
  `validation_record_fqdns`; the listener's `certificate_arn` is the validation's.
- route53_record.html.markdown: `alias` "Conflicts with ttl & records"; alias `name`, `zone_id`,
  `evaluate_target_health` (Route 53 AliasTarget: an ELB's DNS name and its canonical hosted zone id).
- sesv2_email_identity_mail_from_attributes.html.markdown: `email_identity`, `mail_from_domain`,
  `behavior_on_mx_failure` in USE_DEFAULT_VALUE | REJECT_MESSAGE; SES API Reference
  (SetIdentityMailFromDomain, AWS::SES::EmailIdentity MailFromAttributes): the MAIL FROM domain is a
  subdomain of the identity and receives no mail; SES Developer Guide: MX `10
  feedback-smtp.<region>.amazonses.com`, SPF `v=spf1 include:amazonses.com ~all`; Easy DKIM: three
  CNAMEs `<token>._domainkey.<domain>` -> `<token>.dkim.amazonses.com`.
- RFC 7489 section 6.3: `_dmarc.<domain>` TXT, `v=DMARC1` first, `p` one of none | quarantine | reject.
- ACM: a load balancer uses certificates of its own region only, so the certificate is made with the
  load balancer's provider.
- Vercel (https://vercel.com/docs/domains/set-up-custom-domain): an A record onto the address Vercel
  gives (76.76.21.21 in its guide; the program takes what the project's domain config recommends).
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

from components.config.loader import ConfigError
from stacktools.mocked_program import computed_outputs
from tests.infra.harness import ProgramFailed, RecordedResource, StackRun, run_with

ZONE_ID = "Z0123456789ABCDEFGHIJ"
RECORD = "aws:route53/record:Record"
CERTIFICATE = "aws:acm/certificate:Certificate"
VALIDATION = "aws:acm/certificateValidation:CertificateValidation"
LISTENER = "aws:lb/listener:Listener"
MAIL_FROM = "aws:sesv2/emailIdentityMailFromAttributes:EmailIdentityMailFromAttributes"

# The committed stacks with a hosted zone over their names: dev gets an API host, production gives up
# its certificate ARN (the two are exclusive).
ZONED: dict[str, dict[str, Any]] = {
    "dev": {"hostedZoneId": ZONE_ID, "hostedZoneName": "motion.example", "domain": "api.dev.motion.example"},
    "production": {
        "hostedZoneId": ZONE_ID,
        "hostedZoneName": "motion.example",
        "certificateArn": "",
        "dmarcPolicy": "reject",
    },
}


@functools.cache
def zoned(stack: str) -> StackRun:
    return run_with(stack, **ZONED[stack])


@pytest.fixture(params=["dev", "production"])
def with_zone(request: pytest.FixtureRequest) -> StackRun:
    return zoned(request.param)


def records(run: StackRun) -> dict[tuple[str, str], RecordedResource]:
    found = {(r.inputs["name"].rstrip("."), r.inputs["type"]): r for r in run.of_type(RECORD)}
    assert len(found) == len(run.of_type(RECORD)), "one record set per name and type"
    return found


# --- without a zone: every record is an output --------------------------------------------------------


def test_without_a_zone_nothing_is_written_and_every_record_is_an_output(stack: StackRun) -> None:
    assert (
        stack.of_type(RECORD) == [] and stack.of_type(CERTIFICATE) == [] and stack.of_type(VALIDATION) == []
    )
    mail = stack.config.mail.sender_domain
    listed = {(r["name"], r["type"]): r["value"] for r in stack.outputs["dnsRecords"]}
    assert listed[(f"bounce.{mail}", "MX")] == "10 feedback-smtp.us-east-1.amazonses.com"
    assert listed[(f"bounce.{mail}", "TXT")] == "v=spf1 include:amazonses.com ~all"
    assert listed[(f"_dmarc.{mail}", "TXT")] == "v=DMARC1; p=none"
    tokens = [f"dkim{i}token" for i in range(3)]
    for token in tokens:
        assert listed[(f"{token}._domainkey.{mail}", "CNAME")] == f"{token}.dkim.amazonses.com"
    for domain in stack.config.frontend.domains:
        assert listed[(domain, "A")] == "76.76.21.21"
    if stack.config.domain:
        assert listed[(stack.config.domain, "CNAME")] == stack.outputs["albDnsName"]
    assert "hostedZoneId" not in stack.outputs


def test_the_mail_from_domain_is_set_in_both_shapes(stack: StackRun) -> None:
    for run in (stack, zoned(stack.stack)):
        attributes = run.one(MAIL_FROM)
        identity = run.one("aws:sesv2/emailIdentity:EmailIdentity")
        domain = identity.inputs["emailIdentity"]
        # A subdomain of the identity, used for nothing else (the From address is no-reply@<domain>).
        assert attributes.inputs["mailFromDomain"] == f"bounce.{domain}"
        assert attributes.inputs["emailIdentity"] == domain
        assert identity.urn in attributes.property_dependencies["emailIdentity"]
        # SES keeps sending from amazonses.com until the MX record answers (never a refused e-mail).
        assert attributes.inputs["behaviorOnMxFailure"] in ("USE_DEFAULT_VALUE", "REJECT_MESSAGE")
        assert attributes.inputs["behaviorOnMxFailure"] == "USE_DEFAULT_VALUE"


def test_a_certificate_arn_from_config_keeps_working(production: StackRun) -> None:
    https = next(r for r in production.of_type(LISTENER) if r.inputs["protocol"] == "HTTPS")
    assert https.inputs["certificateArn"] == production.config.certificate_arn


# --- with a zone: the program validates the certificate and writes every record ------------------------


def test_the_certificate_is_requested_for_the_api_host_and_validated_in_the_zone(with_zone: StackRun) -> None:
    run = with_zone
    certificate = run.one(CERTIFICATE)
    assert certificate.inputs["domainName"] == run.config.domain
    assert certificate.inputs["validationMethod"] == "DNS"
    # The load balancer's region: the same provider as the load balancer.
    assert certificate.provider == run.one("aws:lb/loadBalancer:LoadBalancer").provider
    issued = computed_outputs(CERTIFICATE, certificate.name, certificate.inputs, run.config.region)
    (option,) = issued["domainValidationOptions"]
    record = run.one(RECORD, "validation-record")
    assert record.inputs["name"] == option["resourceRecordName"]
    assert record.inputs["type"] == option["resourceRecordType"] == "CNAME"
    assert record.inputs["records"] == [option["resourceRecordValue"]]
    assert record.inputs["ttl"] == 60 and record.inputs["allowOverwrite"] is True
    assert record.inputs["zoneId"] == ZONE_ID
    assert certificate.urn in record.property_dependencies["name"]
    validation = run.one(VALIDATION)
    assert validation.inputs["certificateArn"] == issued["arn"]
    assert certificate.urn in validation.property_dependencies["certificateArn"]
    assert record.urn in validation.property_dependencies["validationRecordFqdns"]
    assert validation.inputs["validationRecordFqdns"] == [option["resourceRecordName"].rstrip(".")]


def test_the_https_listener_waits_for_the_validated_certificate(with_zone: StackRun) -> None:
    run = with_zone
    validation = run.one(VALIDATION)
    listeners = {r.inputs["protocol"]: r for r in run.of_type(LISTENER)}
    assert set(listeners) == {"HTTP", "HTTPS"}
    https = listeners["HTTPS"]
    # The listener's certificate is the validation's output, so the engine creates it only after
    # ACM has issued the certificate.
    assert https.inputs["certificateArn"] == validation.inputs["certificateArn"]
    assert https.property_dependencies["certificateArn"] == frozenset({validation.urn})
    assert validation.urn in https.dependencies
    # HTTP only redirects, as in production.
    (redirect,) = listeners["HTTP"].inputs["defaultActions"]
    assert redirect["redirect"] == {"protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}
    # A stack that served HTTP keeps its port-80 listener, updated in place (an alias of its old URN).
    # (Under mocks the SDK spells the alias with the stack's type in front; the engine computes it.)
    assert any(
        urn.endswith("motion:platform:Platform$aws:lb/listener:Listener::platform-http")
        for urn in listeners["HTTP"].alias_urns
    ), listeners["HTTP"].alias_urns
    assert run.outputs["baseUrl"] == f"https://{run.config.domain}"
    assert run.outputs["chatWebSocketUrl"].startswith(f"wss://{run.config.domain}/")


def test_the_api_host_is_an_alias_onto_the_load_balancer(with_zone: StackRun) -> None:
    run = with_zone
    alb = run.one("aws:lb/loadBalancer:LoadBalancer")
    outputs = computed_outputs(alb.type, alb.name, alb.inputs, run.config.region)
    api = records(run)[(run.config.domain, "A")]
    assert api.inputs["aliases"] == [
        {"name": outputs["dnsName"], "zoneId": outputs["zoneId"], "evaluateTargetHealth": True}
    ]
    assert "ttl" not in api.inputs and "records" not in api.inputs  # "Conflicts with ttl & records"
    # IPv4 only: no dualstack load balancer, so no AAAA record.
    assert alb.inputs.get("ipAddressType", "ipv4") == "ipv4"
    assert (run.config.domain, "AAAA") not in records(run)


def test_ses_and_frontend_records_are_written_in_the_zone(with_zone: StackRun) -> None:
    run = with_zone
    found = records(run)
    assert {r.inputs["zoneId"] for r in found.values()} == {ZONE_ID}
    mail = run.config.mail.sender_domain
    for i in range(3):
        dkim = found[(f"dkim{i}token._domainkey.{mail}", "CNAME")]
        assert dkim.inputs["records"] == [f"dkim{i}token.dkim.amazonses.com"]
    assert found[(f"bounce.{mail}", "MX")].inputs["records"] == ["10 feedback-smtp.us-east-1.amazonses.com"]
    assert found[(f"bounce.{mail}", "TXT")].inputs["records"] == ["v=spf1 include:amazonses.com ~all"]
    policy = ZONED[run.stack].get("dmarcPolicy", "none")
    assert found[(f"_dmarc.{mail}", "TXT")].inputs["records"] == [f"v=DMARC1; p={policy}"]
    for domain in run.config.frontend.domains:
        assert found[(domain, "A")].inputs["records"] == ["76.76.21.21"]
    # Nothing left to publish by hand.
    assert run.outputs["dnsRecords"] == [] and run.outputs["hostedZoneId"] == ZONE_ID
    expected = {(run.config.domain, "A"), *[(d, "A") for d in run.config.frontend.domains]}
    expected |= {(f"dkim{i}token._domainkey.{mail}", "CNAME") for i in range(3)}
    expected |= {(f"bounce.{mail}", "MX"), (f"bounce.{mail}", "TXT"), (f"_dmarc.{mail}", "TXT")}
    assert set(found) - {k for k in found if k[0].startswith("_") and k[1] == "CNAME"} == expected


def test_every_dns_resource_belongs_to_a_dns_component(with_zone: StackRun) -> None:
    for resource in (
        with_zone.of_type(RECORD) + with_zone.of_type(CERTIFICATE) + with_zone.of_type(VALIDATION)
    ):
        component = with_zone.component_of(resource)
        assert component is not None and component.type.startswith("motion:dns:"), resource.name


# --- config: bad zone and domain combinations fail before any resource, naming the key ------------------


@pytest.mark.parametrize(
    ("stack", "overrides", "expected"),
    [
        ("dev", {"hostedZoneId": ZONE_ID}, "motion:hostedZoneName: set it exactly when hostedZoneId is"),
        ("dev", {"hostedZoneName": "motion.example"}, "motion:hostedZoneName: set it exactly when"),
        ("dev", {**ZONED["dev"], "hostedZoneId": "z-not-an-id"}, "motion:hostedZoneId: 'z-not-an-id'"),
        (
            "production",
            {"hostedZoneId": ZONE_ID, "hostedZoneName": "motion.example"},
            "motion:certificateArn: must be empty with motion:hostedZoneId",
        ),
        (
            "dev",
            {"hostedZoneId": ZONE_ID, "hostedZoneName": "motion.example"},
            "motion:domain: a hosted zone needs the API host name",
        ),
        (
            "dev",
            {**ZONED["dev"], "domain": "api.elsewhere.example"},
            "motion:domain: api.elsewhere.example is not in the hosted zone motion.example",
        ),
        (
            "dev",
            {**ZONED["dev"], "sesSenderDomain": "mail.elsewhere.example"},
            "motion:sesSenderDomain: mail.elsewhere.example is not in the hosted zone motion.example",
        ),
        (
            "dev",
            {**ZONED["dev"], "frontendDomains": ["dev.motion.example", "notmotion.example"]},
            "motion:frontendDomains: ['notmotion.example'] are not in the hosted zone motion.example",
        ),
        ("dev", {"dmarcPolicy": "strict"}, "motion:dmarcPolicy: 'strict'"),
    ],
)
def test_bad_zone_config_fails_before_any_resource(
    stack: str, overrides: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ProgramFailed) as failed:
        run_with(stack, skip_config_validation=True, **overrides)
    assert isinstance(failed.value.error, ConfigError)
    assert expected in str(failed.value.error), str(failed.value.error)
    assert failed.value.registered == [], "config must fail before any resource is registered"


def test_a_zone_satisfies_high_availabilitys_certificate() -> None:
    run = zoned("production")
    assert run.config.high_availability and run.config.tls and not run.config.certificate_arn
