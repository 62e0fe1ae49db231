"""Benchmark: "request a download URL" (token check + permission query + signing) on one process.

Starts PostgreSQL, the local AWS API and the stand-in identity provider, seeds files, projects,
users and shares, starts one `python -m files_service` (the container's command, role `download`)
and drives GET /files/v1/files/{id}/download with wrk at 16 and 64 connections. Every request
picks a random (user, file) pair that is allowed through one of the three paths (owner, project
member, share), so the token cache, the permission query and the signer all see varied input.

    .venv/bin/python bench/files_bench.py [--duration 10] [--connections 16,64]

Prints requests/s, p50 and p99 per connection count, and a JSON line with the same figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import boto3

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from components.app_code import SERVICE_ROOTS, pythonpath  # noqa: E402

sys.path[1:1] = [str(p) for p in SERVICE_ROOTS["files"]]

from devstack.identity import Issuer, JwksServer  # noqa: E402
from devstack.servers import LOCALHOST, MotoServer, PostgresServer, free_port, wait_until  # noqa: E402

PROJECTS = 20
USERS = 200
FILES = 5000
PAIRS = 2000

LUA = """
local pairs_ = {}
%(entries)s
local errors_ = 0
request = function()
  local p = pairs_[math.random(#pairs_)]
  return wrk.format("GET", p[1], {["Authorization"] = p[2]})
end
response = function(status, headers, body)
  if status ~= 200 then errors_ = errors_ + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format(
    'RESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, "max_us": %%d, '
    .. '"socket_errors": %%d, "non_2xx": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds(pg: PostgresServer) -> float:
    """CPU time of the postmaster's children (the backends serving the pool)."""
    postmaster = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


@dataclass
class Result:
    connections: int
    requests_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: int
    non_2xx: int
    requests: int = 0
    service_cpu_us_per_request: float = 0.0
    postgres_cpu_us_per_request: float = 0.0


async def seed(dsn: str, issuer: Issuer) -> list[tuple[str, str]]:
    """Files with owners, projects and shares; returns allowed (path, Authorization) pairs."""
    rng = random.Random(7)
    users = [f"user_{i:04d}" for i in range(USERS)]
    projects = [f"proj_{i:03d}" for i in range(PROJECTS)]
    membership = {u: sorted(rng.sample(projects, 3)) for u in users}
    tokens = {u: "Bearer " + issuer.mint(u, membership[u], ttl_seconds=3600) for u in users}
    conn = await asyncpg.connect(dsn)
    try:
        files = []
        for _ in range(FILES):
            owner = rng.choice(users)
            project = rng.choice(membership[owner])
            file_id = uuid.uuid4()
            files.append(
                (
                    file_id,
                    project,
                    owner,
                    f"uploads/{project}/{file_id}",
                    "report ünï.pdf",
                    "application/pdf",
                    12345,
                )
            )
        await conn.executemany(
            "INSERT INTO files (id, project_id, owner_id, object_key, file_name, content_type, size_bytes,"
            " status, completed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'available', now())",
            files,
        )
        until = datetime.now(UTC) + timedelta(days=1)
        shares = [(f[0], rng.choice(users), f[2], until) for f in rng.sample(files, FILES // 5)]
        await conn.executemany(
            "INSERT INTO file_shares (file_id, user_id, granted_by, expires_at) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT DO NOTHING",
            shares,
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    by_id = {f[0]: f for f in files}
    members: dict[str, list[str]] = {}
    for u, ps in membership.items():
        for p in ps:
            members.setdefault(p, []).append(u)
    pairs = []
    for i in range(PAIRS):
        kind = i % 3
        if kind == 0:  # owner
            f = rng.choice(files)
            user = f[2]
        elif kind == 1:  # project member
            f = rng.choice(files)
            user = rng.choice(members[f[1]])
        else:  # share grantee
            file_id, user, _, _ = rng.choice(shares)
            f = by_id[file_id]
        pairs.append((f"/files/v1/files/{f[0]}/download", tokens[user]))
    return pairs


def run_wrk(url: str, script: Path, connections: int, duration: int) -> Result:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "5s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    data = json.loads(line.removeprefix("RESULT "))
    return Result(
        connections=connections,
        requests_per_second=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        socket_errors=data["socket_errors"],
        non_2xx=data["non_2xx"],
        requests=data["requests"],
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (default 10)")
    parser.add_argument("--connections", default="16,64", help="comma-separated (default 16,64)")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up (default 3)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2

    issuer = Issuer()
    workdir = Path(tempfile.mkdtemp(prefix="files-bench-"))
    service: subprocess.Popen[bytes] | None = None
    with PostgresServer() as pg, MotoServer() as moto, JwksServer(issuer) as jwks:
        try:
            moto_env = moto.env()
            bucket = "motion-files-bench"
            boto3.client(
                "s3",
                endpoint_url=moto.endpoint,
                region_name=moto_env["AWS_REGION"],
                aws_access_key_id=moto_env["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=moto_env["AWS_SECRET_ACCESS_KEY"],
            ).create_bucket(Bucket=bucket)
            port = free_port()
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
                **moto_env,
                "PYTHONPATH": pythonpath("files"),
                "PORT": str(port),
                "HOST": LOCALHOST,
                "FILES_ROLE": "download",
                "FILES_BUCKET": bucket,
                "DATABASE_HOST": LOCALHOST,
                "DATABASE_PORT": str(pg.port),
                "DATABASE_NAME": pg.database,
                "DATABASE_USER": pg.user,
                "DATABASE_PASSWORD": pg.password,
                "DATABASE_SSLMODE": "disable",
                "AUTH_ISSUER": issuer.issuer,
                "AUTH_JWKS_URL": jwks.url,
                "AUTH_AUDIENCE": issuer.audience,
                "CORS_ORIGINS": "http://localhost:5173",
                "LOG_LEVEL": "WARNING",
            }
            log = (workdir / "service.log").open("wb")
            service = subprocess.Popen(
                [sys.executable, "-m", "files_service"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
            base = f"http://{LOCALHOST}:{port}"

            def healthy() -> bool:
                assert service is not None
                if service.poll() is not None:
                    raise RuntimeError((workdir / "service.log").read_text())
                with urllib.request.urlopen(f"{base}/files/readyz", timeout=1) as resp:
                    return bool(resp.status == 200)

            wait_until(healthy, 30, "files service")
            # The service has migrated the schema; seed through its tables.
            pairs = asyncio.run(seed(pg.dsn, issuer))
            entries = "\n".join(
                f'pairs_[{i + 1}] = {{"{path}", "{auth}"}}' for i, (path, auth) in enumerate(pairs)
            )
            script = workdir / "download.lua"
            script.write_text(LUA % {"entries": entries})

            run_wrk(base, script, 16, args.warmup)
            # Other work on the machine skews the figures; say how busy it was.
            print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
            results = []
            for connections in [int(c) for c in args.connections.split(",")]:
                time.sleep(1)
                service_cpu, pg_cpu = cpu_seconds(service.pid), postgres_cpu_seconds(pg)
                result = run_wrk(base, script, connections, args.duration)
                # CPU time per request is what this code controls; req/s also depends on what
                # else the machine is doing.
                result.service_cpu_us_per_request = (
                    (cpu_seconds(service.pid) - service_cpu) / result.requests * 1e6
                )
                result.postgres_cpu_us_per_request = (
                    (postgres_cpu_seconds(pg) - pg_cpu) / result.requests * 1e6
                )
                results.append(result)
                print(
                    f"{connections:>3} connections: {result.requests_per_second:8.0f} req/s  "
                    f"p50 {result.p50_ms:6.2f} ms  p90 {result.p90_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  "
                    f"max {result.max_ms:7.2f} ms  errors {result.socket_errors}  non-200 {result.non_2xx}  "
                    f"CPU/request: service {result.service_cpu_us_per_request:.0f} us, "
                    f"PostgreSQL {result.postgres_cpu_us_per_request:.0f} us",
                    flush=True,
                )
            print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
            print(json.dumps({"cpus": os.cpu_count(), "results": [r.__dict__ for r in results]}))
            bad = sum(r.non_2xx + r.socket_errors for r in results)
            return 1 if bad else 0
        finally:
            if service is not None:
                service.terminate()
                service.wait(timeout=15)
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
