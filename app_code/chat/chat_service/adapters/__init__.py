"""The chat service's I/O: everything that touches a socket, a thread or an outside service.

* `listener`: the picows listener of one client socket (the core's `Peer`), feeding its session;
* `upgrade`: HTTP routing of the one port (WebSocket upgrades, liveness, readiness);
* `keepalive`: the ping sweep over every open socket;
* `redis_bus`: the `Bus` between instances (Redis pub/sub);
* `dynamo_store`: the `Store` (DynamoDB through boto3), and `NoStore`;
* `verifier`: the token `Verifier` (motion_common.auth on its own threads);
* `threads`: the thread pools blocking calls run on (the core's `Offload`).

Adapters import the core (and a few of them each other); the core never imports an adapter.
"""
