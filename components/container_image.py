"""A service image: an ECR repository with secure defaults and the image built inline by pulumi-docker,
tagged by the hash of its build inputs (tags are immutable) and referenced by digest."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker

PROJECT_ROOT = Path(__file__).resolve().parents[1]
APP_CODE = PROJECT_ROOT / "app_code"
IGNORED_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".venv", "tests"}


def build_inputs(context: Path, sources: Sequence[str]) -> list[Path]:
    """The files the Dockerfile copies, as an explicit sorted list (no caches), relative to `context`."""
    files: set[Path] = set()
    for source in sources:
        root = context / source
        candidates = [root] if root.is_file() else root.rglob("*")
        for path in candidates:
            relative = path.relative_to(context)
            if path.is_file() and not IGNORED_PARTS & set(relative.parts) and path.suffix != ".pyc":
                files.add(relative)
    return sorted(files, key=lambda p: p.as_posix())


def content_tag(context: Path, sources: Sequence[str]) -> str:
    """Same inputs, same tag: an unchanged service never pushes (or redeploys) a new image."""
    digest = hashlib.sha256()
    for relative in build_inputs(context, sources):
        digest.update(relative.as_posix().encode() + b"\0" + (context / relative).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _project_relative(path: Path) -> str:
    return path.relative_to(PROJECT_ROOT).as_posix()


@dataclass(frozen=True)
class ContainerImageArgs:
    repository_name: str
    dockerfile: str  # relative to app_code/, e.g. "files/Dockerfile"
    sources: tuple[str, ...]  # what the Dockerfile copies, relative to app_code/
    force_delete: bool
    context: Path = APP_CODE
    keep_images: int = 20


class ContainerImage(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: ContainerImageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("motion:platform:ContainerImage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.repository = aws.ecr.Repository(
            f"{name}-repo",
            name=args.repository_name,
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
            encryption_configurations=[
                aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="AES256")
            ],
            force_delete=args.force_delete,
            opts=child,
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=self.repository.name,
            policy=json.dumps(
                {
                    "rules": [
                        {
                            "rulePriority": 1,
                            "description": "drop untagged layers after a week",
                            "selection": {
                                "tagStatus": "untagged",
                                "countType": "sinceImagePushed",
                                "countUnit": "days",
                                "countNumber": 7,
                            },
                            "action": {"type": "expire"},
                        },
                        {
                            "rulePriority": 2,
                            "description": f"keep the newest {args.keep_images} images",
                            "selection": {
                                "tagStatus": "any",
                                "countType": "imageCountMoreThan",
                                "countNumber": args.keep_images,
                            },
                            "action": {"type": "expire"},
                        },
                    ]
                }
            ),
            opts=child,
        )
        token = aws.ecr.get_authorization_token_output(
            registry_id=self.repository.registry_id, opts=pulumi.InvokeOptions(parent=self)
        )
        tag = content_tag(args.context, (args.dockerfile, *args.sources))
        self.image = docker.Image(
            f"{name}-image",
            image_name=pulumi.Output.concat(self.repository.repository_url, ":", tag),
            # Relative to the project directory (where Pulumi runs the program), so plans do not
            # depend on where the repository is checked out.
            build=docker.DockerBuildArgs(
                context=_project_relative(args.context),
                dockerfile=_project_relative(args.context / args.dockerfile),
                platform="linux/arm64",
            ),
            registry=docker.RegistryArgs(
                server=self.repository.repository_url,
                username=token.user_name,
                password=pulumi.Output.secret(token.password),
            ),
            opts=child,
        )
        # The digest pins exactly what was pushed; a tag could in principle point elsewhere.
        self.image_ref = self.image.repo_digest
        self.repository_arn = self.repository.arn
        self.register_outputs({"repository_url": self.repository.repository_url, "image": self.image_ref})
