"""Motion's infrastructure: load and validate the stack's config, then build it."""

from components.config.loader import load_stack_config
from components.program import build

build(load_stack_config())
