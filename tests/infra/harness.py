"""The infra tests' view of the program under mocks (see devstack/mocked_program.py, shared with
the offline plan): `run_stack(stack)` runs a stack from its real `Pulumi.<stack>.yaml`."""

from devstack.mocked_program import (
    ROOT,
    ProgramFailed,
    RecordedResource,
    StackRun,
    run_program,
    run_stack,
    run_with,
    stack_config_values,
)

__all__ = [
    "ROOT",
    "ProgramFailed",
    "RecordedResource",
    "StackRun",
    "run_program",
    "run_stack",
    "run_with",
    "stack_config_values",
]
