#!/usr/bin/env python
"""Chat service benchmark: two `python -m chat_service` instances sharing one Redis, on this machine.

Phases (each can be skipped):

1. fan-out: 1,000 connections in 100 projects of 10 (5 members on each instance), open-loop senders
   at several rates; reports delivered messages/s and send-to-receive latency (p50/p99) separately
   for recipients on the other instance ("cross") and on the sender's ("local"), plus the CPU of
   each process. Persistence is off (CHAT_PERSIST=false), so this is the fan-out path.
2. persistence: the same shape with CHAT_PERSIST=true against the local DynamoDB stand-in (moto),
   at lower rates; reports the sender's ack latency, the server CPU per send and how many messages
   each BatchWriteItem carried. moto is a Python web server on the same two cores, so the latencies
   say little about DynamoDB itself; the CPU per send (boto3's share) does carry over.
3. idle memory: 5,000 connections (each authenticated and joined to a project), RSS growth of the
   two instances divided by the connection count.
4. socket layers (`--compare-layers`): the same load against a minimal single-process fan-out server
   written on picows (with and without aiofastnet) and on websockets, to compare the layers alone.

The load generator runs in separate processes (default 2) and competes for the same cores as the
servers and Redis; its CPU is reported too. Every figure on a shared 2-core machine is noisy.

Comparing two versions of the service (`--code DIR`, once per checkout, e.g. one from
`git worktree add /tmp/chat-old <commit>`): the fan-out and persistence phases run for each
checkout in turn, `--rounds` times, alternating, and the server CPU per delivery and per send is
summarized as each checkout's median and its ratio to the first checkout's. Alternating keeps the
other tenants' load on a shared machine from favouring one side.

Usage: .venv/bin/python bench/chat_bench.py [--quick] [--rates 1000,2000,3000] [--compare-layers]
       .venv/bin/python bench/chat_bench.py --quick --skip-idle --code /tmp/chat-old --code . --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from components.app_code import SERVICE_ROOTS, pythonpath  # noqa: E402
from components.facts import CHAT  # noqa: E402

sys.path[1:1] = [str(p) for p in SERVICE_ROOTS["chat"]]

import picows  # noqa: E402
import uvloop  # noqa: E402

LOCALHOST = "127.0.0.1"
PAD = "x" * 60  # ~100-byte texts, ~220-byte events on the wire
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------------------------------
# Load client (runs in child processes)
# --------------------------------------------------------------------------------------------------


@dataclass
class ConnSpec:
    instance: int  # index into the URL list
    project: str
    token: str | None


class Recorder:
    """Deliveries and latencies of the messages sent inside the measurement window."""

    def __init__(self) -> None:
        self.window = (0, 0)
        self.cross = array("i")
        self.local = array("i")
        self.acks = array("i")
        self.errors = 0
        self.joined = 0
        self.hellos = 0
        self.closed: list[tuple[int, str]] = []

    def reset(self, start_ns: int, end_ns: int) -> None:
        self.window = (start_ns, end_ns)
        self.cross = array("i")
        self.local = array("i")
        self.acks = array("i")
        self.errors = 0


class LoadListener(picows.WSListener):
    __slots__ = ("instance", "rec")

    def __init__(self, rec: Recorder, instance: int) -> None:
        self.rec = rec
        self.instance = instance

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        kind = frame.msg_type
        if kind is picows.WSMsgType.CLOSE:
            self.rec.closed.append((frame.get_close_code().value, frame.get_close_reason()))
            transport.disconnect()
            return
        if kind is not picows.WSMsgType.TEXT and kind is not picows.WSMsgType.BINARY:
            return
        now = time.monotonic_ns()
        data = frame.get_payload_as_bytes()
        rec = self.rec
        if data.startswith(b'{"type":"message"'):
            i = data.find(b'"text":"') + 8
            j = data.find(b":", i)
            sent = int(data[i:j])
            if rec.window[0] <= sent < rec.window[1]:
                latency = (now - sent) // 1000
                if data[j + 1] - 48 != self.instance:
                    rec.cross.append(latency)
                else:
                    rec.local.append(latency)
        elif data.startswith(b'{"type":"ack"'):
            i = data.find(b'"ref":') + 6
            j = data.find(b",", i)
            sent = int(data[i:j])
            if rec.window[0] <= sent < rec.window[1]:
                rec.acks.append((now - sent) // 1000)
        elif data.startswith(b'{"type":"joined"'):
            rec.joined += 1
        elif data.startswith(b'{"type":"hello"'):
            rec.hellos += 1
        elif data.startswith(b'{"type":"error"'):
            rec.errors += 1


def _send_frame(project: str, instance: int) -> tuple[bytes, bytes]:
    head = b'{"type":"send","project":"' + project.encode() + b'","ref":'
    return head, f":{instance}:{PAD}".encode() + b'"}'


async def _open(url: str, spec: ConnSpec, rec: Recorder) -> picows.WSTransport:
    headers = {"Authorization": f"Bearer {spec.token}"} if spec.token else None
    for attempt in range(20):
        try:
            transport, _ = await picows.ws_connect(
                lambda: LoadListener(rec, spec.instance),
                url,
                extra_headers=headers,
                websocket_handshake_timeout=20,
                read_buffer_init_size=4096,
            )
            return transport
        except OSError:
            # A full accept backlog during a connect storm; try again shortly.
            await asyncio.sleep(0.05 * (attempt + 1))
    raise RuntimeError(f"could not connect to {url}")


async def _client(
    pipe: multiprocessing.connection.Connection, urls: list[str], specs: list[ConnSpec]
) -> None:
    rec = Recorder()
    transports: list[picows.WSTransport] = []
    for start in range(0, len(specs), 250):
        chunk = specs[start : start + 250]
        transports += await asyncio.gather(*(_open(urls[s.instance], s, rec) for s in chunk))
    for transport, spec in zip(transports, specs, strict=True):
        transport.send(picows.WSMsgType.TEXT, b'{"type":"join","project":"' + spec.project.encode() + b'"}')
    deadline = time.monotonic() + 60
    while rec.joined < len(specs):
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {rec.joined}/{len(specs)} joins confirmed; closes: {rec.closed[:3]}")
        await asyncio.sleep(0.01)
    frames = [_send_frame(s.project, s.instance) for s in specs]
    pipe.send({"ready": len(transports)})
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, pipe.recv)
        if command["cmd"] == "stop":
            break
        rate, start_ns, warmup, duration, drain = (
            command["rate"],
            command["start_ns"],
            command["warmup"],
            command["duration"],
            command["drain"],
        )
        window_start = start_ns + int(warmup * 1e9)
        window_end = window_start + int(duration * 1e9)
        rec.reset(window_start, window_end)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        wall0 = time.monotonic()
        await asyncio.sleep(max(0.0, (start_ns - time.monotonic_ns()) / 1e9))
        sent = sent_in_window = 0
        i = 0
        n = len(transports)
        while True:
            now = time.monotonic_ns()
            if now >= window_end:
                break
            due = int((now - start_ns) * rate / 1e9) - sent
            for _ in range(due):
                head, tail = frames[i]
                stamp = time.monotonic_ns()
                transports[i].send(
                    picows.WSMsgType.TEXT, head + b"%d" % stamp + b',"text":"' + b"%d" % stamp + tail
                )
                if stamp >= window_start:
                    sent_in_window += 1
                sent += 1
                i = (i + 1) % n
            await asyncio.sleep(0.001)
        await asyncio.sleep(drain)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        pipe.send(
            {
                "sent": sent_in_window,
                "cross": rec.cross.tobytes(),
                "local": rec.local.tobytes(),
                "acks": rec.acks.tobytes(),
                "errors": rec.errors,
                "closed": len(rec.closed),
                "cpu": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime),
                "wall": time.monotonic() - wall0,
            }
        )
    for transport in transports:
        transport.disconnect()


def client_process(
    pipe: multiprocessing.connection.Connection, urls: list[str], specs: list[ConnSpec]
) -> None:
    raise_fd_limit()
    try:
        uvloop.run(_client(pipe, urls, specs))
    except Exception as err:
        pipe.send({"error": repr(err)})


# --------------------------------------------------------------------------------------------------
# Minimal fan-out servers for the socket-layer comparison (run as child processes)
# --------------------------------------------------------------------------------------------------


def _mini_picows(port: int, use_aiofastnet: bool) -> None:
    import orjson
    from chat_service.core.protocol import text_frame

    groups: dict[str, list[picows.WSTransport]] = {}

    class Listener(picows.WSListener):
        def on_ws_connected(self, transport: picows.WSTransport) -> None:
            self.transport = transport

        def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
            if frame.msg_type is not picows.WSMsgType.TEXT:
                return
            doc = orjson.loads(frame.get_payload_as_memoryview())
            project = doc["project"]
            if doc["type"] == "join":
                groups.setdefault(project, []).append(transport)
                transport.send(picows.WSMsgType.TEXT, orjson.dumps({"type": "joined", "project": project}))
            elif doc["type"] == "send":
                event = orjson.dumps(
                    {"type": "message", "project": project, "user": "u", "text": doc["text"]}
                )
                data = text_frame(event)
                for member in groups.get(project, ()):
                    member.underlying_transport.write(data)

    async def main() -> None:
        await picows.ws_create_server(
            lambda _: Listener(), LOCALHOST, port, use_aiofastnet=use_aiofastnet, read_buffer_init_size=2048
        )
        await asyncio.Event().wait()

    uvloop.run(main())


def _mini_websockets(port: int) -> None:
    import orjson
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    groups: dict[str, set[ServerConnection]] = {}

    async def handler(ws: ServerConnection) -> None:
        async for raw in ws:
            doc = orjson.loads(raw)
            project = doc["project"]
            if doc["type"] == "join":
                groups.setdefault(project, set()).add(ws)
                await ws.send(orjson.dumps({"type": "joined", "project": project}).decode())
            elif doc["type"] == "send":
                event = orjson.dumps(
                    {"type": "message", "project": project, "user": "u", "text": doc["text"]}
                )
                broadcast(groups.get(project, set()), event.decode())

    async def main() -> None:
        async with serve(handler, LOCALHOST, port, compression=None, ping_interval=None, max_queue=None):
            await asyncio.Event().wait()

    uvloop.run(main())


# --------------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------------


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def percentile(values: Sequence[int], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"ws://{LOCALHOST}:{self.port}{CHAT.ws_path}"

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(
            f"http://{LOCALHOST}:{self.port}{CHAT.readiness_path}", timeout=5
        ) as resp:
            return dict(json.loads(resp.read()))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.unlink(missing_ok=True)


def start_process(
    name: str, cmd: list[str], env: dict[str, str], port: int, ready_path: str | None
) -> Service:
    from devstack.servers import wait_until

    log = Path(tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")[1])
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=raise_fd_limit)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited: {log.read_text()[-2000:]}")
        if ready_path is None:
            import socket

            with socket.create_connection((LOCALHOST, port), timeout=0.5):
                return True
        with urllib.request.urlopen(f"http://{LOCALHOST}:{port}{ready_path}", timeout=1) as resp:
            return bool(resp.status == 200)

    wait_until(ready, 30, name)
    return Service(name, proc, port, log)


@dataclass
class Stack:
    """Redis, the stand-in identity provider, optionally moto, and two chat instances."""

    persist: bool
    # The checkout whose app_code/ the chat instances run.
    code: Path = ROOT
    extra_env: dict[str, str] = field(default_factory=dict)
    services: list[Service] = field(default_factory=list)

    def __enter__(self) -> Stack:
        from devstack.identity import Issuer, JwksServer
        from devstack.servers import MotoServer, RedisServer, free_port

        self._exit = contextlib.ExitStack()
        self.issuer = Issuer()
        jwks = self._exit.enter_context(JwksServer(self.issuer))
        self.redis = self._exit.enter_context(RedisServer())
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "REDIS_", "CHAT_", "AUTH_"))},
            "HOST": LOCALHOST,
            "REDIS_HOST": LOCALHOST,
            "REDIS_PORT": str(self.redis.port),
            "AUTH_ISSUER": self.issuer.issuer,
            "AUTH_JWKS_URL": jwks.url,
            "AUTH_AUDIENCE": self.issuer.audience,
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": pythonpath("chat", self.code / "app_code"),
            "CHAT_PERSIST": "true" if self.persist else "false",
            **self.extra_env,
        }
        if self.persist:
            import boto3
            from chat_service.schema import create_table_kwargs

            self.moto = self._exit.enter_context(MotoServer())
            env.update(self.moto.env())
            env["CHAT_TABLE"] = "bench-messages"
            boto3.client(
                "dynamodb",
                endpoint_url=self.moto.endpoint,
                region_name="us-east-1",
                aws_access_key_id="x",
                aws_secret_access_key="x",
            ).create_table(**create_table_kwargs("bench-messages"))
        for name in ("chat-a", "chat-b"):
            port = free_port()
            service = start_process(
                name,
                [sys.executable, "-m", "chat_service"],
                {**env, "PORT": str(port)},
                port,
                CHAT.readiness_path,
            )
            self.services.append(service)
            self._exit.callback(service.stop)
        return self

    def __exit__(self, *exc: object) -> None:
        self._exit.close()

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.services]

    def pids(self) -> dict[str, int]:
        pids = {s.name: s.proc.pid for s in self.services}
        assert self.redis.proc is not None
        pids["redis"] = self.redis.proc.pid
        moto = getattr(self, "moto", None)
        if moto is not None and moto.proc is not None:
            pids["moto"] = moto.proc.pid
        return pids


def plan(connections: int, group: int, instances: int, tokens: list[str] | None) -> list[ConnSpec]:
    """Connection i joins project i // group; a project's members alternate between instances."""
    return [
        ConnSpec(
            instance=i % instances,
            project=f"bench-{i // group}",
            token=tokens[i % len(tokens)] if tokens else None,
        )
        for i in range(connections)
    ]


