"""The frontend: a Vercel project per stack, the environment variables that wire it to the backend,
and the stack's domains attached to it.

The model (README, "The frontend on Vercel"): each stack owns one project, which deploys exactly the
Vercel environments in `frontendTargets` (production from the production branch, and development
for local runs where configured; preview deployments are off, their generated URLs being no origin
the backend's CORS allows), and every VITE_* variable is set for every one of them, with this
stack's own URLs. `frontendDomains` are attached to the project and so serve its production
deployments; their DNS records join the stack's `dnsRecords`.

Vite inlines every `VITE_*` variable into the JavaScript it ships to browsers, so these values are
public by construction (URLs and Clerk's *publishable* key). They are therefore not `sensitive`;
a secret must never get a `VITE_` name, and `secret_variables` (server-side only) always is sensitive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumiverse_vercel as vercel

from components.config.model import FrontendConfig


@dataclass(frozen=True)
class FrontendArgs:
    frontend: FrontendConfig
    public_variables: Mapping[str, pulumi.Input[str]]
    secret_variables: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)


class Frontend(pulumi.ComponentResource):
    def __init__(self, name: str, args: FrontendArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("motion:frontend:Frontend", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg = args.frontend
        for key in args.public_variables:
            if not key.startswith("VITE_"):
                raise ValueError(
                    f"frontend variable {key}: public variables must be VITE_* (Vite only exposes those)"
                )
        for key in args.secret_variables:
            if key.startswith("VITE_"):
                raise ValueError(
                    f"frontend variable {key}: a secret must not be VITE_* (it would ship to browsers)"
                )

        team = cfg.vercel_team_id or None
        self.project = vercel.Project(
            f"{name}-project",
            name=cfg.vercel_project_name,
            framework="vite",
            team_id=team,
            root_directory=cfg.root_directory,
            git_repository=vercel.ProjectGitRepositoryArgs(
                type="github", repo=cfg.git_repository, production_branch=cfg.production_branch
            ),
            # Without this every push to another branch builds a Preview deployment, which would get
            # no variables (provider: "Disable creation of Preview Deployments for this project").
            preview_deployments_disabled="preview" not in cfg.targets,
            opts=child,
        )
        # The provider refuses sensitive values on `development` ("Environment variables targeting
        # `development` must explicitly set `sensitive = false`", resource_project_environment_variable.go).
        secret_targets = [t for t in cfg.targets if t != "development"]
        variables = [(k, v, False, list(cfg.targets)) for k, v in sorted(args.public_variables.items())]
        variables += [(k, v, True, secret_targets) for k, v in sorted(args.secret_variables.items())]
        for key, value, sensitive, targets in variables:
            vercel.ProjectEnvironmentVariable(
                f"{name}-{key.lower().replace('_', '-')}",
                project_id=self.project.id,
                team_id=team,
                key=key,
                value=value,
                targets=targets,
                sensitive=sensitive,
                comment="managed by Pulumi (motion); set from the backend's stack outputs",
                opts=child,
            )
        # Without `git_branch` a project domain serves the production deployments ("By default, Project
        # Domains will be automatically applied to any production deployments", resource_project_domain.go).
        self.domains = [
            vercel.ProjectDomain(
                f"{name}-domain-{domain.replace('.', '-')}",
                project_id=self.project.id,
                team_id=team,
                domain=domain,
                opts=child,
            )
            for domain in cfg.domains
        ]
        # What DNS must answer for each domain, from Vercel's API for this project (the provider's
        # vercel_domain_config: GET /v6/domains/{domain}/config?projectIdOrName=..., which Vercel
        # documents for a domain "not yet associated with a project", so no ordering is needed).
        configs = [
            vercel.get_domain_config_output(
                domain=domain,
                project_id_or_name=self.project.id,
                team_id=team,
                opts=pulumi.InvokeOutputOptions(parent=self),
            )
            for domain in cfg.domains
        ]
        # Per domain, the addresses Vercel recommends (components/dns.py publishes them as A records).
        self.recommended_ipv4s: dict[str, pulumi.Output[list[str]]] = {
            domain: c.recommended_ipv4s for domain, c in zip(cfg.domains, configs, strict=True)
        }
        self.dns_records: pulumi.Output[list[dict[str, str]]] = pulumi.Output.all(
            *[pulumi.Output.all(c.domain, c.recommended_ipv4s) for c in configs]
        ).apply(domain_records)
        self.project_id = self.project.id
        self.register_outputs(
            {
                "project_id": self.project.id,
                "project_name": self.project.name,
                "domains": [d.domain for d in self.domains],
                "dns_records": self.dns_records,
            }
        )


def domain_records(configs: Sequence[Sequence[Any]]) -> list[dict[str, str]]:
    """An A record per recommended address of each domain. A records, not CNAMEs, because a DNS
    name holding a CNAME can hold nothing else (RFC 1034 3.6.2), so a CNAME is impossible at a zone's
    apex (`motion.example`), and Vercel treats a domain whose A record resolves to it as configured
    (its domain config API's `configuredBy: "A"`). One record type for every domain, so the program
    need not guess which names are apexes."""
    records: list[dict[str, str]] = []
    for domain, addresses in configs:
        if not addresses:
            raise ValueError(f"Vercel recommends no IPv4 address for {domain}: check the domain in Vercel")
        records += [
            {"name": domain, "type": "A", "value": address, "purpose": "frontend -> Vercel"}
            for address in addresses
        ]
    return records
