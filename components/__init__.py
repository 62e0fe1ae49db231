"""Motion's Pulumi components, in layers: the composition root (`program`), one component per concern
(`network`, `platform`, `mailing`, `files`, `chat`, `frontend`, `dns`), the stack's configuration (`config`),
the services' facts (`facts`, `app_code`), and building blocks that know nothing of Motion (`aws`).
tests/infra/test_layers.py keeps the imports acyclic and pointing that way."""
