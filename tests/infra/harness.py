"""The infra tests' view of the program under mocks (see stacktools/mocked_program.py, shared with
the offline plan): `run_stack(stack)` runs a stack from its real `Pulumi.<stack>.yaml`."""

from stacktools.mocked_program import (
    ROOT,
    ProgramFailed,
    RecordedResource,
    StackRun,
    computed_outputs,
    run_program,
    run_stack,
    run_with,
    stack_config_values,
)


def arn(run: StackRun, resource: RecordedResource) -> str:
    """The ARN the (mocked) provider reports for a resource."""
    return str(computed_outputs(resource.type, resource.name, resource.inputs, run.config.region)["arn"])


__all__ = [
    "ROOT",
    "ProgramFailed",
    "RecordedResource",
    "StackRun",
    "arn",
    "run_program",
    "run_stack",
    "run_with",
    "stack_config_values",
]
