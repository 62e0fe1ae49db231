"""A CloudWatch dashboard as data: each component describes what an operator looks at (a `Panel`: its
graphs and the alarms it created), one function lays every panel out as a dashboard body.

A graph is built from the same `Alarm` facts the component's alarms were made from (`Graph.watching`),
so an alarm's metric is always on the dashboard with its threshold drawn, and the alarm status widget
at the top lists every alarm. The body follows "Dashboard Body Structure and Syntax" (CloudWatch API
Reference, CloudWatch-Dashboard-Body-Structure): a 24-column grid, at most 500 widgets, widgets of type
`metric`, `text` and `alarm`, a metric widget's `region` required and its period a multiple of 60, a
metric widget with horizontal annotations but no alarm annotation, an alarm status widget of 1 to 100
alarm ARNs. tests/infra/test_dashboard.py holds the bodies both stacks render to those rules.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pulumi
import pulumi_aws as aws

from components.aws.alarms import Alarm

GRID_COLUMNS: Final = 24
GRAPH_WIDTH: Final = 8
GRAPH_HEIGHT: Final = 6
# "An array of alarm ARNs to include in the widget. The array can have 1-100 ARNs."
ALARMS_PER_STATUS_WIDGET: Final = 100
MAX_WIDGETS: Final = 500


@dataclass(frozen=True)
class Metric:
    namespace: str
    name: str
    statistic: str
    dimensions: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    label: str | None = None


@dataclass(frozen=True)
class Threshold:
    label: str
    value: float


@dataclass(frozen=True)
class Graph:
    title: str
    metrics: Sequence[Metric]
    thresholds: Sequence[Threshold] = ()
    period_seconds: int = 300

    @staticmethod
    def watching(
        title: str,
        alarms: Iterable[tuple[str, Alarm]],
        *others: Metric,
        period_seconds: int | None = None,
    ) -> Graph:
        """The alarms' metrics (each labelled), their thresholds, then any other metrics of the graph.

        The graph's period is the alarms' (the shortest), so a line crosses the threshold when the
        alarm would, unless the caller asks for another."""
        watched = list(alarms)
        thresholds: dict[tuple[str, float], Threshold] = {}
        for _, alarm in watched:
            label = f"alarm {alarm.suffix}"
            thresholds.setdefault((label, alarm.threshold), Threshold(label, alarm.threshold))
        period = period_seconds or min((a.period_seconds for _, a in watched), default=300)
        return Graph(
            title,
            [*(alarm_metric(alarm, label) for label, alarm in watched), *others],
            tuple(thresholds.values()),
            period,
        )


def alarm_metric(alarm: Alarm, label: str | None = None) -> Metric:
    return Metric(alarm.namespace, alarm.metric, alarm.statistic, alarm.dimensions, label)


@dataclass(frozen=True)
class Panel:
    """One component's part of the dashboard: a heading, its graphs, and the alarms it made."""

    title: str
    graphs: Sequence[Graph]
    alarms: Sequence[aws.cloudwatch.MetricAlarm] = ()
    note: str = ""


def lambda_graphs(functions: Sequence[tuple[str, pulumi.Input[str]]]) -> list[Graph]:
    """Errors, duration and throttles of each function, one line per function per graph."""

    def per_function(metric: str, statistic: str) -> list[Metric]:
        return [
            Metric("AWS/Lambda", metric, statistic, {"FunctionName": fn}, label) for label, fn in functions
        ]

    return [
        Graph("Lambda errors", per_function("Errors", "Sum")),
        Graph("Lambda duration p99 (ms)", per_function("Duration", "p99")),
        Graph("Lambda throttles", per_function("Throttles", "Sum")),
    ]


def _metric_row(metric: Metric) -> list[Any]:
    row: list[Any] = [metric.namespace, metric.name]
    for name in sorted(metric.dimensions):
        row += [name, metric.dimensions[name]]
    rendering: dict[str, Any] = {"stat": metric.statistic}
    if metric.label:
        rendering["label"] = metric.label
    return [*row, rendering]


def _graph_widget(graph: Graph, region: str, x: int, y: int) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "title": graph.title,
        "region": region,
        "view": "timeSeries",
        "stacked": False,
        "period": graph.period_seconds,
        "metrics": [_metric_row(metric) for metric in graph.metrics],
    }
    if graph.thresholds:
        properties["annotations"] = {
            "horizontal": [{"label": t.label, "value": t.value} for t in graph.thresholds]
        }
    return {
        "type": "metric",
        "x": x,
        "y": y,
        "width": GRAPH_WIDTH,
        "height": GRAPH_HEIGHT,
        "properties": properties,
    }


def _text(markdown: str, y: int, height: int) -> dict[str, Any]:
    return {
        "type": "text",
        "x": 0,
        "y": y,
        "width": GRID_COLUMNS,
        "height": height,
        "properties": {"markdown": markdown},
    }


def dashboard_body(title: str, region: str, panels: Sequence[Panel]) -> pulumi.Output[str]:
    """The dashboard's JSON body: a heading, the alarm status of every panel's alarms, then each panel
    as a heading and its graphs, three to a row."""
    widgets: list[dict[str, Any]] = [
        _text(
            f"# {title}\nGenerated by the Pulumi program (components/operations.py) from the same facts "
            "as the alarms: edits made in the console are replaced by the next `pulumi up`.",
            0,
            2,
        )
    ]
    y = 2
    alarm_arns = [alarm.arn for panel in panels for alarm in panel.alarms]
    for start in range(0, len(alarm_arns), ALARMS_PER_STATUS_WIDGET):
        chunk = alarm_arns[start : start + ALARMS_PER_STATUS_WIDGET]
        # Four alarm names fit on a row of a full-width status widget.
        height = 2 + -(-len(chunk) // 4)
        widgets.append(
            {
                "type": "alarm",
                "x": 0,
                "y": y,
                "width": GRID_COLUMNS,
                "height": height,
                "properties": {"title": "Alarms", "alarms": chunk, "sortBy": "stateUpdatedTimestamp"},
            }
        )
        y += height
    per_row = GRID_COLUMNS // GRAPH_WIDTH
    for panel in panels:
        heading = f"## {panel.title}" + (f"\n{panel.note}" if panel.note else "")
        height = 2 if panel.note else 1
        widgets.append(_text(heading, y, height))
        y += height
        for index, graph in enumerate(panel.graphs):
            widgets.append(
                _graph_widget(
                    graph, region, (index % per_row) * GRAPH_WIDTH, y + (index // per_row) * GRAPH_HEIGHT
                )
            )
        y += -(-len(panel.graphs) // per_row) * GRAPH_HEIGHT
    if len(widgets) > MAX_WIDGETS:
        raise ValueError(f"the dashboard would have {len(widgets)} widgets; CloudWatch allows {MAX_WIDGETS}")
    # from_input resolves the Outputs (dimension values, alarm ARNs) nested anywhere in the structure.
    return pulumi.Output.from_input({"widgets": widgets}).apply(lambda body: json.dumps(body, sort_keys=True))
