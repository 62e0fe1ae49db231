"""DNS: the API's certificate, validated in Route 53, and every record the stack needs published.

Its own concern because its records belong to every other one (the API host onto the load balancer,
SES's DKIM, MAIL FROM and DMARC records, the frontend's domains onto Vercel) while it decides one thing
for all of them: with a hosted zone (`motion:hostedZoneId`) the program writes them in Route 53 and
nothing is published by hand; without one each is a stack output (`dnsRecords`) that `make preflight`
checks. Two components, because the certificate must exist before the platform's HTTPS listener and
the records only after the load balancer, the mail identity and the Vercel project:

- `ApiCertificate` (zone only): `aws.acm.Certificate` with DNS validation, one `aws.route53.Record`
  per domain validation option, and `aws.acm.CertificateValidation`, whose `certificate_arn` the
  listener uses, so the listener waits for the issued certificate (terraform-provider-aws,
  website/docs/r/acm_certificate_validation.html.markdown, "DNS Validation with Route 53"). It is
  made with the stack's one AWS provider, so it lives in the load balancer's region, the only one
  whose certificates an ALB can use.
- `DnsRecords`: the custom MAIL FROM domain of the SES identity (always: SES falls back to
  amazonses.com until its MX record answers, `USE_DEFAULT_VALUE`) and, with a zone, the records.

No AAAA record for the API host: the load balancer is IPv4 only (`ip_address_type` unset, so
`ipv4`, and the VPC has no IPv6 range), and an AAAA alias to it would answer nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.config.model import DnsConfig

# The label of the custom MAIL FROM domain under the sender domain (bounce.mail.motion.example). SES:
# it must be a subdomain of the identity, not used to receive mail nor in a From address (API
# Reference, SetIdentityMailFromDomain / PutEmailIdentityMailFromAttributes); the sender's From is
# no-reply@<sender domain>, so this name is used for nothing else.
MAIL_FROM_LABEL = "bounce"
# SES Developer Guide, "Setting up a custom MAIL FROM domain": the MX record points at the region's
# feedback endpoint with priority 10, and the SPF record allows amazonses.com.
MAIL_FROM_MX_PRIORITY = 10
MAIL_FROM_SPF = "v=spf1 include:amazonses.com ~all"
# Easy DKIM gives a domain identity three tokens, one CNAME each (SES Developer Guide, "Easy DKIM").
DKIM_TOKENS = 3
# The validation record's TTL in the provider's example (acm_certificate_validation.html.markdown).
VALIDATION_TTL = 60
RECORD_TTL = 300

Record = dict[str, str]


def mail_from_domain(sender_domain: str) -> str:
    return f"{MAIL_FROM_LABEL}.{sender_domain}"


def mail_from_mx(region: str) -> str:
    """The MX record's value as Route 53 takes it: the priority and the host."""
    return f"{MAIL_FROM_MX_PRIORITY} feedback-smtp.{region}.amazonses.com"


def dmarc_value(policy: str) -> str:
    """RFC 7489 section 6.3/6.4: `v=DMARC1` first, then the required `p` tag."""
    return f"v=DMARC1; p={policy}"


