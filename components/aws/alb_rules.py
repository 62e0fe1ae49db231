"""An ALB's path rules as plain data (stdlib only): the program builds its listener rules from them and
the local stand-in (`devstack/alb.py`) routes by the same ones. Which service holds which priority is
the platform's table (components/platform/listener_priorities.py).

A service's health paths (liveness and readiness) must not be reachable through the public listener: the target group's
health checks go to each target directly ("Your Application Load Balancer periodically sends
requests to its registered targets to test their status", Elastic Load Balancing, "Health checks for
Application Load Balancer target groups",
https://docs.aws.amazon.com/elasticloadbalancing/latest/application/target-group-health-checks.html),
not through listener rules, so nothing is lost by refusing the path there. When a service's public
path patterns cover its health check path, a rule one priority ahead of its forward rule answers
that path with the listener's own 404. "Rules are evaluated in priority order, from the lowest value
to the highest value. The default rule is evaluated last." (Elastic Load Balancing, "Listener rules
for your Application Load Balancer",
https://docs.aws.amazon.com/elasticloadbalancing/latest/application/listener-rules.html).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

# The listener's default action (components/platform/platform.py) and the refusal of health paths answer
# the same, so a probe cannot tell a health path from any unknown path.
NOT_FOUND_STATUS: Final = 404
NOT_FOUND_BODY: Final = '{"error":"not found"}'
NOT_FOUND_CONTENT_TYPE: Final = "application/json"


@dataclass(frozen=True, slots=True)
class PathRule:
    """A listener rule with a path-pattern condition: forward to the service, or the listener's 404."""

    priority: int
    patterns: tuple[str, ...]
    forward: bool


def pattern_matches(pattern: str, path: str) -> bool:
    """ALB path-pattern semantics: "The comparison is case sensitive. The following wildcard characters
    are supported: * (matches 0 or more characters) and ? (matches exactly 1 character) ... The path
    pattern is compared only to the path of the URL, not to its query string." (ELBv2 API Reference,
    PathPatternConditionConfig)."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, path) is not None


def service_rules(priority: int, path_patterns: Sequence[str], health_paths: Sequence[str]) -> list[PathRule]:
    """The rules of one service, in priority order: its forward rule, preceded by a 404 for those of
    its health paths (liveness, readiness) that its patterns would otherwise forward."""
    rules = [PathRule(priority, tuple(path_patterns), forward=True)]
    covered = tuple(p for p in health_paths if any(pattern_matches(pattern, p) for pattern in path_patterns))
    if covered:
        rules.insert(0, PathRule(priority - 1, covered, forward=False))
    return rules
