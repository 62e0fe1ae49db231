#!/usr/bin/env python
"""Should the mailer's Lambdas use AWS Lambda Powertools for Python? The cold-start side of it.

Powertools offers what the mailer writes by hand: structured logs (Logger), EMF metrics (Metrics),
partial batch responses (BatchProcessor) and idempotency (idempotent_function over DynamoDB). AWS
publishes it as a layer, so the archive would not grow, but its modules are imported at every
cold start all the same. This measures, each in fresh interpreters, the time to import:

    ours            the mailer's handler module (mailer.worker), from sources as Lambda runs them
                    (no bytecode written: /var/task is read-only)
    ours + boto3    plus boto3, which the first invocation imports anyway (Powertools' idempotency
                    imports it at import time)
    + logger/metrics  the same, plus aws_lambda_powertools.logging and .metrics (bytecode compiled,
                    as a layer may ship it)
    + batch         plus aws_lambda_powertools.utilities.batch
    + idempotency   plus aws_lambda_powertools.utilities.idempotency

Powertools is installed from PyPI into a temporary directory (the version below). Figures are
medians of --runs interpreters, on this machine's Python (the Lambda runtime is 3.13; the ratio
is what carries over).

    .venv/bin/python bench/powertools_bench.py [--runs 15]
"""

from __future__ import annotations

import argparse
import compileall
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
POWERTOOLS = "aws-lambda-powertools==3.37.0"
CANDIDATES = {
    "ours": ["mailer.worker"],
    # What every cold start pays anyway by its first invocation (the clients are built then).
    "ours + boto3": ["mailer.worker", "boto3"],
    "+ logger/metrics": ["mailer.worker", "aws_lambda_powertools.logging", "aws_lambda_powertools.metrics"],
    "+ batch": [
        "mailer.worker",
        "aws_lambda_powertools.logging",
        "aws_lambda_powertools.metrics",
        "aws_lambda_powertools.utilities.batch",
    ],
    "+ idempotency": [
        "mailer.worker",
        "aws_lambda_powertools.logging",
        "aws_lambda_powertools.metrics",
        "aws_lambda_powertools.utilities.batch",
        "aws_lambda_powertools.utilities.idempotency",
    ],
}


def import_ms(paths: list[Path], modules: list[str]) -> float:
    script = (
        "import sys, time\n"
        f"sys.path[:0] = {[str(p) for p in paths]!r}\n"
        "t = time.perf_counter()\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print((time.perf_counter() - t) * 1000)\n"
    )
    # -B: no bytecode written for our sources, as in /var/task; -I keeps the user site out.
    done = subprocess.run(
        [sys.executable, "-B", "-I", "-c", script], capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="powertools-bench-") as tmp:
        root = Path(tmp)
        layer = root / "layer"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--target", str(layer), POWERTOOLS],
            check=True,
        )
        compileall.compile_dir(layer, quiet=1)
        task = root / "task"
        # Our sources only, no bytecode caches (the archive carries none).
        shutil.copytree(
            REPO / "app_code" / "mailer" / "mailer",
            task / "mailer",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        # boto3 is imported on first use, not at import, so the venv's site-packages are not needed.
        paths = [task, layer]
        for modules in CANDIDATES.values():  # warm the OS file cache once
            import_ms(paths, modules)
        results: dict[str, list[float]] = {name: [] for name in CANDIDATES}
        for _ in range(args.runs):  # interleaved, so drift and load hit every candidate alike
            for name, modules in CANDIDATES.items():
                results[name].append(import_ms(paths, modules))
    base = statistics.median(results["ours"])
    print(f"{'import':<18} {'median ms':>10} {'p90 ms':>8} {'vs ours':>8}")
    summary = {}
    for name, times in results.items():
        median = statistics.median(times)
        p90 = sorted(times)[int(len(times) * 0.9) - 1]
        summary[name] = round(median, 1)
        print(f"{name:<18} {median:>10.1f} {p90:>8.1f} {median / base:>7.2f}x")
    print(json.dumps({"powertools": POWERTOOLS, "python": sys.version.split()[0], "median_ms": summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