class ApiCertificate(pulumi.ComponentResource):
    """The API host's ACM certificate, validated by DNS in the hosted zone; `arn` is the validation's."""

    def __init__(
        self, name: str, domain: str, zone_id: str, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("motion:dns:ApiCertificate", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.certificate = aws.acm.Certificate(
            f"{name}-cert", domain_name=domain, validation_method="DNS", opts=child
        )
        # One domain, so one validation option; picked by its domain name, as the provider's example
        # keys them (`for dvo in ... : dvo.domain_name => ...`). No resource is created in an apply.
        option = self.certificate.domain_validation_options.apply(lambda options: _option(options, domain))
        self.validation_record = aws.route53.Record(
            f"{name}-validation-record",
            zone_id=zone_id,
            name=option.apply(lambda o: str(_field(o, "resource_record_name"))),
            type=option.apply(lambda o: str(_field(o, "resource_record_type"))),
            records=[option.apply(lambda o: str(_field(o, "resource_record_value")))],
            ttl=VALIDATION_TTL,
            allow_overwrite=True,
            opts=child,
        )
        self.validation = aws.acm.CertificateValidation(
            f"{name}-validation",
            certificate_arn=self.certificate.arn,
            validation_record_fqdns=[self.validation_record.fqdn],
            opts=child,
        )
        self.arn: pulumi.Output[str] = self.validation.certificate_arn
        self.register_outputs({"certificate_arn": self.arn})


def _field(option: Any, key: str) -> Any:
    return option.get(key) if isinstance(option, Mapping) else getattr(option, key)


def _option(options: Sequence[Any] | None, domain: str) -> Any:
    for option in options or []:
        if _field(option, "domain_name") == domain:
            return option
    raise ValueError(f"ACM gave no DNS validation option for {domain}")


@dataclass(frozen=True)
class DnsRecordsArgs:
    dns: DnsConfig
    region: str
    # The API host (empty: none, the load balancer's own name serves).
    domain: str
    alb_dns_name: pulumi.Input[str]
    alb_zone_id: pulumi.Input[str]
    sender_domain: str
    # The SES identity (its `email_identity` output, so the MAIL FROM setting waits for it).
    email_identity: pulumi.Input[str]
    # SES's DKIM CNAMEs (name, type, value), from the identity's tokens.
    dkim_records: pulumi.Output[list[Record]]
    # Per frontend domain, the IPv4 addresses Vercel recommends for it, and the same as records to
    # publish (components/frontend.py, which asks Vercel).
    frontend_ipv4s: Mapping[str, pulumi.Output[list[str]]]
    frontend_records: pulumi.Output[list[Record]]


class DnsRecords(pulumi.ComponentResource):
    """`to_publish`: the records to publish by hand (none with a zone, where they are written here)."""

    def __init__(self, name: str, args: DnsRecordsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("motion:dns:Records", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        bounce = mail_from_domain(args.sender_domain)
        # terraform-provider-aws sesv2_email_identity_mail_from_attributes.html.markdown: the identity,
        # `mail_from_domain` and `behavior_on_mx_failure` (USE_DEFAULT_VALUE | REJECT_MESSAGE).
        self.mail_from = aws.sesv2.EmailIdentityMailFromAttributes(
            f"{name}-mail-from",
            email_identity=args.email_identity,
            mail_from_domain=bounce,
            behavior_on_mx_failure="USE_DEFAULT_VALUE",
            opts=child,
        )
        mail: list[Record] = [
            {"name": bounce, "type": "MX", "value": mail_from_mx(args.region), "purpose": "SES MAIL FROM"},
            {"name": bounce, "type": "TXT", "value": MAIL_FROM_SPF, "purpose": "SES MAIL FROM SPF"},
            {
                "name": f"_dmarc.{args.sender_domain}",
                "type": "TXT",
                "value": dmarc_value(args.dns.dmarc_policy),
                "purpose": "DMARC",
            },
        ]
        self.records: list[aws.route53.Record] = []
        if args.dns.managed:
            self._publish(name, args, mail, child)
            self.to_publish: pulumi.Output[list[Record]] = pulumi.Output.from_input([])
        else:
            self.to_publish = records_to_publish(
                args.domain, args.alb_dns_name, args.dkim_records, mail, args.frontend_records
            )
        self.register_outputs({"to_publish": self.to_publish})

    def _publish(
        self, name: str, args: DnsRecordsArgs, mail: list[Record], child: pulumi.ResourceOptions
    ) -> None:
        zone = args.dns.zone_id

        def record(key: str, **kwargs: Any) -> None:
            self.records.append(aws.route53.Record(f"{name}-{key}", zone_id=zone, opts=child, **kwargs))

        # An alias onto the load balancer (Route 53 AliasTarget: its DNS name and its canonical hosted
        # zone id, with EvaluateTargetHealth); an alias takes no ttl nor records (route53_record docs:
        # "Conflicts with ttl & records").
        record(
            "api-a",
            name=args.domain,
            type="A",
            aliases=[
                aws.route53.RecordAliasArgs(
                    name=args.alb_dns_name, zone_id=args.alb_zone_id, evaluate_target_health=True
                )
            ],
        )
        for index in range(DKIM_TOKENS):
            dkim = args.dkim_records.apply(functools.partial(_nth, index))
            record(
                f"dkim-{index}",
                name=dkim.apply(lambda r: r["name"]),
                type="CNAME",
                records=[dkim.apply(lambda r: r["value"])],
                ttl=RECORD_TTL,
            )
        for key, entry in zip(("mail-from-mx", "mail-from-spf", "dmarc"), mail, strict=True):
            # The provider quotes a TXT value itself (route53_record docs, `records`: a value longer than
            # 255 characters is split with `\"\"` inside the string), so the value goes in unquoted.
            record(key, name=entry["name"], type=entry["type"], records=[entry["value"]], ttl=RECORD_TTL)
        for domain, addresses in args.frontend_ipv4s.items():
            record(
                f"frontend-{domain.replace('.', '-')}",
                name=domain,
                type="A",
                records=addresses,
                ttl=RECORD_TTL,
            )


def _nth(index: int, records: list[Record]) -> Record:
    if len(records) != DKIM_TOKENS:
        raise ValueError(f"SES gave {len(records)} DKIM tokens, not {DKIM_TOKENS}")
    return records[index]


def records_to_publish(
    domain: str,
    alb_dns_name: pulumi.Input[str],
    dkim_records: pulumi.Input[list[Record]],
    mail: list[Record],
    frontend_records: pulumi.Input[list[Record]],
) -> pulumi.Output[list[Record]]:
    """Every record, in the order a person publishes them: the API host's CNAME onto the load
    balancer, SES's DKIM CNAMEs, MAIL FROM and DMARC records, each frontend domain's A records."""

    def build(alb: str, dkim: list[Record], frontend: list[Record]) -> list[Record]:
        api = [{"name": domain, "type": "CNAME", "value": alb, "purpose": "API host -> load balancer"}]
        return (api if domain else []) + [{**r, "purpose": "SES DKIM"} for r in dkim] + mail + list(frontend)

    return pulumi.Output.all(alb_dns_name, dkim_records, frontend_records).apply(
        lambda values: build(values[0], values[1], values[2])
    )
