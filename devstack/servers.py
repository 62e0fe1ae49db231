"""Real local servers for tests and `make run`: PostgreSQL, Redis and a local AWS API (moto).

Each server binds 127.0.0.1 on a free port, keeps its data in a throwaway directory and can be
stopped and started again on the same port (tests restart them mid-conversation).
"""

from __future__ import annotations

import abc
import contextlib
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from devstack.tls import LocalTls, make_local_tls

LOCALHOST = "127.0.0.1"


class ServerError(RuntimeError):
    """A local server could not be started; the message says why and what to do."""


def ephemeral_port_range() -> tuple[int, int]:
    """The ports the kernel hands out for `bind(0)` and outgoing connections' source ports."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999  # Linux's default


def pick_port(span: int = 1) -> int:
    """A random first port of `span` consecutive ports, all outside the kernel's ephemeral range.

    Ports are chosen here and bound later by another process. A port from the ephemeral range
    (what `bind(0)` returns) can be taken in between by any client connection's source port or
    any server started on port 0, which is how CI once lost a service's port; below the range only
    another explicit choice can collide, and a random draw over ~20k ports makes that rare.
    """
    ephemeral_low, ephemeral_high = ephemeral_port_range()
    low, high = 10_000, ephemeral_low - span
    if high <= low:  # an unusually wide ephemeral range: use what lies above it
        low, high = ephemeral_high + 1, 65_536 - span
    return random.randrange(low, high)  # noqa: S311 - not security relevant


def free_port() -> int:
    """A port that is free now and outside the ephemeral range (see `pick_port`)."""
    for _ in range(200):
        port = pick_port()
        if port_is_free(port):
            return port
    raise ServerError("no free port found outside the ephemeral range")


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers set SO_REUSEADDR, so a port held only by TIME_WAIT sockets is free for them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOCALHOST, port))
        except OSError:
            return False
        return True


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    raise ServerError(f"{what} did not become ready within {timeout:.0f}s")


def _tcp_open(port: int) -> bool:
    with socket.create_connection((LOCALHOST, port), timeout=0.5):
        return True


def _process_runs(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie, dead but not yet reaped, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        if Path("/proc/self/stat").exists():
            return False
        # No /proc (macOS): signal 0 checks existence only.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    # The state follows the parenthesized command name, which may itself contain spaces.
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def postgres_bindir() -> Path:
    """Debian keeps initdb/pg_ctl in a versioned directory that `pg_config --bindir` names."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if found:
        return found[0].parent
    raise ServerError(
        "PostgreSQL server binaries (initdb) not found: run `make deps` (apt-get install -y postgresql) first"
    )


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster. As root it runs as the `postgres` user, which PostgreSQL needs.

    Shaped like RDS where the services can tell: TLS with a certificate from a local CA (`tls`), an
    `rds_iam` role (what IAM database authentication is granted through), and login roles that
    have no password (`IAM_ROLES`) reachable only through the Unix socket, where the RDS IAM
    stand-in (devstack/rds_iam.py) logs them in after checking their token.
    """

    port: int = field(default_factory=free_port)
    user: str = "motion"
    password: str = "motion-local"
    database: str = "motion"
    base_dir: Path | None = None
    _tmp: str | None = None
    tls: LocalTls | None = None

    # Roles the IAM stand-in may log in (pg_hba trusts them on the socket only).
    IAM_ROLES = ("files_app",)

    @property
    def socket_dir(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{LOCALHOST}:{self.port}/{self.database}"

    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir / "pgdata"

    def _run_as_owner(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        if os.geteuid() == 0:
            args = ["runuser", "-u", "postgres", "--", *args]
        return subprocess.run(args, capture_output=True, text=True, check=False)

    def start(self) -> PostgresServer:
        bindir = postgres_bindir()
        if self.base_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="motion-pg-")
            self.base_dir = Path(self._tmp)
        if self.tls is None:
            self.tls = make_local_tls(self.base_dir / "tls")
            if os.geteuid() == 0:
                pg = pwd.getpwnam("postgres")
                for path in (self.tls.cert_file, self.tls.key_file):
                    os.chown(path, pg.pw_uid, pg.pw_gid)
        if not self.data_dir.exists():
            self._init(bindir)
        if not port_is_free(self.port):
            raise ServerError(f"PostgreSQL: port {self.port} on {LOCALHOST} is already taken")
        result = self._pg_ctl_start(bindir)
        if result.returncode != 0:
            log = (self.base_dir / "postgres.log").read_text(errors="replace")[-2000:]
            raise ServerError(f"PostgreSQL failed to start: {result.stderr.strip()}\n{log}")
        return self

    def _pg_ctl_start(self, bindir: Path) -> subprocess.CompletedProcess[str]:
        assert self.base_dir is not None and self.tls is not None
        return self._run_as_owner(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.base_dir / "postgres.log"),
                "-o",
                f"-p {self.port} -c listen_addresses={LOCALHOST} -k {self.base_dir} -c fsync=off"
                f" -c ssl=on -c ssl_cert_file={self.tls.cert_file} -c ssl_key_file={self.tls.key_file}",
                "-w",
                "-t",
                "30",
                "start",
            ]
        )

    def _init(self, bindir: Path) -> None:
        assert self.base_dir is not None
        if os.geteuid() == 0:
            pg = pwd.getpwnam("postgres")
            os.chown(self.base_dir, pg.pw_uid, pg.pw_gid)
        pwfile = self.base_dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            os.chown(pwfile, pg.pw_uid, pg.pw_gid)
        result = self._run_as_owner(
            [
                str(bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.user,
                "--pwfile",
                str(pwfile),
                "-A",
                "scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        )
        if result.returncode != 0:
            raise ServerError(f"initdb failed: {result.stderr.strip()}")
        pwfile.unlink()
        trusted = "".join(f"local   all  {role}  trust\n" for role in self.IAM_ROLES)
        (self.data_dir / "pg_hba.conf").write_text(
            "# TYPE DATABASE USER ADDRESS METHOD\n"
            "# Password-less IAM roles: only through the socket, where the RDS IAM stand-in logs them in.\n"
            f"{trusted}"
            "local   all  all                 scram-sha-256\n"
            f"host    all  all  {LOCALHOST}/32  scram-sha-256\n"
        )
        # The initial database is named after the role; create the one services use.
        self._pg_ctl_start(bindir)
        created = self._createdb(bindir)
        if created.returncode == 0:
            created = self._psql(bindir, "CREATE ROLE rds_iam NOLOGIN")  # as RDS has it
        self.stop()
        if created.returncode != 0:
            raise ServerError(f"setting up PostgreSQL failed: {created.stderr.strip()}")

    def _psql(self, bindir: Path, sql: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PGPASSWORD=self.password)
        return subprocess.run(
            [
                *[str(bindir / "psql"), "-h", LOCALHOST, "-p", str(self.port), "-U", self.user],
                *["-d", self.database, "-v", "ON_ERROR_STOP=1", "-c", sql],
            ],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )

    def _createdb(self, bindir: Path) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PGPASSWORD=self.password)
        return subprocess.run(
            [str(bindir / "createdb"), "-h", LOCALHOST, "-p", str(self.port), "-U", self.user, self.database],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )

    def stop(self, mode: str = "fast") -> None:
        if self.base_dir is None or not self.data_dir.exists():
            return
        self._run_as_owner(
            [str(postgres_bindir() / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"]
        )

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while it runs, else None (pg_ctl daemonizes it, so it is not
        our child: its lock file names it)."""
        if self.base_dir is None:
            return None
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if _process_runs(pid) else None

    def cleanup(self) -> None:
        self.stop("immediate")
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


