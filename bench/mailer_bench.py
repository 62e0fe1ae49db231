"""Benchmark of the mailing service's Lambda code. Prints figures; not a test.

1. Cold import of the handler modules (`mailer.worker`, `mailer.api`), each in a fresh interpreter:
   - "lambda-like": our sources compiled on import (Lambda's /var/task is read-only, so no
     bytecode cache of ours exists there; the runtime's standard library is precompiled);
   - "cached": with our bytecode cached, as on a developer machine;
   plus what the first invocation adds (import boto3, build the clients). Target: <= 150 ms.
2. Size of the deployment archive (`components.aws.lambda_archive.build_zip`). Target: <= 64 KB.
   And the SDK layer (`components.aws.lambda_layer.build_layer`): its size, a build from an empty cache,
   and a cold `import boto3` plus the first clients on the runtime's Python from the layer as
   shipped, from the same packages installed as the runtime's own boto3 is (ordinary bytecode), and
   from sources alone (what shipping without bytecode costs). Target: the layer's cold import within
   1.1x of the runtime-like install (the SDK moving into a layer must not slow cold starts).
3. A 10-record batch through `Worker.handle` against a local AWS API (moto, started here):
   store + claim + SES send + mark per record (5 AWS calls), records concurrently (10 threads)
   versus one by one; then again with a fixed delay added to every AWS call, because moto answers
   from CPU on the same two cores, which hides the waiting that concurrency overlaps in the cloud.

    .venv/bin/python bench/mailer_bench.py [--repeats 7] [--batches 20] [--latency-ms 10]

Ends with one JSON line holding the same figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from components.app_code import LOCK, MAILER_ROOT, SERVICE_ROOTS, mailer_files  # noqa: E402

MAILER = MAILER_ROOT
sys.path[1:1] = [str(p) for p in SERVICE_ROOTS["mailer"]]
from components.aws.interpreters import find_python  # noqa: E402
from components.aws.lambda_archive import RUNTIME, build_zip, source_code_hash  # noqa: E402
from components.aws.lambda_layer import build_layer  # noqa: E402
from devstack.mail_resources import create_mail_resources  # noqa: E402
from devstack.servers import MotoServer  # noqa: E402

IMPORT_TARGET_MS = 150.0
ARCHIVE_TARGET_BYTES = 64 * 1024
LAYER_IMPORT_RATIO_TARGET = 1.1
BATCH_SIZE = 10

_TIMED_IMPORT = """
import time
t0 = time.perf_counter()
import {module}
t1 = time.perf_counter()
if {first_call}:
    from mailer import aws
    for service in {services}:
        aws.client(service)
t2 = time.perf_counter()
print((t1 - t0) * 1000, (t2 - t1) * 1000)
"""

SERVICES = {"mailer.worker": ["dynamodb", "sesv2"], "mailer.api": ["dynamodb", "sqs"]}


def timed_import(module: str, code_root: Path, no_bytecode: bool, first_call: bool) -> tuple[float, float]:
    script = _TIMED_IMPORT.format(module=module, first_call=first_call, services=SERVICES[module])
    env = {
        **os.environ,
        "PYTHONPATH": str(code_root),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
    }
    flags = ["-B"] if no_bytecode else []
    out = subprocess.run(
        [sys.executable, *flags, "-c", script], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    return float(out[0]), float(out[1])


def importtime_self(module: str, code_root: Path) -> float:
    """`-X importtime`'s cumulative microseconds for `module` itself, in ms (cross-check)."""
    result = subprocess.run(
        [sys.executable, "-B", "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(code_root)},
    )
    for line in result.stderr.splitlines():
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1]) / 1000
    raise RuntimeError(f"{module} not found in -X importtime output")


def fresh_copy(into: Path) -> Path:
    """A copy of the archive's files without any __pycache__, so every import compiles them."""
    root = into / f"code-{uuid.uuid4().hex[:8]}"
    for relative in mailer_files(MAILER):
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(MAILER / relative, target)
    return root