def mint_tokens(issuer: Any, connections: int, group: int, users: int) -> list[str]:
    """Connection i is user i % users and joins project i // group: each user's token lists the
    projects of all its connections."""
    count = min(connections, users)
    return [
        issuer.mint(f"user-{u}", sorted({f"bench-{i // group}" for i in range(u, connections, count)}))
        for u in range(count)
    ]


class Load:
    """Client processes holding the connections, driven phase by phase."""

    def __init__(self, urls: list[str], specs: list[ConnSpec], processes: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes: list[multiprocessing.connection.Connection] = []
        self.procs: list[Any] = []
        for p in range(processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=client_process, args=(child, urls, specs[p::processes]), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)
        for pipe in self.pipes:
            if not pipe.poll(180):
                raise RuntimeError("load client did not get ready")
            reply = pipe.recv()
            if "error" in reply:
                raise RuntimeError(f"load client failed: {reply['error']}")

    def run(self, rate: float, warmup: float, duration: float, drain: float) -> list[dict[str, Any]]:
        start_ns = time.monotonic_ns() + 300_000_000
        for pipe in self.pipes:
            pipe.send(
                {
                    "cmd": "run",
                    "rate": rate / len(self.pipes),
                    "start_ns": start_ns,
                    "warmup": warmup,
                    "duration": duration,
                    "drain": drain,
                }
            )
        return [pipe.recv() for pipe in self.pipes]

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send({"cmd": "stop"})
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    return total - idle, total


@contextlib.contextmanager
def cpu_meter(pids: dict[str, int]) -> Iterator[dict[str, float]]:
    """CPU % (100 = one core) of each process, and of the whole machine under "machine" (which
    shows what other tenants of a shared machine took meanwhile)."""
    result: dict[str, float] = {}
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    busy0, total0 = machine_ticks()
    start = time.monotonic()
    yield result
    elapsed = time.monotonic() - start
    for name, pid in pids.items():
        result[name] = (cpu_seconds(pid) - before[name]) / elapsed * 100
    busy1, total1 = machine_ticks()
    result["machine"] = (busy1 - busy0) / max(total1 - total0, 1) * (os.cpu_count() or 1) * 100


def summarize(results: list[dict[str, Any]], duration: float, group: int) -> dict[str, Any]:
    cross: list[int] = []
    local: list[int] = []
    acks: list[int] = []
    for r in results:
        if "error" in r:
            raise RuntimeError(r["error"])
        cross += array("i", r["cross"]).tolist()
        local += array("i", r["local"]).tolist()
        acks += array("i", r["acks"]).tolist()
    sent = sum(r["sent"] for r in results)
    delivered = len(cross) + len(local)
    return {
        "sent_per_s": sent / duration,
        "delivered_per_s": delivered / duration,
        "delivered_ratio": delivered / (sent * group) if sent else 0.0,
        "cross_p50_ms": percentile(cross, 0.50) / 1000,
        "cross_p99_ms": percentile(cross, 0.99) / 1000,
        "local_p50_ms": percentile(local, 0.50) / 1000,
        "local_p99_ms": percentile(local, 0.99) / 1000,
        "ack_p50_ms": percentile(acks, 0.50) / 1000,
        "ack_p99_ms": percentile(acks, 0.99) / 1000,
        "errors": sum(r["errors"] for r in results),
        "closed": sum(r["closed"] for r in results),
        "client_cpu_pct": sum(r["cpu"] for r in results) / max(r["wall"] for r in results) * 100,
    }


def fan_out_phase(
    args: argparse.Namespace, persist: bool, rates: list[float], code: Path = ROOT
) -> list[dict[str, Any]]:
    rows = []
    with Stack(persist=persist, code=code) as stack:
        tokens = mint_tokens(stack.issuer, args.connections, args.group, args.connections)
        load = Load(stack.urls, plan(args.connections, args.group, 2, tokens), args.clients)
        try:
            for rate in rates:
                counters0 = [s.health() for s in stack.services]
                span = args.warmup + args.duration + args.drain
                with cpu_meter(stack.pids()) as cpu:
                    results = load.run(rate, args.warmup, args.duration, args.drain)
                counters1 = [s.health() for s in stack.services]
                row = summarize(results, args.duration, args.group)
                row["rate"] = rate
                row["cpu_pct"] = cpu
                server_cpu = sum(v for k, v in cpu.items() if k.startswith("chat")) / 100 * span
                ours = sum(v for k, v in cpu.items() if k != "machine") + row["client_cpu_pct"]
                row["other_tenants_cpu_pct"] = max(0.0, cpu["machine"] - ours)
                deliveries = sum(
                    c1["delivered"] - c0["delivered"] for c0, c1 in zip(counters0, counters1, strict=True)
                )
                sends = sum(
                    c1["accepted"] - c0["accepted"] for c0, c1 in zip(counters0, counters1, strict=True)
                )
                row["server_us_per_delivery"] = server_cpu / deliveries * 1e6 if deliveries else float("nan")
                row["server_us_per_send"] = server_cpu / sends * 1e6 if sends else float("nan")
                batches = sum(
                    c1["persist_batches"] - c0["persist_batches"]
                    for c0, c1 in zip(counters0, counters1, strict=True)
                )
                if batches:
                    persisted = sum(
                        c1["persisted"] - c0["persisted"] for c0, c1 in zip(counters0, counters1, strict=True)
                    )
                    row["items_per_batch"] = persisted / batches
                row["code"] = str(code)
                rows.append(row)
                print_row("persist" if persist else "fan-out", row)
        finally:
            load.close()
    return rows


def idle_phase(args: argparse.Namespace, code: Path = ROOT) -> dict[str, Any]:
    with Stack(persist=False, code=code) as stack:
        # One token per connection, as in real use (each browser tab holds its own session token).
        tokens = mint_tokens(stack.issuer, args.idle_connections, args.group, args.idle_connections)
        # Warm up code paths and allocator pools first, so the baseline is not a cold process.
        warm = Load(stack.urls, plan(200, args.group, 2, tokens), 1)
        warm.close()
        time.sleep(1.0)
        before = {s.name: rss_bytes(s.proc.pid) for s in stack.services}
        load = Load(stack.urls, plan(args.idle_connections, args.group, 2, tokens), args.clients)
        try:
            time.sleep(2.0)
            after = {s.name: rss_bytes(s.proc.pid) for s in stack.services}
            connections = sum(s.health()["connections"] for s in stack.services)
        finally:
            load.close()
    grown = sum(after.values()) - sum(before.values())
    result = {
        "connections": connections,
        "rss_before_mb": {k: v / 2**20 for k, v in before.items()},
        "rss_after_mb": {k: v / 2**20 for k, v in after.items()},
        "bytes_per_connection": grown / max(connections, 1),
        "code": str(code),
    }
    print(
        f"idle ({code}): {connections} connections, RSS {sum(before.values()) / 2**20:.1f} -> "
        f"{sum(after.values()) / 2**20:.1f} MiB (two instances): "
        f"{result['bytes_per_connection'] / 1024:.2f} KiB per idle connection"
    )
    return result


def layers_phase(args: argparse.Namespace, rates: list[float]) -> dict[str, list[dict[str, Any]]]:
    from devstack.servers import free_port

    layers = {
        "picows+aiofastnet": ["picows", "1"],
        "picows+uvloop": ["picows", "0"],
        "websockets": ["websockets", "0"],
    }
    out: dict[str, list[dict[str, Any]]] = {}
    for name, (layer, fast) in layers.items():
        port = free_port()
        env = {
            **os.environ,
            "PYTHONPATH": pythonpath("chat"),
        }
        service = start_process(
            name, [sys.executable, __file__, "_mini", layer, str(port), fast], env, port, ready_path=None
        )
        rows = []
        try:
            load = Load(
                [service.url.replace(CHAT.ws_path, "/")],
                plan(args.connections, args.group, 1, None),
                args.clients,
            )
            try:
                for rate in rates:
                    with cpu_meter({"server": service.proc.pid}) as cpu:
                        results = load.run(rate, args.warmup, args.duration, args.drain)
                    row = summarize(results, args.duration, args.group)
                    row["rate"] = rate
                    span = args.warmup + args.duration + args.drain
                    row["server_cpu_pct"] = cpu["server"]
                    row["machine_cpu_pct"] = cpu["machine"]
                    # Nearly every message sent in the span is delivered to `group` members.
                    row["server_us_per_delivery"] = (
                        cpu["server"] / 100 * span / (rate * span * args.group) * 1e6
                    )
                    rows.append(row)
                    print(
                        f"layer {name:18s} rate {rate:6.0f}/s: delivered {row['delivered_per_s']:8.0f}/s "
                        f"({row['delivered_ratio']:.1%}), p50 {row['local_p50_ms']:.2f} ms, "
                        f"p99 {row['local_p99_ms']:.2f} ms, server CPU {row['server_cpu_pct']:.0f}% "
                        f"= {row['server_us_per_delivery']:.1f} us/delivery, client CPU {row['client_cpu_pct']:.0f}%, "
                        f"machine {row['machine_cpu_pct']:.0f}%/{100 * (os.cpu_count() or 1)}%"
                    )
            finally:
                load.close()
        finally:
            service.stop()
        out[name] = rows
    return out


def print_row(phase: str, row: dict[str, Any]) -> None:
    cpu = ", ".join(f"{k} {v:.0f}%" for k, v in row["cpu_pct"].items())
    print(
        f"{phase} rate {row['rate']:6.0f} sends/s: delivered {row['delivered_per_s']:8.0f}/s "
        f"({row['delivered_ratio']:.1%} of expected); cross p50 {row['cross_p50_ms']:.2f} ms "
        f"p99 {row['cross_p99_ms']:.2f} ms; local p50 {row['local_p50_ms']:.2f} ms p99 {row['local_p99_ms']:.2f} ms; "
        f"ack p50 {row['ack_p50_ms']:.2f} ms p99 {row['ack_p99_ms']:.2f} ms; errors {row['errors']}; "
        f"CPU: {cpu}, clients {row['client_cpu_pct']:.0f}% (others on the machine ~{row['other_tenants_cpu_pct']:.0f}%); "
        f"server {row['server_us_per_delivery']:.1f} us/delivery, {row['server_us_per_send']:.0f} us/send"
        + (f"; {row['items_per_batch']:.1f} messages per BatchWriteItem" if "items_per_batch" in row else "")
    )


def compare(results: dict[str, Any], codes: list[Path]) -> list[dict[str, Any]]:
    """Each checkout's median server CPU per delivery (fan-out) and per send (persistence) at each
    rate, and its ratio to the first checkout's."""
    import statistics

    summary = []
    for phase, metric in (("fan_out", "server_us_per_delivery"), ("persist", "server_us_per_send")):
        for rate in sorted({row["rate"] for row in results[phase]}):
            medians = [
                statistics.median(
                    row[metric] for row in results[phase] if row["rate"] == rate and row["code"] == str(code)
                )
                for code in codes
            ]
            for code, median in zip(codes, medians, strict=True):
                entry = {"phase": phase, "rate": rate, "code": str(code), metric: median}
                entry["ratio"] = median / medians[0]
                summary.append(entry)
                print(
                    f"{phase} rate {rate:6.0f}/s {code}: median {median:.1f} {metric.split('_', 1)[1]} "
                    f"(x{entry['ratio']:.3f} of the first)"
                )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rates", default="1000,2000,3000", help="sends per second (x10 deliveries), comma-separated"
    )
    parser.add_argument("--persist-rates", default="500,1500", help="sends per second with persistence on")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--group", type=int, default=10)
    parser.add_argument("--idle-connections", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=2, help="load generator processes")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--drain", type=float, default=1.5)
    parser.add_argument("--quick", action="store_true", help="short runs")
    parser.add_argument("--skip-fanout", action="store_true")
    parser.add_argument("--skip-persist", action="store_true")
    parser.add_argument("--skip-idle", action="store_true")
    parser.add_argument("--compare-layers", action="store_true")
    parser.add_argument("--layer-rates", default="1000,2000,3000")
    parser.add_argument(
        "--code",
        type=Path,
        action="append",
        default=[],
        help="a checkout whose app_code/ the chat instances run (default: this one); give it once per "
        "version to compare them",
    )
    parser.add_argument("--rounds", type=int, default=1, help="runs of each --code, alternating")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.warmup, args.duration, args.drain = 1.0, 3.0, 1.0
    raise_fd_limit()
    rates = [float(r) for r in args.rates.split(",") if r]
    results: dict[str, Any] = {"cpus": os.cpu_count(), "clients": args.clients}
    print(f"{os.cpu_count()} CPUs; load generator: {args.clients} processes on the same machine")
    if args.compare_layers:
        results["layers"] = layers_phase(args, [float(r) for r in args.layer_rates.split(",")])
    codes = [code.resolve() for code in args.code] or [ROOT]
    persist_rates = [float(r) for r in args.persist_rates.split(",") if r]
    results["fan_out"], results["persist"] = [], []
    for round_ in range(args.rounds):
        for code in codes:
            if (len(codes) > 1 or args.rounds > 1) and not (args.skip_fanout and args.skip_persist):
                print(f"round {round_ + 1}/{args.rounds}: {code}")
            if not args.skip_fanout:
                results["fan_out"] += fan_out_phase(args, persist=False, rates=rates, code=code)
            if not args.skip_persist:
                results["persist"] += fan_out_phase(args, persist=True, rates=persist_rates, code=code)
    if (len(codes) > 1 or args.rounds > 1) and not (args.skip_fanout and args.skip_persist):
        results["comparison"] = compare(results, codes)
    if not args.skip_idle:
        results["idle"] = [idle_phase(args, code) for code in codes]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_mini":
        layer, port, fast = sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
        if layer == "picows":
            _mini_picows(port, fast)
        else:
            _mini_websockets(port)
        raise SystemExit(0)
    raise SystemExit(main())
