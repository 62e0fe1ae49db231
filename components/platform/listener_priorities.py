"""Which service's rules hold which priority on the shared listener (the services' own modules and the
local stand-in, devstack/alb.py, read it)."""

from __future__ import annotations

from typing import Final

# Every rule priority on the listener, in one table so none collides: "A listener can't have
# multiple rules with the same priority" (ELBv2 API Reference, CreateRule, Priority). Each service's
# health-path refusal takes the priority just before its own (components/aws/alb_rules.py, `service_rules`).
LISTENER_PRIORITIES: Final[dict[str, int]] = {
    "files-upload": 100,
    "files-download": 110,
    "chat": 200,
}