def bench_imports(repeats: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mailer-bench-") as tmp:
        for module in ("mailer.worker", "mailer.api"):
            lambda_like = [
                timed_import(module, fresh_copy(Path(tmp)), True, False)[0] for _ in range(repeats)
            ]
            timed_import(module, MAILER, False, False)  # writes the bytecode cache
            cached = [timed_import(module, MAILER, False, False)[0] for _ in range(repeats)]
            first_call = [timed_import(module, MAILER, False, True)[1] for _ in range(max(3, repeats // 2))]
            cross_check = importtime_self(module, fresh_copy(Path(tmp)))
            results[module] = {
                "lambda_like_ms_median": round(statistics.median(lambda_like), 1),
                "lambda_like_ms_max": round(max(lambda_like), 1),
                "cached_ms_median": round(statistics.median(cached), 1),
                "importtime_cumulative_ms": round(cross_check, 1),
                "first_invocation_setup_ms_median": round(statistics.median(first_call), 1),
            }
    return results


def bench_archive() -> dict[str, Any]:
    archive = build_zip(MAILER, mailer_files(MAILER))
    files = mailer_files(MAILER)
    return {
        "files": len(files),
        "source_bytes": sum((MAILER / f).stat().st_size for f in files),
        "zip_bytes": len(archive),
        "sha256_b64": source_code_hash(archive),
        "reproducible": build_zip(MAILER, mailer_files(MAILER)) == archive,
    }


_TIMED_SDK = """
import sys, time
sys.path[:0] = [sys.argv[1]]
t0 = time.perf_counter()
import boto3
t1 = time.perf_counter()
for service in ("dynamodb", "sesv2", "sqs"):
    boto3.client(service, region_name="us-east-1")
t2 = time.perf_counter()
assert boto3.__file__.startswith(sys.argv[1]), boto3.__file__
print((t1 - t0) * 1000, (t2 - t1) * 1000)
"""


def bench_layer(repeats: int) -> dict[str, Any]:
    python = find_python(RUNTIME.removeprefix("python"))
    with tempfile.TemporaryDirectory(prefix="layer-bench-") as tmp:
        started = time.perf_counter()
        layer = build_layer(LOCK, cache_dir=Path(tmp) / "cache")
        build_seconds = time.perf_counter() - started
        zip_bytes = layer.stat().st_size
        roots = {label: Path(tmp) / label for label in ("layer", "runtime_like", "sources_only")}
        for root in roots.values():
            shutil.unpack_archive(layer, root, "zip")
        for label in ("runtime_like", "sources_only"):
            for cache in list((roots[label] / "python").rglob("__pycache__")):
                shutil.rmtree(cache)
        # As the runtime's own boto3 is installed: ordinary (timestamp) bytecode, compiled in place.
        subprocess.run(
            [str(python), "-m", "compileall", "-q", str(roots["runtime_like"] / "python")], check=True
        )
        runs: dict[str, list[list[str]]] = {label: [] for label in roots}
        for _ in range(repeats):  # interleaved, so drift on a shared machine hits every variant alike
            for label, root in roots.items():
                runs[label].append(
                    subprocess.run(
                        [str(python), "-I", "-B", "-c", _TIMED_SDK, str(root / "python")],
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout.split()
                )
    figures: dict[str, Any] = {
        "zip_bytes": zip_bytes,
        "build_seconds_empty_cache": round(build_seconds, 1),
    }
    for label, samples in runs.items():
        figures[label] = {
            "import_boto3_ms_median": round(statistics.median(float(r[0]) for r in samples), 1),
            "clients_ms_median": round(statistics.median(float(r[1]) for r in samples), 1),
        }
    base = figures["runtime_like"]["import_boto3_ms_median"]
    figures["layer_over_runtime_like"] = round(figures["layer"]["import_boto3_ms_median"] / base, 2)
    figures["sources_only_over_runtime_like"] = round(
        figures["sources_only"]["import_boto3_ms_median"] / base, 2
    )
    return figures


class Delayed:
    """A boto3 client whose calls each take `delay` seconds longer, standing in for the network.

    Locally every call is CPU work in a moto server sharing our two cores, so it hides what the
    thread pool buys in the cloud, where each call is mostly a wait of a few milliseconds.
    """

    def __init__(self, client: Any, delay: float) -> None:
        self._client = client
        self._delay = delay

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name == "exceptions" or not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            time.sleep(self._delay)
            return attribute(*args, **kwargs)

        return call


def bench_batches(batches: int, latency_ms: float) -> dict[str, Any]:
    with MotoServer() as moto:
        os.environ.update(moto.env())
        resources = create_mail_resources(f"bench-{uuid.uuid4().hex[:8]}")
        from mailer import aws
        from mailer.message import MailMessage, Recipient
        from mailer.settings import Settings
        from mailer.store import MessageStore
        from mailer.validation import SendRequest
        from mailer.worker import Worker

        settings = Settings.from_env("worker", {**resources.worker_env(), "LOG_LEVEL": "WARNING"})
        dynamodb = aws.client("dynamodb", pool_size=BATCH_SIZE)
        ses = aws.client("sesv2", pool_size=BATCH_SIZE, max_attempts=1)

        def batch() -> dict[str, Any]:
            records = []
            for i in range(BATCH_SIZE):
                request = SendRequest(
                    recipients=(f"user_r{i}", "user_team"),
                    subject=f"bench {uuid.uuid4().hex[:6]}",
                    body="Lorem ipsum dolor sit amet. " * 20,
                )
                message = MailMessage.accept(
                    request,
                    sender_id="user_bench",
                    sender_email="bench@example.org",
                    recipients=(
                        Recipient(f"user_r{i}", f"r{i}@example.org"),
                        Recipient("user_team", "team@example.org"),
                    ),
                )
                records.append(
                    {
                        "messageId": str(uuid.uuid4()),
                        "body": message.to_event(),
                        "attributes": {"ApproximateReceiveCount": "1"},
                    }
                )
            return {"Records": records}

        figures: dict[str, Any] = {}
        modes = [
            ("concurrent_10_threads", BATCH_SIZE, 0.0),
            ("one_by_one", 1, 0.0),
            (f"concurrent_+{latency_ms:g}ms_per_call", BATCH_SIZE, latency_ms / 1000),
            (f"one_by_one_+{latency_ms:g}ms_per_call", 1, latency_ms / 1000),
        ]
        for label, concurrency, delay in modes:
            store = MessageStore(Delayed(dynamodb, delay), settings.messages_table)
            worker = Worker(settings, store, Delayed(ses, delay), concurrency=concurrency)
            worker.handle(batch())  # warm-up: connection pools, first-use costs
            timings = []
            for _ in range(batches):
                event = batch()
                started = time.perf_counter()
                result = worker.handle(event)
                timings.append((time.perf_counter() - started) * 1000)
                if result["batchItemFailures"]:
                    raise RuntimeError(f"benchmark batch failed: {result}")
            timings.sort()
            figures[label] = {
                "ms_per_batch_median": round(statistics.median(timings), 1),
                "ms_per_batch_p90": round(timings[int(0.9 * (len(timings) - 1))], 1),
                "ms_per_record_median": round(statistics.median(timings) / BATCH_SIZE, 1),
            }
        figures["speedup"] = round(
            figures[modes[1][0]]["ms_per_batch_median"] / figures[modes[0][0]]["ms_per_batch_median"], 2
        )
        figures["speedup_with_latency"] = round(
            figures[modes[3][0]]["ms_per_batch_median"] / figures[modes[2][0]]["ms_per_batch_median"], 2
        )
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=7, help="fresh interpreters per import figure")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per mode")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=10.0,
        help="added per AWS call in the latency modes (in-region RTT)",
    )
    args = parser.parse_args()

    print(f"python {sys.version.split()[0]} on {os.cpu_count()} cores (the Lambda runs python3.13 on arm64)")
    imports = bench_imports(args.repeats)
    for module, figures in imports.items():
        verdict = "ok" if figures["lambda_like_ms_median"] <= IMPORT_TARGET_MS else "OVER TARGET"
        print(
            f"cold import {module:14} lambda-like {figures['lambda_like_ms_median']:6.1f} ms median "
            f"(max {figures['lambda_like_ms_max']:.1f}, -X importtime {figures['importtime_cumulative_ms']:.1f}), "
            f"bytecode cached {figures['cached_ms_median']:.1f} ms  [{verdict}, target <= {IMPORT_TARGET_MS:.0f} ms]"
        )
        print(
            f"  first invocation adds {figures['first_invocation_setup_ms_median']:.1f} ms "
            "(import boto3 + build its clients)"
        )

    archive = bench_archive()
    verdict = "ok" if archive["zip_bytes"] <= ARCHIVE_TARGET_BYTES else "OVER TARGET"
    print(
        f"archive: {archive['files']} files, {archive['source_bytes']} bytes of source -> "
        f"{archive['zip_bytes']} bytes zipped ({archive['zip_bytes'] / 1024:.1f} KB) "
        f"[{verdict}, target <= 64 KB], reproducible={archive['reproducible']}, sha256={archive['sha256_b64']}"
    )

    layer = bench_layer(args.repeats)
    verdict = "ok" if layer["layer_over_runtime_like"] <= LAYER_IMPORT_RATIO_TARGET else "OVER TARGET"
    print(
        f"SDK layer: {layer['zip_bytes'] / 1e6:.1f} MB zipped, built in {layer['build_seconds_empty_cache']} s "
        f"from an empty cache; cold import boto3 on {RUNTIME}: layer {layer['layer']['import_boto3_ms_median']:.1f} ms, "
        f"runtime-like install {layer['runtime_like']['import_boto3_ms_median']:.1f} ms "
        f"({layer['layer_over_runtime_like']}x) [{verdict}, target <= {LAYER_IMPORT_RATIO_TARGET}x], "
        f"sources only {layer['sources_only']['import_boto3_ms_median']:.1f} ms ({layer['sources_only_over_runtime_like']}x)"
    )

    batches = bench_batches(args.batches, args.latency_ms)
    for label, figures in batches.items():
        if not isinstance(figures, dict):
            continue
        print(
            f"10-record batch, {label:29}: {figures['ms_per_batch_median']:7.1f} ms median, "
            f"p90 {figures['ms_per_batch_p90']:.1f} ms ({figures['ms_per_record_median']:.1f} ms/record)"
        )
    print(
        f"concurrency speed-up: {batches['speedup']}x against moto as is (CPU-bound, sharing our cores), "
        f"{batches['speedup_with_latency']}x with {args.latency_ms:g} ms of latency per AWS call"
    )
    print(json.dumps({"imports": imports, "archive": archive, "layer": layer, "batch": batches}))


if __name__ == "__main__":
    main()
