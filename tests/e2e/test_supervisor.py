"""`make run`'s supervisor without processes: the restart policy and the console lines, on a fake clock."""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
from dataclasses import dataclass, field

import pytest

from devstack.backend import _answers
from devstack.supervisor import Backoff, Dependency, RestartPolicy, Service, Supervisor


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_backoff_doubles_from_half_a_second_to_a_cap_of_30() -> None:
    backoff = Backoff(up_since=0.0)
    delays = [backoff.failed(now=1.0 + i) for i in range(9)]
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff.restarts == 9


def test_backoff_resets_after_staying_up_a_minute() -> None:
    clock = FakeClock()
    backoff = Backoff()
    for _ in range(4):
        clock.advance(backoff.failed(clock()))
        backoff.started(clock())
    assert backoff.consecutive == 4
    clock.advance(59)
    assert backoff.failed(clock()) == 8  # up for less than a minute: still throttled
    backoff.started(clock())
    clock.advance(60)
    assert backoff.failed(clock()) == 0.5  # up for a minute: a fresh start
    assert backoff.restarts == 6  # the count for the console keeps going


def test_backoff_never_resets_while_down() -> None:
    # A service that never came back (no `started`) keeps backing off however long it has been.
    backoff = Backoff(up_since=0.0)
    assert backoff.failed(100.0) == 0.5
    assert backoff.failed(1000.0) == 1


def test_custom_policy() -> None:
    backoff = Backoff(RestartPolicy(initial=1, factor=3, cap=10, reset_after=5))
    assert [backoff.failed(0) for _ in range(4)] == [1, 3, 9, 10]


@dataclass
class FakeService:
    """A stand-in process for the supervisor's callables (the supervisor is what is tested here)."""

    code: int | None = None
    healthy: bool = True
    spawns: int = 0
    fail_spawn: bool = False
    pid: int = 100
    lines: list[str] = field(default_factory=list)

    def respawn(self) -> None:
        if self.fail_spawn:
            raise OSError("no such file")
        self.spawns += 1
        self.code = None

    def service(self, name: str) -> Service:
        return Service(
            name=name,
            exit_code=lambda: self.code,
            respawn=self.respawn,
            log_tail=lambda: f"--- {name} ---\nTraceback: boom",
            health=lambda: self.healthy,
        )


def test_a_crashed_service_is_restarted_after_its_backoff_and_reported_back() -> None:
    clock, lines, chat = FakeClock(), list[str](), FakeService()
    supervisor = Supervisor([chat.service("chat-a")], [], lines.append, clock=clock)
    supervisor.tick()
    assert lines == []
    chat.code = -9
    supervisor.tick()
    assert lines == [
        "chat-a exited with code -9; restarting in 0.5 s (restart 1)\n--- chat-a ---\nTraceback: boom"
    ]
    clock.advance(0.4)
    supervisor.tick()
    assert chat.spawns == 0
    clock.advance(0.1)
    chat.healthy = False
    supervisor.tick()
    assert chat.spawns == 1 and len(lines) == 1  # respawned, not yet healthy: not "back"
    supervisor.tick()
    assert len(lines) == 1
    chat.healthy = True
    supervisor.tick()
    assert lines[-1] == "chat-a is back"
    # Crashing again soon after: the next delay doubles.
    clock.advance(5)
    chat.code = 1
    supervisor.tick()
    assert lines[-1].startswith("chat-a exited with code 1; restarting in 1 s (restart 2)")


def test_a_service_dying_before_it_is_healthy_backs_off_further() -> None:
    clock, lines, svc = FakeClock(), list[str](), FakeService()
    supervisor = Supervisor([svc.service("upload")], [], lines.append, clock=clock)
    for expected in ("0.5", "1", "2", "4"):
        svc.code = 1
        supervisor.tick()
        assert f"restarting in {expected} s" in lines[-1]
        clock.advance(float(expected))
        svc.healthy = False
        supervisor.tick()  # respawned
    assert svc.spawns == 4 and not any("is back" in line for line in lines)


def test_a_failed_spawn_is_retried_with_backoff() -> None:
    clock, lines, svc = FakeClock(), list[str](), FakeService(fail_spawn=True)
    supervisor = Supervisor([svc.service("files")], [], lines.append, clock=clock)
    svc.code = 2
    supervisor.tick()
    clock.advance(0.5)
    supervisor.tick()
    assert lines[-1] == "files could not be started (no such file); retrying in 1 s"
    svc.fail_spawn = False
    clock.advance(1)
    supervisor.tick()
    supervisor.tick()
    assert svc.spawns == 1 and lines[-1] == "files is back"


def test_a_service_without_a_health_url_is_back_once_respawned() -> None:
    clock, lines, svc = FakeClock(), list[str](), FakeService()
    service = svc.service("mail-poller")
    service.health = None
    supervisor = Supervisor([service], [], lines.append, clock=clock)
    svc.code = 0
    supervisor.tick()
    clock.advance(0.5)
    supervisor.tick()
    supervisor.tick()
    assert lines[-1] == "mail-poller is back"


