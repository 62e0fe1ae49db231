"""Tools that work on the Pulumi program and its stack files without a cloud or a Pulumi CLI.

`mocked_program` runs `build(config)` under Pulumi mocks and records every resource (the infra
tests and the offline plan use it); `plan` renders each stack's plan and keeps the snapshots in
`snapshots/`; `pulumi_yaml` generates `Pulumi.yaml`'s config schema from the key table;
`stack_schema` ports the CLI's check of stack files against that schema; `stack_files` reads a
stack file as the engine hands it to the program; `preflight` lists what a stack still needs
before and after its first `pulumi up`.

Dependencies point one way: `stacktools` imports `components`; nothing in `components` imports it,
and the local backend (`devstack`) uses only `stack_files` (to run the dev stack's settings).
"""
