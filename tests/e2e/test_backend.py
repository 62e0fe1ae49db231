"""End to end: the whole local backend (`make run`) started for real, driven like the frontend does."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from files_service.routes import READINESS_PATH as FILES_HEALTH
from motion_common.auth import TokenVerifier

from devstack import smoke
from devstack.backend import REPO, SERVICE_PORTS, Backend, BackendError, State, free_port_base
from devstack.servers import LOCALHOST, port_is_free
from tests.browser_cors import cors_check, preflight_grants, preflight_request
from tests.infra.harness import run_stack


def test_smoke_flows_pass_against_the_running_backend(backend: Backend) -> None:
    assert backend.state is not None
    lines: list[str] = []
    assert smoke.run(backend.state, lines.append), "\n".join(lines)
    steps = smoke.Smoke(backend.state, backend.state.issuer()).steps()
    assert len(steps) >= 7  # files (3), mail (2: delivered, bounced), chat (2)
    assert [line.split()[0] for line in lines[:-1]] == ["ok"] * len(steps)
    assert lines[-1] == "smoke: all steps passed"


def test_smoke_and_mint_commands(backend: Backend) -> None:
    assert backend.state_file is not None
    state = ["--state", str(backend.state_file)]
    done = subprocess.run(
        [sys.executable, "-m", "devstack.smoke", *state],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert backend.state is not None
    steps = len(smoke.Smoke(backend.state, backend.state.issuer()).steps())
    assert done.stdout.count("\nok    ") + done.stdout.startswith("ok    ") == steps
    minted = subprocess.run(
        [sys.executable, "-m", "devstack.mint", "carol", "p1", "p2", *state],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert minted.returncode == 0, minted.stderr
    loaded = State.load(backend.state_file)
    verifier = TokenVerifier(loaded.urls["jwks"], loaded.issuer().issuer, loaded.issuer().audience)
    identity = verifier.verify(minted.stdout.strip())
    assert identity.user_id == "carol" and identity.projects == frozenset({"p1", "p2"})
    missing = subprocess.run(
        [sys.executable, "-m", "devstack.smoke", "--state", "/nonexistent/state.json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "start one with `make run`" in missing.stderr


def test_the_local_alb_routes_by_the_listener_rules(backend: Backend) -> None:
    assert backend.state is not None
    files = backend.state.urls["files"]
    token = backend.state.issuer().mint("router-user", ["router-project"])
    headers = {"Authorization": f"Bearer {token}"}
    # Upload paths reach the Upload service, listing the Download service, the rest the ALB's 404.
    ticket = httpx.post(
        f"{files}/uploads",
        headers=headers,
        json={
            "project_id": "router-project",
            "file_name": "a.txt",
            "content_type": "text/plain",
            "size_bytes": 3,
        },
    )
    assert ticket.status_code == 201, ticket.text
    listed = httpx.get(f"{files}/projects/router-project/files", headers=headers)
    # Pending files are not listed yet; what matters is that Download answered.
    assert listed.status_code == 200 and listed.json()["files"] == []
    missing = httpx.get(f"{files.removesuffix('/files/v1')}/elsewhere")
    assert missing.status_code == 404 and missing.json() == {"error": "not found"}
    # Health checks reach each service directly; through the listener they are the ALB's 404.
    root = files.removesuffix("/files/v1")
    for path in (FILES_HEALTH, f"{FILES_HEALTH}?verbose=1"):
        refused = httpx.get(f"{root}{path}")
        assert refused.status_code == 404 and refused.json() == {"error": "not found"}, path
    assert (
        httpx.get(f"{backend.state.urls['files-upload'].removesuffix('/files/v1')}{FILES_HEALTH}").status_code
        == 200
    )
    # Each service alone serves only its own role's routes: the router is what joins them.
    direct = httpx.get(f"{backend.state.urls['files-upload']}/projects/router-project/files", headers=headers)
    assert direct.status_code == 404


def test_a_browser_may_call_the_mail_api_with_exactly_the_headers_it_reads(backend: Backend) -> None:
    """For real, as a browser on a frontend origin does it: preflight, then the request. The local
    API Gateway answers with the CORS configuration the program declares for the dev stack (read
    here from the program under mocks, not from the backend)."""
    assert backend.state is not None
    declared = run_stack("dev").one("aws:apigatewayv2/api:Api").inputs["corsConfiguration"]
    url = f"{backend.state.urls['mail-api']}/mail/messages"
    token = backend.state.issuer().mint("cors-user", ["p"])
    clerk = backend.state.clerk()
    clerk.create_user("cors-user", "cors-user@example.org", ["p"])
    clerk.create_user("cors-peer", "cors-peer@example.org", ["p"])
    send = {
        "authorization": f"Bearer {token}",
        "content-type": "application/json",
        "idempotency-key": "e2e-1",
    }
    assert preflight_request("o", "POST", send)["Access-Control-Request-Headers"] == (
        "authorization,content-type,idempotency-key"
    )
    for origin in declared["allowOrigins"]:
        answer = httpx.options(url, headers=preflight_request(origin, "POST", send))
        assert preflight_grants(answer, origin, "POST", send), (origin, answer.status_code, answer.headers)
    origin = declared["allowOrigins"][0]
    for name in declared["allowHeaders"]:
        one = {name: "application/json" if name == "content-type" else "v"}
        assert preflight_grants(
            httpx.options(url, headers=preflight_request(origin, "POST", one)), origin, "POST", one
        )
    # A header the API does not read is refused, as is an origin the stack does not serve.
    unread = {**send, "x-motion-unread": "1"}
    assert not preflight_grants(
        httpx.options(url, headers=preflight_request(origin, "POST", unread)), origin, "POST", unread
    )
    other = "https://elsewhere.example"
    assert not preflight_grants(
        httpx.options(url, headers=preflight_request(other, "POST", send)), other, "POST", send
    )

    # The request the browser then sends: accepted, readable by the page, and the key honoured.
    body = {"recipients": ["cors-peer"], "subject": "CORS", "body": "from a browser"}
    first, retry = (httpx.post(url, headers={**send, "Origin": origin}, json=body) for _ in range(2))
    assert first.status_code == retry.status_code == 202, first.text
    assert cors_check(first, origin) and first.json()["id"] == retry.json()["id"]


def test_state_file_lets_other_commands_find_the_backend(backend: Backend) -> None:
    assert backend.state_file is not None
    loaded = State.load(backend.state_file)
    assert loaded == backend.state
    token = loaded.issuer().mint("someone", ["p"])
    assert token.count(".") == 2


def test_a_failed_step_is_reported_and_fails_the_run(backend: Backend) -> None:
    assert backend.state is not None
    broken = State(
        **{**backend.state.__dict__, "urls": {**backend.state.urls, "mail-api": "http://127.0.0.1:9"}}
    )
    lines: list[str] = []
    assert smoke.run(broken, lines.append) is False
    assert any(line.startswith("FAIL  send a mail") for line in lines)
    assert lines[-1] == "smoke: FAILED"


def test_a_taken_port_is_reported_clearly_and_nothing_is_left_running(tmp_path: Path) -> None:
    base = free_port_base()
    with socket.socket() as blocker:
        blocker.bind((LOCALHOST, base + 3))
        blocker.listen()
        backend = Backend(port_base=base, state_file=tmp_path / "state.json")
        with pytest.raises(
            BackendError, match=rf"port\(s\) already in use on 127.0.0.1: {base + 3} \(download\)"
        ):
            backend.start()
    assert backend.processes == {} and not (tmp_path / "state.json").exists()


def test_make_run_prints_ready_restarts_a_crashed_service_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    base = free_port_base()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.run", "--port-base", str(base)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "ready" in line:
            break
    output = "".join(lines)
    assert any("ready" in line for line in lines), output
    # The ready line, then the URLs and a demo token.
    rest: list[str] = []
    while len(rest) < 30 and not (rest and rest[-1].strip().startswith("eyJ")):
        rest.append(proc.stdout.readline())
    assert any("files-upload" in line and f":{base + 2}/" in line for line in rest), rest
    assert any(line.strip().startswith("eyJ") for line in rest), rest
    logs = next(line.split()[-1] for line in rest if line.strip().startswith("logs"))
    # A crashed service is restarted, and the console says so; the run goes on.
    chat_b = _child_with_env(proc.pid, f"PORT={base + SERVICE_PORTS['chat-b']}")
    os.kill(chat_b, signal.SIGKILL)
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "chat-b is back\n" not in seen:
        seen.append(proc.stdout.readline())
    assert any(
        line.startswith("chat-b exited with code -9; restarting in 0.5 s (restart 1)") for line in seen
    )
    assert "chat-b is back\n" in seen, "".join(seen)
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    tail = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, tail
    assert "stopped; temporary data removed" in tail
    assert not Path(logs).exists(), "the run's temporary data must be removed"
    assert all(port_is_free(base + offset) for offset in SERVICE_PORTS.values())
    # A second run starts clean on the same ports.
    again = Backend(port_base=base, state_file=tmp_path / "state.json")
    with again:
        assert again.state is not None


def _child_with_env(parent: int, setting: str) -> int:
    """The pid of `parent`'s child process whose environment holds `setting` (e.g. PORT=8706)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and setting.encode() in environ:
            return int(entry.name)
    raise AssertionError(f"no child of {parent} with {setting}")
