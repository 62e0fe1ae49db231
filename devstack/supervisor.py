"""`make run`'s supervisor: restart a crashed service with backoff, report dead dependencies.

ECS restarts a task that exits and throttles restarts of one that keeps failing; locally the
supervisor does the same for each service process, so one crash costs that service a few seconds
instead of costing the developer every process and all data. The servers the services depend on
(PostgreSQL, Redis, the local AWS API, ...) are watched too: a dead one is reported loudly, naming
what depends on it (the services' readiness says so too, per request path; liveness does not, as a
restart of theirs would not help), and restarted where that is safe.

The policy (`Backoff`) is pure and the supervisor reads time only through its `clock`, so both are
tested with a fake clock; the I/O (spawning, health checks, printing) comes in as callables.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RestartPolicy:
    """ECS-like restart throttling: 0.5 s, 1 s, 2 s ... up to 30 s between restarts of a service
    that keeps failing, back to 0.5 s once it has stayed up for a minute."""

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    reset_after: float = 60.0


@dataclass
class Backoff:
    """One supervised thing's restart history. Pure: every call is given the time."""

    policy: RestartPolicy = field(default_factory=RestartPolicy)
    # Failures since the last time it stayed up for `reset_after`: what the delay grows with.
    consecutive: int = 0
    # Every restart so far, for the console ("restart 3").
    restarts: int = 0
    up_since: float | None = None

    def started(self, now: float) -> None:
        """It is up (healthy) as of `now`."""
        self.up_since = now

    def failed(self, now: float) -> float:
        """It died at `now`: the delay before restarting it, counted as the next restart."""
        if self.up_since is not None and now - self.up_since >= self.policy.reset_after:
            self.consecutive = 0
        self.up_since = None
        delay = min(self.policy.cap, self.policy.initial * self.policy.factor**self.consecutive)
        self.consecutive += 1
        self.restarts += 1
        return delay


@dataclass
class Service:
    """A service process: `exit_code` is None while it runs; `health` is None when it has no
    health URL (then being alive after a restart is enough)."""

    name: str
    exit_code: Callable[[], int | None]
    respawn: Callable[[], object]
    log_tail: Callable[[], str]
    health: Callable[[], bool] | None = None


@dataclass
class Dependency:
    """A server the services need. `pid` is its process id while it is up and None when it is down.
    `restart` is None when restarting it is not safe; `not_restarted` then says why."""

    name: str
    impact: str
    pid: Callable[[], int | None]
    restart: Callable[[], object] | None = None
    not_restarted: str = ""


class _Phase(enum.Enum):
    UP = "up"
    WAITING = "waiting"  # dead, restart due at `due`
    STARTING = "starting"  # respawned, not yet healthy
    DOWN = "down"  # a dependency that is not restarted, reported once


@dataclass
class _Watch:
    phase: _Phase = _Phase.UP
    backoff: Backoff = field(default_factory=Backoff)
    due: float = 0.0
    last_pid: int | None = None
    # When a respawned service has not answered for long, say so once.
    starting_since: float = 0.0
    slow_reported: bool = False


class Supervisor:
    """Call `tick()` every half second or so; it never raises for a service's or server's failure."""

    # A respawned service that is alive but not healthy after this long is reported (once).
    SLOW_START = 30.0

    def __init__(
        self,
        services: list[Service],
        dependencies: list[Dependency],
        say: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        policy: RestartPolicy | None = None,
    ) -> None:
        self.services = services
        self.dependencies = dependencies
        self.say = say
        self.clock = clock
        policy = policy or RestartPolicy()
        now = clock()
        self._services = {s.name: _Watch(backoff=Backoff(policy, up_since=now)) for s in services}
        self._deps = {d.name: _Watch(backoff=Backoff(policy, up_since=now)) for d in dependencies}
        for dep in dependencies:
            self._deps[dep.name].last_pid = dep.pid()

    def tick(self) -> None:
        # Dependencies first: a service that died because Redis did is then reported after it.
        for dep in self.dependencies:
            self._tick_dependency(dep, self._deps[dep.name])
        for service in self.services:
            self._tick_service(service, self._services[service.name])

    def _tick_service(self, service: Service, watch: _Watch) -> None:
        now = self.clock()
        if watch.phase in (_Phase.UP, _Phase.STARTING):
            code = service.exit_code()
            if code is not None:
                delay = watch.backoff.failed(now)
                watch.phase, watch.due = _Phase.WAITING, now + delay
                self.say(
                    f"{service.name} exited with code {code}; restarting in {delay:g} s "
                    f"(restart {watch.backoff.restarts})\n{service.log_tail()}"
                )
                return
        if watch.phase is _Phase.WAITING and now >= watch.due:
            try:
                service.respawn()
            except Exception as err:  # a failed spawn is retried like a crash, never fatal
                delay = watch.backoff.failed(now)
                watch.due = now + delay
                self.say(f"{service.name} could not be started ({err}); retrying in {delay:g} s")
                return
            watch.phase, watch.starting_since, watch.slow_reported = _Phase.STARTING, now, False
            return
        if watch.phase is _Phase.STARTING:
            if service.health is None or service.health():
                watch.phase = _Phase.UP
                watch.backoff.started(self.clock())
                self.say(f"{service.name} is back")
            elif now - watch.starting_since > self.SLOW_START and not watch.slow_reported:
                watch.slow_reported = True
                self.say(
                    f"{service.name} is running but has not answered its health check for "
                    f"{self.SLOW_START:g} s\n{service.log_tail()}"
                )

    def _tick_dependency(self, dep: Dependency, watch: _Watch) -> None:
        now = self.clock()
        pid = dep.pid()
        if watch.phase is _Phase.UP:
            if pid is not None:
                watch.last_pid = pid
                return
            shown = f" (pid {watch.last_pid})" if watch.last_pid is not None else ""
            if dep.restart is None:
                # Reported once per outage; the line says why it stays down.
                watch.phase = _Phase.DOWN
                self.say(
                    f"ERROR: {dep.name}{shown} is down: {dep.impact}; not restarted: {dep.not_restarted}"
                )
                return
            delay = watch.backoff.failed(now)
            watch.phase, watch.due = _Phase.WAITING, now + delay
            self.say(
                f"ERROR: {dep.name}{shown} is down: {dep.impact}; restarting in {delay:g} s "
                f"(restart {watch.backoff.restarts})"
            )
            return
        if pid is not None:
            # Back: restarted by us, or (for one we do not restart) by whoever else.
            watch.phase, watch.last_pid = _Phase.UP, pid
            watch.backoff.started(now)
            self.say(f"{dep.name} is back (pid {pid})")
            return
        if watch.phase is _Phase.WAITING and now >= watch.due and dep.restart is not None:
            try:
                dep.restart()
                pid = dep.pid()
                if pid is None:
                    raise RuntimeError("it exited again at once")
            except Exception as err:  # any failure to start is retried with backoff, never fatal
                delay = watch.backoff.failed(self.clock())
                watch.due = self.clock() + delay
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                self.say(f"ERROR: {dep.name} did not restart ({first}); retrying in {delay:g} s")
                return
            watch.phase, watch.last_pid = _Phase.UP, pid
            watch.backoff.started(self.clock())
            self.say(f"{dep.name} is back (pid {pid})")
