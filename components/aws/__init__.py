"""Building blocks that know nothing of Motion: each takes documented, typed inputs with secure defaults
and never imports the stack's config, a concern module, the program or the service facts (a test,
tests/infra/test_layers.py, keeps it so)."""
