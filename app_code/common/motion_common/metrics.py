"""Service metrics as CloudWatch Embedded Metric Format (EMF), aggregated per interval.

A container writes its logs to stdout, the task's awslogs driver ships each line to CloudWatch
Logs, and CloudWatch extracts the metrics from any line that is an EMF document ("Specification:
Embedded metric format", CloudWatch User Guide): no API call, no IAM permission, no agent. One
document per interval carries every counter and every latency distribution of that interval, so
the hot paths pay a dictionary update per event and nothing per request goes to the log.

Counters are `Count` metrics (the interval's sum). A distribution (a latency) is published as an
array of values, which EMF allows up to 100 per metric per document (as AWS's own EMF library
sends them: aws-embedded-metrics-python, constants.MAX_DATAPOINTS_PER_METRIC): a uniform sample of
at most 100 of the interval's observations (reservoir sampling, Vitter's algorithm R), with the
interval's largest always among them, so CloudWatch's percentiles come from a fair sample at a
fixed cost per observation. A metric with nothing to report in an interval is left out
(CloudWatch then has no data point, which alarms treat as missing, not as zero).
"""

from __future__ import annotations

import json
import logging
import math
import random
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, TextIO

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS: Final = 60.0
# EMF: at most 100 values per metric and 100 metrics per document.
MAX_VALUES: Final = 100
MAX_METRICS: Final = 100


class _Sample:
    """A uniform sample of at most MAX_VALUES observations, and the largest one."""

    __slots__ = ("largest", "seen", "values")

    def __init__(self) -> None:
        self.values: list[float] = []
        self.seen = 0
        self.largest = -math.inf

    def add(self, value: float, rng: random.Random) -> None:
        self.seen += 1
        if value > self.largest:
            self.largest = value
        if len(self.values) < MAX_VALUES:
            self.values.append(value)
        else:
            slot = rng.randrange(self.seen)
            if slot < MAX_VALUES:
                self.values[slot] = value

    def published(self) -> list[float]:
        values = list(self.values)
        if self.largest not in values:
            values[values.index(min(values))] = self.largest
        return values


class Metrics:
    """One service's metrics; `count` and `observe` are safe from any thread."""

    def __init__(
        self,
        namespace: str,
        dimensions: Mapping[str, str],
        *,
        units: Mapping[str, str] | None = None,
        interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
        out: Callable[[], TextIO] = lambda: sys.stdout,
        seed: int | None = None,
    ) -> None:
        self.namespace = namespace
        self.dimensions = dict(dimensions)
        # Name -> EMF unit ("Milliseconds", "Count", ...); counters default to Count.
        self.units = dict(units or {})
        self.interval_seconds = interval_seconds
        self._out = out
        self._lock = threading.Lock()
        self._counts: dict[str, float] = {}
        self._values: dict[str, _Sample] = {}
        self._rng = random.Random(seed)  # noqa: S311 - sampling, not crypto
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- recording (hot paths) -----------------------------------------------------------------

    def count(self, name: str, value: float = 1) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + value

    def observe(self, name: str, value: float) -> None:
        """One observation of a distribution (a latency in the metric's unit)."""
        if not math.isfinite(value):
            return
        with self._lock:
            sample = self._values.get(name)
            if sample is None:
                sample = self._values[name] = _Sample()
            sample.add(value, self._rng)

    # --- publishing ----------------------------------------------------------------------------

    def document(self, now_ms: int | None = None) -> dict[str, Any] | None:
        """The interval's EMF document (and a fresh interval), or None when nothing happened."""
        with self._lock:
            counts, self._counts = self._counts, {}
            values, self._values = self._values, {}
        if not counts and not values:
            return None
        metrics: list[dict[str, str]] = []
        document: dict[str, Any] = dict(self.dimensions)
        for name, total in counts.items():
            metrics.append({"Name": name, "Unit": self.units.get(name, "Count")})
            document[name] = total
        for name, sample in values.items():
            metrics.append({"Name": name, "Unit": self.units.get(name, "Milliseconds")})
            document[name] = sample.published()
        if len(metrics) > MAX_METRICS:
            raise ValueError(f"{len(metrics)} metrics in one document; EMF allows {MAX_METRICS}")
        document["_aws"] = {
            "Timestamp": now_ms if now_ms is not None else int(time.time() * 1000),
            "CloudWatchMetrics": [
                {"Namespace": self.namespace, "Dimensions": [sorted(self.dimensions)], "Metrics": metrics}
            ],
        }
        return document

    def flush(self) -> None:
        document = self.document()
        if document is not None:
            out = self._out()
            out.write(json.dumps(document, separators=(",", ":")) + "\n")
            out.flush()

    def start(self) -> None:
        """Publish every interval from a background thread (until `stop`)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="emf-metrics", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            self.flush_logging_failure()

    def flush_logging_failure(self) -> bool:
        """`flush`, and on failure (stdout gone, a document EMF refuses) say so and go on: a
        publisher that died with its first failure would leave the service without metrics, and
        the alarms on them without data, for the rest of its life. False when it failed."""
        try:
            self.flush()
        except Exception:
            log.exception("publishing the interval's metrics failed; the next interval is tried anyway")
            return False
        return True

    def stop(self) -> None:
        """Stop the thread and publish what the last interval gathered (at shutdown)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.flush()
