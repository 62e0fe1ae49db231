"""motion_common's metrics (EMF documents aggregated per interval) and structured logs (request
ids on every line), held to the EMF specification's rules ("Specification: Embedded metric
format", CloudWatch User Guide) and to the limits AWS's own EMF library keeps
(aws-embedded-metrics-python, constants.py: 100 metrics per document, 100 values per metric)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import time
from typing import Any

import pytest
from motion_common.logs import JsonFormatter, request_context, request_id_from
from motion_common.metrics import MAX_VALUES, Metrics


def assert_valid_emf(document: dict[str, Any]) -> None:
    """The specification's structural rules for one EMF log event."""
    meta = document["_aws"]
    assert isinstance(meta["Timestamp"], int) and meta["Timestamp"] > 1_600_000_000_000
    for directive in meta["CloudWatchMetrics"]:
        assert isinstance(directive["Namespace"], str) and 0 < len(directive["Namespace"]) <= 1024
        for dimension_set in directive["Dimensions"]:
            assert len(dimension_set) <= 30
            for name in dimension_set:  # each dimension a string member of the root
                assert isinstance(document[name], str)
        assert 0 < len(directive["Metrics"]) <= 100
        for metric in directive["Metrics"]:
            value = document[metric["Name"]]  # each metric a member of the root
            values = value if isinstance(value, list) else [value]
            assert 0 < len(values) <= MAX_VALUES
            assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def test_counts_from_many_threads_add_up_exactly_and_each_interval_starts_afresh() -> None:
    metrics = Metrics("Motion/Test", {"Service": "t"})

    def work() -> None:
        for _ in range(10_000):
            metrics.count("Things")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    metrics.count("Bytes", 5.5)
    document = metrics.document()
    assert document is not None
    assert_valid_emf(document)
    assert (document["Things"], document["Bytes"], document["Service"]) == (80_000, 5.5, "t")
    assert metrics.document() is None  # nothing happened since: no document, no zero data points
    metrics.count("Things", 2)
    again = metrics.document()
    assert again is not None and again["Things"] == 2 and "Bytes" not in again


def test_a_distribution_is_a_fair_sample_of_at_most_100_values_with_the_largest_kept() -> None:
    metrics = Metrics("Motion/Test", {"Service": "t"}, units={"Latency": "Microseconds"}, seed=3)
    for value in range(1, 10_001):
        metrics.observe("Latency", float(value))
    metrics.observe("Latency", float("nan"))  # not a number: not a sample
    document = metrics.document()
    assert document is not None
    assert_valid_emf(document)
    sample = document["Latency"]
    assert len(sample) == MAX_VALUES and 10_000.0 in sample
    assert all(1 <= v <= 10_000 for v in sample)
    assert 3_000 < sorted(sample)[50] < 7_000  # the median of a uniform sample, not the first 100
    [metric] = document["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    assert metric == {"Name": "Latency", "Unit": "Microseconds"}
    few = Metrics("Motion/Test", {"Service": "t"})
    for sample in (3.0, 1.0, 2.0):
        few.observe("Latency", sample)
    assert sorted((few.document() or {})["Latency"]) == [1.0, 2.0, 3.0]


def test_the_publisher_writes_one_line_per_interval_and_the_rest_at_stop() -> None:
    out = io.StringIO()
    metrics = Metrics("Motion/Test", {"Service": "t"}, interval_seconds=0.05, out=lambda: out)
    metrics.start()
    metrics.count("Ticks")
    deadline = time.monotonic() + 5
    while "Ticks" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    metrics.count("Ticks", 4)
    metrics.stop()
    documents = [json.loads(line) for line in out.getvalue().splitlines()]
    assert sum(d["Ticks"] for d in documents) == 5 and len(documents) >= 2
    for document in documents:
        assert_valid_emf(document)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Root=1-67891233-abcdef012345678912345678", "1-67891233-abcdef012345678912345678"),
        (
            "Self=1-67891233-12456789abcdef012345678;Root=1-67891233-abcdef012345678912345678;Sampled=1",
            "1-67891233-abcdef012345678912345678",
        ),
        ("Root=<script>", None),
        ("Root=" + "a" * 65, None),
        ("x" * 300, None),
        ("", None),
        (None, None),
    ],
)
def test_the_request_id_is_the_albs_trace_root_or_a_new_one(header: str | None, expected: str | None) -> None:
    got = request_id_from(header)
    if expected is None:
        assert len(got) == 24 and int(got, 16) >= 0
        assert request_id_from(header) != got  # fresh each time
    else:
        assert got == expected


def test_every_line_logged_in_a_request_carries_its_id_tasks_included() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("motion.test.telemetry")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

    async def scenario() -> None:
        logger.info("before")
        with request_context("req-1"):
            logger.info("inside", extra={"status": 201})

            async def later() -> None:
                await asyncio.sleep(0)
                logger.warning("in a task")

            task = asyncio.create_task(later())
        logger.info("after")
        await task

    asyncio.run(scenario())
    lines = {d["message"]: d for d in map(json.loads, out.getvalue().splitlines())}
    assert "request_id" not in lines["before"] and "request_id" not in lines["after"]
    assert lines["inside"]["request_id"] == "req-1" and lines["inside"]["status"] == 201
    assert lines["in a task"]["request_id"] == "req-1"  # a task copies the context it was made in
    assert lines["in a task"]["level"] == "WARNING"


def test_a_failed_publish_is_logged_and_the_publisher_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    class Flaky(io.StringIO):
        failures = 1

        def write(self, text: str) -> int:
            if self.failures:
                self.failures -= 1
                raise OSError("stdout is gone")
            return super().write(text)

    out = Flaky()
    metrics = Metrics("Motion/Test", {"Service": "t"}, interval_seconds=0.05, out=lambda: out)
    with caplog.at_level("ERROR", logger="motion_common.metrics"):
        metrics.start()
        metrics.count("Lost")
        deadline = time.monotonic() + 5
        while out.failures and time.monotonic() < deadline:
            time.sleep(0.01)
        metrics.count("Kept", 2)
        while "Kept" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        metrics.stop()
    assert [r.getMessage() for r in caplog.records] == [
        "publishing the interval's metrics failed; the next interval is tried anyway"
    ]
    documents = [json.loads(line) for line in out.getvalue().splitlines()]
    assert sum(d.get("Kept", 0) for d in documents) == 2
