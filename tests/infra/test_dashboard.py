"""Each stack's CloudWatch dashboard (components/operations.py, laid out by components/aws/dashboard.py).

CloudWatch's PutDashboard validates the body, but the mocks accept any string: the body's rules are
ported here from "Dashboard Body Structure and Syntax" (CloudWatch API Reference; the same rules are
cited in components/aws/dashboard.py) and PutDashboard's DashboardName ("The maximum length is 255,
and valid characters are A-Z, a-z, 0-9, "-", and "_"", botocore cloudwatch/2010-08-01/service-2.json).
Every metric must be one AWS documents or a service declares (test_alarm_dimensions.undocumented), and
the dashboard must show what an operator needs: every alarm's status and metric, the ALB, each ECS
service, RDS, Redis, the mail queues, the Lambdas, WAF blocks, and every metric the services publish.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from components.facts import CHAT, FILES, MAILER
from tests.infra.harness import StackRun
from tests.infra.test_alarm_dimensions import ALARM, undocumented

DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"
FUNCTION = "aws:lambda/function:Function"
NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")
STATISTIC = re.compile(r"SampleCount|Average|Sum|Minimum|Maximum|p(\d{1,2}(\.\d+)?|100)")


def body(stack: StackRun) -> dict[str, Any]:
    [dashboard] = stack.of_type(DASHBOARD)
    assert NAME.fullmatch(dashboard.inputs["dashboardName"]), dashboard.inputs["dashboardName"]
    parsed: dict[str, Any] = json.loads(dashboard.inputs["dashboardBody"])
    return parsed


def metrics(parsed: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Each graphed metric as an alarm's inputs would name it."""
    for widget in parsed["widgets"]:
        if widget["type"] != "metric":
            continue
        for row in widget["properties"]["metrics"]:
            *names, rendering = row
            namespace, metric, *pairs = names
            yield {
                "namespace": namespace,
                "metricName": metric,
                "dimensions": dict(zip(pairs[::2], pairs[1::2], strict=True)),
                "stat": rendering["stat"],
            }


def key(metric: dict[str, Any]) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    return metric["namespace"], metric["metricName"], tuple(sorted((metric.get("dimensions") or {}).items()))


