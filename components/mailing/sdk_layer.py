"""The SDK layer every Python Lambda of the stack imports boto3 from (the mailer's two functions and the
task runner), published once per stack from the mailer's lock (components/aws/lambda_layer.py builds it)."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.app_code import LOCK
from components.aws.lambda_archive import ARCHITECTURE, REPO_ROOT, RUNTIME
from components.aws.lambda_layer import build_layer

# Where the layer was first created: inside the mailing component, as `mailing-sdk`. The alias moves
# that state here, so leaving the component replaces nothing (no new version, no function update).
_FORMER = {"name": "mailing-sdk", "parent": ("mailing", "motion:mailing:Mailing")}


class SdkLayer(pulumi.ComponentResource):
    """`<name_prefix>-mail-sdk`, named after the lock it is built from. A new version is published only
    when the lock changes; the old one is deleted once no function uses it (replacement creates the
    new version first)."""

    def __init__(self, name: str, name_prefix: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("motion:lambda:SdkLayer", name, None, opts)
        former_parent = pulumi.create_urn(*_FORMER["parent"])
        self.layer = aws.lambda_.LayerVersion(
            f"{name}-layer",
            layer_name=f"{name_prefix}-mail-sdk",
            description=f"boto3 and its dependencies from {LOCK.relative_to(REPO_ROOT).as_posix()}",
            code=pulumi.FileArchive(str(build_layer(LOCK))),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            opts=pulumi.ResourceOptions(
                parent=self, aliases=[pulumi.Alias(name=str(_FORMER["name"]), parent=former_parent)]
            ),
        )
        self.arn = self.layer.arn
        self.register_outputs({"arn": self.arn})
