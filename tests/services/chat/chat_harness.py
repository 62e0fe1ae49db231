"""Running `python -m chat_service` for tests: the process wrapper and small helpers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chat_service import LIVENESS_PATH, READINESS_PATH, WS_PATH

from components.app_code import pythonpath
from devstack.servers import LOCALHOST, RedisServer, ServerError, free_port, wait_until

REPO = Path(__file__).resolve().parents[3]
PYTHONPATH = pythonpath("chat")


@dataclass
class ChatInstance:
    """One `python -m chat_service` process."""

    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://{LOCALHOST}:{self.port}{WS_PATH}"

    @property
    def health_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}{READINESS_PATH}"

    @property
    def liveness_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}{LIVENESS_PATH}"

    def start(self) -> ChatInstance:
        fd, log_name = tempfile.mkstemp(prefix="motion-chat-", suffix=".log")
        os.close(fd)
        self.log_path = Path(log_name)
        env = {**self.env, "PORT": str(self.port), "HOST": LOCALHOST, "PYTHONPATH": PYTHONPATH}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "chat_service"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_until(self._ready, 20, f"chat instance on port {self.port}")
        except ServerError as err:
            self.stop()
            raise ServerError(f"{err}\n{self.log()}") from None
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise ServerError(f"chat instance exited with {self.proc.returncode}:\n{self.log()}")
        # Alive is enough to start: readiness depends on the store, which some tests take away.
        try:
            with urllib.request.urlopen(self.liveness_url, timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def health(self) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(self.health_url, timeout=2) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-4000:]

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log_path is not None and self.log_path.exists():
            self.log_path.unlink()


def redis_env(redis: RedisServer) -> dict[str, str]:
    env = {"REDIS_HOST": LOCALHOST, "REDIS_PORT": str(redis.port)}
    if redis.password:
        env["REDIS_AUTH_TOKEN"] = redis.password
    return env


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
