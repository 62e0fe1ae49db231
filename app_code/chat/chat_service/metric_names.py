"""The chat service's own metrics (CloudWatch namespace, dimension, names): plain data, read by the
service (published once a minute, and at shutdown, as one EMF document in its log; computed from
the hub's counters, so the hot paths pay nothing for them) and by the program for the dashboard.
Dimension `Service` = `chat`.

| metric | meaning |
|---|---|
| `Connections` | open WebSocket connections on the task at the end of the interval (a gauge: read Average or Maximum) |
| `SendsAccepted` | sends accepted from clients |
| `Deliveries` | messages written to members' sockets (one per member) |
| `SlowConsumerCloses` | connections closed for not reading fast enough |
| `RateLimitCloses` | connections closed for sending frames too fast |
| `BusDropped` | messages the Redis publisher dropped unsent (the gap notice sends receivers to the store) |
"""

from __future__ import annotations

from typing import Final

NAMESPACE: Final = "Motion/Chat"
DIMENSION: Final = "Service"
SERVICE: Final = "chat"
CONNECTIONS: Final = "Connections"
SENDS_ACCEPTED: Final = "SendsAccepted"
DELIVERIES: Final = "Deliveries"
SLOW_CONSUMER_CLOSES: Final = "SlowConsumerCloses"
RATE_LIMIT_CLOSES: Final = "RateLimitCloses"
BUS_DROPPED: Final = "BusDropped"
ALL: Final = (CONNECTIONS, SENDS_ACCEPTED, DELIVERIES, SLOW_CONSUMER_CLOSES, RATE_LIMIT_CLOSES, BUS_DROPPED)
