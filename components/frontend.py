"""The frontend: a Vercel project per stack and the environment variables that wire it to the backend.

Vite inlines every `VITE_*` variable into the JavaScript it ships to browsers, so these values are
public by construction (URLs and Clerk's *publishable* key). They are therefore not `sensitive`;
a secret must never get a `VITE_` name, and `secret_variables` (server-side only) always is sensitive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumiverse_vercel as vercel

from components.config_model import FrontendConfig


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
            opts=child,
        )
        # Sensitive values cannot target Vercel's `development` environment.
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
        self.project_id = self.project.id
        self.register_outputs({"project_id": self.project.id, "project_name": self.project.name})
