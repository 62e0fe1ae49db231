"""A service image: an ECR repository with secure defaults and the image built by the docker-build
provider, tagged by the hash of its build context (tags are immutable) and referenced by digest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build

from components.aws.build_context import check_checkout_modes, content_tag, context_files

# The checkout the program runs from: the image's context and Dockerfile are named relative to it.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
# The Fargate task definitions ask for ARM64 (Graviton); CI runners are x86, so buildx builds this
# under QEMU (docker/setup-qemu-action in the deploy workflow).
PLATFORMS = (docker_build.Platform.LINUX_ARM64,)


def image_user(dockerfile: Path) -> str:
    """The user the image runs as: its last `USER` instruction (Dockerfile reference, "USER": it
    "sets the user name (or UID) and optionally the user group (or GID) to use as the default user
    and group for the remainder of the current stage"). The task definition names the same user, so
    this line is its one source. An image without one, or one that runs as root, is refused."""
    users = [
        line.split(None, 1)[1].strip()
        for line in dockerfile.read_text().splitlines()
        if line.strip().upper().startswith("USER ")
    ]
    if not users:
        raise ValueError(f"{dockerfile} has no USER instruction: it would run as root")
    user = users[-1]
    if user.split(":")[0] in ("root", "0"):
        raise ValueError(f"{dockerfile} runs as root ({user})")
    return user


def _project_relative(path: Path) -> str:
    return path.relative_to(PROJECT_ROOT).as_posix()


@dataclass(frozen=True)
class ContainerImageArgs:
    repository_name: str
    # Relative to `context`, e.g. "files/Dockerfile". What the build sees is set by the
    # `<Dockerfile>.dockerignore` allow-list beside it, not here.
    dockerfile: str
    force_delete: bool
    # The build context (a directory of the checkout); the tag is a hash of what it sends.
    context: Path
    keep_images: int = 20
    # A customer managed key for the repository (the key's policy must allow use through ECR), else
    # AES-256 with S3-managed keys. Changing it replaces the repository (ECR fixes it at creation).
    kms_key_arn: pulumi.Input[str] | None = None


class ContainerImage(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: ContainerImageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        dockerfile = args.context / args.dockerfile
        # One walk of the context serves both the mode check and the tag.
        files = context_files(args.context, dockerfile)
        check_checkout_modes(args.context, files)
        super().__init__("motion:platform:ContainerImage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.repository = aws.ecr.Repository(
            f"{name}-repo",
            name=args.repository_name,
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
            encryption_configurations=[
                aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="KMS", kms_key=args.kms_key_arn)
                if args.kms_key_arn is not None
                else aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="AES256")
            ],
            force_delete=args.force_delete,
            # The name is fixed, so a replacement (a new encryption configuration: ECR fixes it at
            # creation) cannot create the new repository first; the running tasks keep their images
            # (referenced by digest, already pulled) while it is recreated and pushed again.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
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
        # The tag hashes exactly the files Docker sends (the ignore file's allow-list applied the
        # way moby applies it), so a fresh checkout, caches or touched mtimes keep the tag.
        tag = content_tag(args.context, dockerfile, [p.value for p in PLATFORMS], files)
        image_tag = pulumi.Output.concat(self.repository.repository_url, ":", tag)
        # docker-build (pulumi/pulumi-docker-build, provider/internal/image.go): `Diff` rebuilds when
        # the tags, the build options or its own `contextHash` (context.go `hashBuildContext`, which
        # reads this same ignore file) change; otherwise the stored digest stays and nothing is
        # pushed. Paths are relative to the project directory (where Pulumi runs the program), so
        # plans do not depend on where the repository is checked out.
        self.image = docker_build.Image(
            f"{name}-image",
            context=docker_build.BuildContextArgs(location=_project_relative(args.context)),
            dockerfile=docker_build.DockerfileArgs(location=_project_relative(dockerfile)),
            platforms=list(PLATFORMS),
            tags=[image_tag],
            push=True,
            # `Create` skips the build in a dry run when this is false (its default is true, which
            # would build arm64 under QEMU in every pull request's preview, with a read-only role).
            # The preview still shows a changed image: its tag and contextHash differ.
            build_on_preview=False,
            registries=[
                docker_build.RegistryArgs(
                    # The provider keeps only the host part (cli.go: credentials.ConvertToHostname).
                    address=self.repository.repository_url,
                    username=token.user_name,
                    password=pulumi.Output.secret(token.password),
                )
            ],
            opts=child,
        )
        # The digest pins exactly what was pushed; a tag could in principle point elsewhere.
        self.image_ref = pulumi.Output.concat(self.repository.repository_url, "@", self.image.digest)
        # What the task definitions run the container as (the image's own USER).
        self.user = image_user(dockerfile)
        self.repository_arn = self.repository.arn
        self.register_outputs({"repository_url": self.repository.repository_url, "image": self.image_ref})
