"""End to end: `make run`'s supervisor over the real backend. A killed service comes back on its own
while the others keep running; a killed server is reported loudly (and restarted where safe)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import asyncpg
import pytest
import redis

from devstack import smoke
from devstack.backend import FILES_DATABASE, Backend, _answers


@dataclass
class Console:
    """The supervisor's lines, as `make run` would print them."""

    lines: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def say(self, line: str) -> None:
        with self._lock:
            self.lines.append(line)

    def wait_for(self, match: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = next((line for line in self.lines if match(line)), None)
            if found is not None:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no such line within {timeout}s; console:\n" + "\n".join(self.lines))


@pytest.fixture(scope="module")
def console(backend: Backend) -> Iterator[Console]:
    """The supervisor ticking over the module's backend, as `make run`'s loop does (but faster)."""
    console = Console()
    supervisor = backend.supervisor(console.say)
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(0.2):
            supervisor.tick()

    thread = threading.Thread(target=loop, name="supervisor", daemon=True)
    thread.start()
    yield console
    stop.set()
    thread.join(60)


def _pids(backend: Backend) -> dict[str, int]:
    return {name: proc.pid for name, proc in backend.processes.items()}


def _running(backend: Backend) -> dict[str, bool]:
    return {name: proc.poll() is None for name, proc in backend.processes.items()}


def test_a_killed_service_is_restarted_and_the_others_never_stop(backend: Backend, console: Console) -> None:
    before = _pids(backend)
    health = backend.health_checks()["chat-a"]
    assert _answers(health)
    os.kill(before["chat-a"], signal.SIGKILL)
    killed_at = time.monotonic()
    exited = console.wait_for(lambda line: line.startswith("chat-a exited"), timeout=5)
    assert exited.startswith("chat-a exited with code -9; restarting in 0.5 s (restart 1)\n--- chat-a ---")
    console.wait_for(lambda line: line == "chat-a is back", timeout=20)
    assert time.monotonic() - killed_at < 20
    assert _answers(health)
    after = _pids(backend)
    assert after["chat-a"] != before["chat-a"] and backend.processes["chat-a"].poll() is None
    # Everything else kept its process the whole time.
    assert {n: p for n, p in after.items() if n != "chat-a"} == {
        n: p for n, p in before.items() if n != "chat-a"
    }
    assert all(_running(backend).values())
    # Same command line, environment and log file (appended to, so the crash stays readable).
    assert backend.processes["chat-a"].args == backend.spawned["chat-a"].argv
    log = backend.spawned["chat-a"].log_path.read_text(errors="replace")
    assert log.count(" listening on ") == 2, log[-2000:]


def test_a_killed_redis_is_reported_loudly_and_restarted(backend: Backend, console: Console) -> None:
    server, before = backend.redis, _pids(backend)
    assert server is not None and server.pid is not None
    port, old_pid = server.port, server.pid
    os.kill(old_pid, signal.SIGKILL)
    down = console.wait_for(lambda line: line.startswith("ERROR: Redis"), timeout=5)
    assert down.startswith(
        f"ERROR: Redis (pid {old_pid}) is down: chat cannot deliver across instances; restarting in 0.5 s"
    ), down
    back = console.wait_for(lambda line: line.startswith("Redis is back"), timeout=15)
    assert server.pid is not None and server.pid != old_pid and back == f"Redis is back (pid {server.pid})"
    # Same port and password: the chat instances' settings still hold.
    assert server.port == port
    assert redis.Redis(host="127.0.0.1", port=port, password=server.password).ping()
    assert sum(line.startswith("ERROR: Redis") for line in console.lines) == 1  # once per outage
    assert _pids(backend) == before and all(_running(backend).values())
    for name in ("chat-a", "chat-b"):
        assert _answers(backend.health_checks()[name])


def test_a_killed_postgresql_is_reported_and_restarted_with_its_data(
    backend: Backend, console: Console
) -> None:
    postgres, before = backend.postgres, _pids(backend)
    assert postgres is not None and postgres.pid is not None
    port, old_pid = postgres.port, postgres.pid
    os.kill(old_pid, signal.SIGKILL)
    down = console.wait_for(lambda line: line.startswith("ERROR: PostgreSQL"), timeout=5)
    assert down.startswith(
        f"ERROR: PostgreSQL (pid {old_pid}) is down: upload and download cannot reach the files database;"
        " restarting in 0.5 s"
    ), down
    console.wait_for(lambda line: line.startswith("PostgreSQL is back"), timeout=20)
    assert postgres.port == port and postgres.pid not in (None, old_pid)

    async def tables() -> list[str]:
        conn = await asyncpg.connect(postgres.dsn, ssl=False)
        try:
            rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        finally:
            await conn.close()
        return [row["tablename"] for row in rows]

    # The data directory was kept: the migrated schema is still there.
    assert asyncio.run(tables())
    assert _pids(backend) == before and all(_running(backend).values())
    assert postgres.database == FILES_DATABASE
    # The services found their restarted servers again (and chat-a its peer): every flow works.
    assert backend.state is not None
    lines: list[str] = []
    deadline = time.monotonic() + 15
    while not smoke.run(backend.state, lines.append) and time.monotonic() < deadline:
        time.sleep(1)
    assert lines[-1] == "smoke: all steps passed", "\n".join(lines)


def test_a_stopped_ses_stand_in_is_reported_once_and_not_restarted(
    backend: Backend, console: Console
) -> None:
    # Near the end of this module: the backend stays without its SES stand-in, as it stays without
    # its AWS API below (a new stand-in would have none of the event destinations).
    ses, before = backend.ses, _pids(backend)
    assert ses is not None and ses.alive
    ses.__exit__(None, None, None)  # its serving thread ends, as when it dies
    down = console.wait_for(lambda line: line.startswith("ERROR: the SES stand-in"), timeout=5)
    assert down == (
        f"ERROR: the SES stand-in (pid {os.getpid()}) is down: the mailer cannot send e-mail (every"
        " send is retried, then dead-lettered) and no sending events reach the SES events handler;"
        " not restarted: a new one would have no event destinations or suppression list; stop with"
        " Ctrl-C and start again"
    )
    time.sleep(1)
    assert sum(line.startswith("ERROR: the SES stand-in") for line in console.lines) == 1
    assert not ses.alive and backend.ses is ses
    assert _pids(backend) == before and all(_running(backend).values())


def test_a_killed_local_aws_api_is_reported_once_and_not_restarted(
    backend: Backend, console: Console
) -> None:
    # Last in this module: the backend stays without its AWS API (nothing brings its resources back).
    assert backend.moto is not None and backend.moto.proc is not None
    old_pid, before = backend.moto.proc.pid, _pids(backend)
    os.kill(old_pid, signal.SIGKILL)
    down = console.wait_for(lambda line: line.startswith("ERROR: the local AWS API"), timeout=5)
    assert down == (
        f"ERROR: the local AWS API (pid {old_pid}) is down: S3, DynamoDB, SQS and Secrets Manager"
        " calls fail: files, mail and chat history; not restarted: a new one would have none of the"
        " resources; stop with Ctrl-C and start again"
    )
    time.sleep(1)
    assert sum(line.startswith("ERROR: the local AWS API") for line in console.lines) == 1
    assert backend.moto.pid is None
    assert _pids(backend) == before
