"""The chat service's own metrics (CloudWatch namespace, dimension, names): plain data, read by the
service (published once a minute, and at shutdown, as one EMF document in its log; the counters
are the hub's own, so the hot paths pay nothing for them, and the fan-out latency costs one sampled
observation per message, not per member) and by the program for the dashboard.
Dimension `Service` = `chat`.

| metric | meaning |
|---|---|
| `Connections` | open WebSocket connections on the task at the end of the interval (a gauge: read Average or Maximum) |
| `SendsAccepted` | sends accepted from clients |
| `Deliveries` | messages written to members' sockets (one per member) |
| `SlowConsumerCloses` | connections closed for not reading fast enough |
| `RateLimitCloses` | connections closed for sending frames too fast |
| `BusDropped` | messages the Redis publisher dropped unsent (the gap notice sends receivers to the store) |
| `FanoutLatency` | ms from a message's id (assigned when its send was accepted) to its write to the members' sockets on a task, for each message sent there or arriving live from Redis (a distribution: a sample of at most 100 values per task and minute, read p50/p99) |
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
FANOUT_LATENCY: Final = "FanoutLatency"
ALL: Final = (
    CONNECTIONS,
    SENDS_ACCEPTED,
    DELIVERIES,
    SLOW_CONSUMER_CLOSES,
    RATE_LIMIT_CLOSES,
    BUS_DROPPED,
    FANOUT_LATENCY,
)
