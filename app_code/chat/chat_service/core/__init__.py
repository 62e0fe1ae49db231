"""The chat service's I/O-free core: what a chat instance decides, apart from how bytes move.

Layers, lowest first (each module imports only those above it in this list):

* `keys`, `protocol`, `ratelimit`: message ids, the wire format, token buckets;
* `messages`: the stored message and the outcome of a write;
* `ports`: the protocols the core needs from the outside (a client `Peer`, the `Bus` between
  instances, the `Store`, the token `Verifier`, a way to run blocking calls, timers);
* `persister`: batched writes handed back in submission order;
* `member`: the session states, and what the hub needs of a session (its one reference upwards);
* `project`: what an instance keeps per project, and `membership`, who is in which project;
* `hub`: the instance's projects, sends, fan-out, duplicate dropping and catch-up after gaps;
* `session`: one client's state machine (authenticating, open, closing) and its requests.

Nothing here opens a socket, starts a thread or imports an I/O library; `chat_service.adapters`
does, and `chat_service.app` wires the two together.
"""