@dataclass
class FakeServer:
    pid: int | None = 4242
    restarts: int = 0
    fail_restart: bool = False

    def restart(self) -> None:
        if self.fail_restart:
            raise RuntimeError("port 6379 is already taken\nmore detail")
        self.restarts += 1
        self.pid = 5000 + self.restarts


def test_a_dead_dependency_is_reported_once_restarted_and_reported_back() -> None:
    clock, lines, redis = FakeClock(), list[str](), FakeServer()
    dep = Dependency("Redis", "chat cannot deliver across instances", lambda: redis.pid, redis.restart)
    supervisor = Supervisor([], [dep], lines.append, clock=clock)
    supervisor.tick()
    redis.pid = None
    supervisor.tick()
    supervisor.tick()
    assert lines == [
        "ERROR: Redis (pid 4242) is down: chat cannot deliver across instances; restarting in 0.5 s (restart 1)"
    ]
    redis.fail_restart = True
    clock.advance(0.5)
    supervisor.tick()
    assert lines[-1] == "ERROR: Redis did not restart (port 6379 is already taken); retrying in 1 s"
    redis.fail_restart = False
    clock.advance(1)
    supervisor.tick()
    assert redis.restarts == 1 and lines[-1] == "Redis is back (pid 5001)"
    supervisor.tick()
    assert len(lines) == 3


def test_a_dependency_that_is_not_safe_to_restart_is_reported_once_per_outage() -> None:
    clock, lines, moto = FakeClock(), list[str](), FakeServer(pid=77)
    dep = Dependency("moto", "AWS calls fail", lambda: moto.pid, not_restarted="its data is in memory")
    supervisor = Supervisor([], [dep], lines.append, clock=clock)
    moto.pid = None
    for _ in range(3):
        supervisor.tick()
        clock.advance(10)
    assert lines == ["ERROR: moto (pid 77) is down: AWS calls fail; not restarted: its data is in memory"]
    moto.pid = 78  # someone started it again
    supervisor.tick()
    moto.pid = None
    supervisor.tick()
    assert lines[1:] == [
        "moto is back (pid 78)",
        "ERROR: moto (pid 78) is down: AWS calls fail; not restarted: its data is in memory",
    ]


class GarbageServer:
    """A real TCP server on 127.0.0.1 that answers every connection with `reply` and hangs up:
    what a health probe meets when whatever holds the port does not speak HTTP (or not well)."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.answered = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._thread = threading.Thread(target=self._serve, name="garbage-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/readyz"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            with conn:
                conn.recv(65536)  # the request; its content does not matter
                # Counted before the reply, so the probe cannot return before the count is seen.
                self.answered += 1
                # The probe may hang up mid-reply (it stops reading at a too-long line).
                with contextlib.suppress(OSError):
                    conn.sendall(self.reply)

    def close(self) -> None:
        # shutdown() wakes the accept() that close() alone would leave blocked.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(5)


GARBAGE = {
    "not HTTP at all": b"\x00\xffgarbage\r\n\r\n",
    "a status line without a number": b"HTTP/1.1 OK fine\r\n\r\n",
    "a header line longer than http.client reads": b"HTTP/1.1 200 OK\r\nX: " + b"x" * 70_000 + b"\r\n\r\n",
    "hanging up without an answer": b"",
}


@pytest.mark.parametrize("reply", GARBAGE.values(), ids=GARBAGE.keys())
def test_a_garbled_http_answer_is_unhealthy_not_an_exception(reply: bytes) -> None:
    server = GarbageServer(reply)
    try:
        assert _answers(server.url) is False
        assert server.answered == 1  # the probe really met the garbage, not a refused connection
    finally:
        server.close()


def test_the_supervisor_survives_a_service_answering_garbage_and_reports_it() -> None:
    # The real probe (`_answers`) against a real socket: a respawned service whose port answers
    # garbage stays "starting" and is reported once as not answering its health check; tick()
    # never raises (run.py would otherwise stop every process).
    server = GarbageServer(GARBAGE["not HTTP at all"])
    clock, lines, svc = FakeClock(), list[str](), FakeService()
    service = svc.service("upload")
    service.health = functools.partial(_answers, server.url)
    supervisor = Supervisor([service], [], lines.append, clock=clock)
    try:
        svc.code = -9
        supervisor.tick()
        clock.advance(0.5)
        supervisor.tick()  # respawned
        for _ in range(3):
            supervisor.tick()
        clock.advance(Supervisor.SLOW_START + 1)
        supervisor.tick()
        supervisor.tick()
    finally:
        server.close()
    assert svc.spawns == 1 and server.answered >= 4
    assert not any("is back" in line for line in lines)
    slow = [line for line in lines if "has not answered its health check" in line]
    assert len(slow) == 1 and slow[0].startswith("upload is running but has not answered")