@dataclass
class _ProcessServer(abc.ABC):
    """A server that runs as a child process of ours."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _tmp: str | None = None

    name = "server"
    ready_timeout = 20.0

    @abc.abstractmethod
    def command(self) -> list[str]:
        """The server's command line."""

    def ready(self) -> bool:
        return _tcp_open(self.port)

    def workdir(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix=f"motion-{self.name}-")
        return Path(self._tmp)

    def start(self) -> Self:
        if not port_is_free(self.port):
            raise ServerError(f"{self.name}: port {self.port} on {LOCALHOST} is already taken")
        self.log_path = self.workdir() / f"{self.name}.log"
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir(), start_new_session=True
        )
        try:
            wait_until(self._alive_and_ready, self.ready_timeout, f"{self.name} on port {self.port}")
        except ServerError as err:
            self.stop()
            raise ServerError(f"{err}; log:\n{self.log_path.read_text(errors='replace')[-2000:]}") from None
        return self

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs, else None."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        return self.proc.pid

    def _alive_and_ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise ServerError(f"{self.name} exited with code {self.proc.returncode}")
        return self.ready()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        # Wait for the port to be released so a restart on the same port succeeds.
        wait_until(lambda: port_is_free(self.port), 10, f"{self.name} port {self.port} release")

    def kill(self) -> None:
        """Crash the server (SIGKILL to its process group: no shutdown, no flush, no goodbye to its
        clients), and wait for the port to be free so it can be started again."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None
        wait_until(lambda: port_is_free(self.port), 10, f"{self.name} port {self.port} release")

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


@dataclass
class RedisServer(_ProcessServer):
    name = "redis"
    password: str | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{LOCALHOST}:{self.port}/0"

    def command(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerError(
                "redis-server not found: run `make deps` (apt-get install -y redis-server) first"
            )
        cmd = [
            binary,
            "--bind",
            LOCALHOST,
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir()),
        ]
        if self.password:
            cmd += ["--requirepass", self.password]
        return cmd


@dataclass
class MotoServer(_ProcessServer):
    """moto's server binds 0.0.0.0 unless told otherwise: always pass 127.0.0.1."""

    name = "moto"

    @property
    def endpoint(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", LOCALHOST, "-p", str(self.port)]

    def ready(self) -> bool:
        with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1) as resp:
            return bool(resp.status == 200)

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=5):
            pass

    def env(self) -> dict[str, str]:
        """What a process needs to talk to this server with boto3."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }


@dataclass
class DnsServer(_ProcessServer):
    """dnsmasq answering only the records it is given (`cnames`: name -> target, `addresses`: name ->
    IPv4 addresses, served as A records, `mx`: name -> (preference, host), `txt`: name -> texts), on
    127.0.0.1.

    dnsmasq serves a CNAME only when it knows its target, so each target also gets a host record (a
    published CNAME's target resolves in real DNS too). No upstream, no /etc/hosts, no config file.
    """

    name = "dnsmasq"
    cnames: dict[str, str] = field(default_factory=dict)
    addresses: dict[str, list[str]] = field(default_factory=dict)
    mx: dict[str, tuple[int, str]] = field(default_factory=dict)
    txt: dict[str, list[str]] = field(default_factory=dict)

    @property
    def nameserver(self) -> str:
        return f"{LOCALHOST}:{self.port}"

    def command(self) -> list[str]:
        binary = shutil.which("dnsmasq") or next(
            (p for p in ("/usr/sbin/dnsmasq", "/sbin/dnsmasq") if Path(p).exists()), None
        )
        if binary is None:
            raise ServerError("dnsmasq not found: run `make deps` (apt-get install -y dnsmasq-base) first")
        cmd = [
            binary,
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            f"--listen-address={LOCALHOST}",
            "--bind-interfaces",
            f"--port={self.port}",
            "--pid-file=",
            "--log-facility=-",
        ]
        for name, target in sorted(self.cnames.items()):
            cmd += [f"--cname={name},{target}", f"--host-record={target},127.0.0.9"]
        for name, ips in sorted(self.addresses.items()):
            cmd += [f"--host-record={name},{ip}" for ip in ips]
        # dnsmasq(8): --mx-host=<name>,<host>,<preference>; --txt-record=<name>,<text> (one per text:
        # commas would split a text into strings, so a text holding one is refused here).
        for name, (preference, host) in sorted(self.mx.items()):
            cmd.append(f"--mx-host={name},{host},{preference}")
        for name, texts in sorted(self.txt.items()):
            for text in texts:
                if "," in text:
                    raise ServerError(f"TXT {name}: dnsmasq would split {text!r} at its commas")
                cmd.append(f"--txt-record={name},{text}")
        return cmd
