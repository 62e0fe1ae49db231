"""The operators' saved Logs Insights queries: they read every log group a service writes to (each
task definition's awslogs group, each function's logging config), so no service is missing from
"errors per service" or from following one request."""

from __future__ import annotations

from components.operations import ERRORS_PER_SERVICE, ONE_REQUEST
from tests.infra.harness import StackRun

QUERY = "aws:cloudwatch/queryDefinition:QueryDefinition"


def written_log_groups(stack: StackRun) -> set[str]:
    groups = {
        container["logConfiguration"]["options"]["awslogs-group"]
        for task in stack.of_type("aws:ecs/taskDefinition:TaskDefinition")
        for container in task.json("containerDefinitions")
    }
    groups |= {fn.inputs["loggingConfig"]["logGroup"] for fn in stack.of_type("aws:lambda/function:Function")}
    return groups


def test_the_saved_queries_read_every_service_log_group(stack: StackRun) -> None:
    queries = {q.inputs["name"]: q for q in stack.of_type(QUERY)}
    prefix = stack.config.name_prefix
    assert set(queries) == {f"{prefix}/errors-per-service", f"{prefix}/one-request"}
    expected = written_log_groups(stack)
    assert len(expected) >= 9  # upload, download, chat, migration task; 5 functions
    for query in queries.values():
        assert set(query.inputs["logGroupNames"]) == expected
    assert queries[f"{prefix}/errors-per-service"].inputs["queryString"] == ERRORS_PER_SERVICE
    assert queries[f"{prefix}/one-request"].inputs["queryString"] == ONE_REQUEST


def test_the_queries_filter_on_the_fields_the_services_log() -> None:
    # The files service's request id and the Lambdas' request id (motion_common.logs, mailer.logs).
    assert 'request_id = "REQUEST_ID"' in ONE_REQUEST and 'aws_request_id = "REQUEST_ID"' in ONE_REQUEST
    # JSON lines have `level`; text lines (a traceback) are found by their words.
    assert 'level in ["ERROR", "CRITICAL"]' in ERRORS_PER_SERVICE
    for query in (ERRORS_PER_SERVICE, ONE_REQUEST):
        commands = [line.lstrip("| ").split()[0] for line in query.splitlines()]
        # Logs Insights commands (CloudWatch Logs User Guide, "Query syntax").
        assert set(commands) <= {"fields", "filter", "stats", "sort", "limit", "display", "parse"}
