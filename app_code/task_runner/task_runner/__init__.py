"""A Lambda that runs one ECS task to completion during a deploy (the files schema migration) and fails
unless it exited 0: `core` decides (no I/O), `handler` talks to ECS."""