def layout_problems(parsed: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    widgets = parsed["widgets"]
    if len(widgets) > 500:
        problems.append(f"{len(widgets)} widgets (at most 500)")
    cells: dict[tuple[int, int], int] = {}
    for index, w in enumerate(widgets):
        where = f"widget {index}"
        if w["type"] not in ("metric", "text", "log", "alarm", "explorer"):
            problems.append(f"{where}: type {w['type']}")
        if not (0 <= w["x"] <= 23 and 1 <= w["width"] <= 24 and w["x"] + w["width"] <= 24):
            problems.append(f"{where}: x {w['x']} width {w['width']} leave the 24-column grid")
        if not (w["y"] >= 0 and 1 <= w["height"] <= 1000):
            problems.append(f"{where}: y {w['y']} height {w['height']}")
        for x in range(w["x"], w["x"] + w["width"]):
            for y in range(w["y"], w["y"] + w["height"]):
                if (x, y) in cells:
                    problems.append(f"{where} overlaps widget {cells[(x, y)]}")
                cells[(x, y)] = index
        props = w["properties"]
        if w["type"] == "metric":
            if not props.get("region"):
                problems.append(f"{where}: a metric widget needs its region")
            if props.get("period", 300) % 60 or props.get("period", 300) < 60:
                problems.append(f"{where}: period {props.get('period')} is not a multiple of 60")
            if not 1 <= len(props["metrics"]) <= 500:
                problems.append(f"{where}: {len(props['metrics'])} metrics")
            if "alarms" in props.get("annotations", {}):
                problems.append(f"{where}: an alarm annotation excludes metrics and horizontal annotations")
            for row in props["metrics"]:
                stat = row[-1].get("stat", "")
                if not STATISTIC.fullmatch(stat):
                    problems.append(f"{where}: statistic {stat!r}")
                if len(row[2:-1]) % 2:
                    problems.append(f"{where}: a dimension without its value in {row}")
        if w["type"] == "alarm" and not 1 <= len(props["alarms"]) <= 100:
            problems.append(f"{where}: {len(props['alarms'])} alarms (1 to 100 per widget)")
        if w["type"] == "text" and not props.get("markdown"):
            problems.append(f"{where}: a text widget needs markdown")
    return problems


def test_the_body_keeps_cloudwatchs_rules(stack: StackRun) -> None:
    assert layout_problems(body(stack)) == []


def test_the_rule_check_refuses_what_putdashboard_would() -> None:
    good: dict[str, Any] = {
        "type": "metric",
        "x": 0,
        "y": 0,
        "width": 8,
        "height": 6,
        "properties": {"region": "eu-west-1", "period": 60, "metrics": [["AWS/SQS", "X", {"stat": "Sum"}]]},
    }
    assert layout_problems({"widgets": [good]}) == []
    assert layout_problems({"widgets": [{**good, "x": 20}]}), "off the grid"
    assert layout_problems({"widgets": [good, {**good, "x": 4}]}), "overlap"
    assert layout_problems({"widgets": [{**good, "properties": {**good["properties"], "period": 90}}]})
    assert layout_problems({"widgets": [{**good, "properties": {**good["properties"], "region": ""}}]})
    bad_stat = [["AWS/SQS", "X", {"stat": "Median"}]]
    assert layout_problems({"widgets": [{**good, "properties": {**good["properties"], "metrics": bad_stat}}]})


def test_every_graphed_metric_is_documented_or_declared(stack: StackRun) -> None:
    problems = {
        f"{m['namespace']} {m['metricName']} {m['dimensions']}": why
        for m in metrics(body(stack))
        if (why := undocumented(m))
    }
    assert not problems, problems


def test_every_alarm_is_on_the_dashboard_with_its_status_and_its_metric(stack: StackRun) -> None:
    parsed = body(stack)
    listed = [arn for w in parsed["widgets"] if w["type"] == "alarm" for arn in w["properties"]["alarms"]]
    alarms = stack.of_type(ALARM)
    # The mocks name a resource's ARN after its resource name (stacktools/mocked_program.py).
    assert sorted(arn.rsplit(":", 1)[-1] for arn in listed) == sorted(a.name for a in alarms)
    graphed = {key(m) for m in metrics(parsed)}
    missing = [a.name for a in alarms if key(a.inputs) not in graphed]
    assert not missing, f"alarms whose metric no graph shows: {missing}"
    thresholds = {
        a["value"]
        for w in parsed["widgets"]
        if w["type"] == "metric"
        for a in w["properties"].get("annotations", {}).get("horizontal", [])
    }
    assert {a.inputs["threshold"] for a in alarms} <= thresholds, "each alarm's threshold is drawn"


def test_it_shows_what_an_operator_looks_at(stack: StackRun) -> None:
    shown = {(m["namespace"], m["metricName"]) for m in metrics(body(stack))}
    by_dimension: dict[str, set[str]] = {}
    for m in metrics(body(stack)):
        for name, value in m["dimensions"].items():
            by_dimension.setdefault(name, set()).add(value)
    required = {
        ("AWS/ApplicationELB", name)
        for name in ("RequestCount", "HTTPCode_ELB_4XX_Count", "HTTPCode_ELB_5XX_Count", "TargetResponseTime")
    }
    required |= {("AWS/ECS", "CPUUtilization"), ("AWS/ECS", "MemoryUtilization")}
    required |= {("AWS/RDS", "CPUUtilization"), ("AWS/ElastiCache", "DatabaseMemoryUsagePercentage")}
    required |= {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage"),
    }
    required |= {("AWS/Lambda", name) for name in ("Errors", "Duration", "Throttles")}
    required |= {
        (own.namespace, name) for own in (CHAT.metrics, FILES.metrics, MAILER.metrics) for name in own.names
    }
    if stack.config.waf:
        required.add(("AWS/WAFV2", "BlockedRequests"))
    if stack.config.container_insights:
        required |= {
            ("ECS/ContainerInsights", "RunningTaskCount"),
            ("ECS/ContainerInsights", "DeploymentCount"),
        }
    assert required - shown == set()
    # Every function, every ECS service, every target group, every queue.
    lambdas = {
        m["dimensions"]["FunctionName"] for m in metrics(body(stack)) if m["namespace"] == "AWS/Lambda"
    }
    assert len(lambdas) == len(stack.of_type(FUNCTION))
    services = {s.inputs["name"] for s in stack.of_type("aws:ecs/service:Service")}
    assert services <= by_dimension["ServiceName"]
    assert len(by_dimension["QueueName"]) == len(stack.of_type("aws:sqs/queue:Queue"))
    target_groups = {
        f"targetgroup/{t.name}/0123456789abcdef" for t in stack.of_type("aws:lb/targetGroup:TargetGroup")
    }
    assert target_groups <= by_dimension["TargetGroup"]


def test_dashboards_of_two_stacks_in_one_account_do_not_collide(dev: StackRun, production: StackRun) -> None:
    # Dashboards are global to the account (PutDashboard), whatever region each stack runs in.
    names = [s.of_type(DASHBOARD)[0].inputs["dashboardName"] for s in (dev, production)]
    assert len(set(names)) == 2, names
