"""Motion's real-time chat service (WebSocket, Redis pub/sub fan-out, DynamoDB history).

This module holds only the constants the infrastructure needs (the Pulumi component imports it
to configure the ALB and the task), so importing it pulls in none of the service's dependencies.
"""

from __future__ import annotations

from typing import Final

#: Port the container listens on unless PORT says otherwise.
DEFAULT_PORT: Final = 8080

#: The WebSocket endpoint and the health checks, all on the one port: liveness ("restart me", the
#: container health check: the event loop answers) and readiness ("send me traffic", the load
#: balancer's: not draining, and the history store answers).
WS_PATH: Final = "/chat/ws"
LIVENESS_PATH: Final = "/chat/livez"
READINESS_PATH: Final = "/chat/readyz"

#: Listener rule path patterns that route to this service.
ALB_PATH_PATTERNS: Final[list[str]] = ["/chat/*"]

#: The server pings every connection this often, so a healthy connection is never silent for longer.
PING_INTERVAL_SECONDS: Final = 25

#: The ALB closes connections silent for its idle timeout; it has to be at least this: a ping interval,
#: and as long again for a slow pong. (The platform sets its own value; a test holds it to this.)
MIN_ALB_IDLE_TIMEOUT_SECONDS: Final = 2 * PING_INTERVAL_SECONDS

#: On SIGTERM the service closes every socket with 1012 and finishes pending writes within this time;
#: the task's stopTimeout must be longer, and the target group's deregistration delay need not be
#: (clients reconnect to another task as soon as they get 1012).
SHUTDOWN_GRACE_SECONDS: Final = 10
ALB_DEREGISTRATION_DELAY_SECONDS: Final = 15


#: DynamoDB actions the task role needs on the messages table: batches of plain sends, history and
#: claim reads, and PutItem, which a TransactWriteItems of a send with a client id (the message and
#: its claim) is authorized as (DynamoDB Developer Guide, "Using IAM with DynamoDB transactions").
TABLE_ACTIONS: Final[list[str]] = ["dynamodb:BatchWriteItem", "dynamodb:PutItem", "dynamodb:Query"]

__all__ = [
    "ALB_DEREGISTRATION_DELAY_SECONDS",
    "ALB_PATH_PATTERNS",
    "DEFAULT_PORT",
    "LIVENESS_PATH",
    "MIN_ALB_IDLE_TIMEOUT_SECONDS",
    "PING_INTERVAL_SECONDS",
    "READINESS_PATH",
    "SHUTDOWN_GRACE_SECONDS",
    "TABLE_ACTIONS",
    "WS_PATH",
]
