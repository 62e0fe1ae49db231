"""The local backend (`make run`): every service on this machine against local PostgreSQL, Redis
and a local AWS API, supervised as ECS would, with the Clerk and API Gateway stand-ins, and the
smoke run (`make smoke`) that drives it. It reads the dev stack's settings through
`stacktools.stack_files`; nothing outside `devstack` imports it except the tests and benchmarks of
the backend itself."""
