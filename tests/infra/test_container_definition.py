"""The Fargate containers as data (components/aws/container_definition.py): plain inputs in, one
`containerDefinitions` entry out, checked without mocks or an engine."""

from __future__ import annotations

from typing import Any

from components.aws.container_definition import container_definition, job_container_definition


def service(**overrides: Any) -> dict[str, Any]:
    inputs: dict[str, Any] = {
        "name": "web",
        "image": "registry/web@sha256:abc",
        "user": "app",
        "port": 8080,
        "liveness_path": "/livez",
        "log_group": "/stack/web",
        "region": "eu-west-1",
        "stream_prefix": "stack-web",
        **overrides,
    }
    return container_definition(**inputs)


def test_a_service_container_is_locked_down_by_default() -> None:
    spec = service()
    assert spec["readonlyRootFilesystem"] is True and spec["privileged"] is False
    assert spec["linuxParameters"] == {"initProcessEnabled": True, "capabilities": {"drop": ["ALL"]}}
    assert spec["user"] == "app" and spec["essential"] is True
    assert spec["mountPoints"] == [{"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False}]
    assert spec["environment"] == [] and spec["secrets"] == [] and "command" not in spec
    assert spec["stopTimeout"] == 30


def test_its_health_check_asks_the_liveness_path_on_its_port() -> None:
    spec = service(port=9000, liveness_path="/health/live")
    assert spec["portMappings"] == [{"containerPort": 9000, "protocol": "tcp"}]
    probe = spec["healthCheck"]["command"]
    assert probe[:3] == ["CMD", "python", "-c"]
    assert "http://127.0.0.1:9000/health/live" in probe[3]


def test_environment_is_sorted_and_command_overrides() -> None:
    spec = service(environment={"B": "2", "A": "1"}, command=["python", "-m", "web"])
    assert spec["environment"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert spec["command"] == ["python", "-m", "web"]


def test_logs_go_to_the_group_without_blocking_the_service() -> None:
    options = service()["logConfiguration"]["options"]
    assert options["awslogs-group"] == "/stack/web" and options["awslogs-region"] == "eu-west-1"
    assert options["awslogs-stream-prefix"] == "stack-web" and options["mode"] == "non-blocking"


def test_a_job_logs_blocking_and_has_no_port_or_health_check() -> None:
    spec = job_container_definition(
        name="migrate",
        image="img",
        user="app",
        command=["python", "-m", "migrate"],
        environment={},
        secrets={},
        log_group="/stack/migrate",
        region="eu-west-1",
        stream_prefix="stack-migrate",
    )
    assert "portMappings" not in spec and "healthCheck" not in spec
    assert spec["logConfiguration"]["options"]["mode"] == "blocking"
    assert spec["readonlyRootFilesystem"] is True
