"""POST /api/server/restart: a real `comfytavern serve` process restarts in place (twice), the
route answers 202 first, is admin-only outside local mode, and drains the scheduler per config."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import httpx
import pytest
from openapi_spec_validator import validate

from comfytavern.services import RESTART_REQUESTED, SCHEDULER
from comfytavern_server_routes.restart import RESTART, RestartController, RestartUnavailable, restart_command
from comfytavern_testing import client_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, *, until: Any = lambda body: True, timeout: float = 30.0, proc: Any = None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}")
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code == 200:
                body = response.json()
                if until(body):
                    return body
                last = body
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"{url} did not become ready: {last!r}")


SLOW_NODE = """
import anyio
from comfytavern import Input, Output, node

NAMESPACE = "restart-test"


@node(type="Sleep", category="test", display_name="Sleep", namespace=NAMESPACE,
      inputs={"seconds": Input(data_flow_type="FLOAT", required=True)},
      outputs={"done": Output(data_flow_type="BOOLEAN")})
async def sleep(inputs, ctx):
    await anyio.sleep(float(inputs["seconds"]))
    return {"done": True}


NODES = [sleep]
"""


class ServerProcess:
    """``comfytavern serve`` as a child process on a free loopback port, with its own data folder."""

    def __init__(self, tmp_path: Path, storage: Any, **sections: Any) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.tmp_path = tmp_path
        data = tmp_path / "data"
        (data / "nodes").mkdir(parents=True)
        (data / "nodes" / "slow.py").write_text(SLOW_NODE)
        config = {
            "server": {"host": "127.0.0.1", "port": self.port},
            "data": {"root": str(data)},
            "nodes": {"custom_paths": ["nodes"]},
            "auth": {"mode": "local"},
            "storage": {"projects": storage.projects, "accounts": storage.accounts, "runs": storage.runs},
            "logging": {"format": "json"},
            **sections,
        }
        self.config = tmp_path / "config.json"
        self.config.write_text(json.dumps(config))
        self.log_path = tmp_path / "server.log"

    def __enter__(self) -> ServerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CT_")}
        env["PYTHONUNBUFFERED"] = "1"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "comfytavern", "serve", "--config", str(self.config)],
            cwd=self.tmp_path,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def health(self, until: Any = lambda body: True) -> dict[str, Any]:
        return wait_for(f"{self.base}/healthz", until=until, proc=self.proc)

    def restart(self) -> str:
        """Restart through the API; returns the new ``startedAt`` once the new process serves."""
        before = self.health()["startedAt"]
        response = httpx.post(f"{self.base}/api/server/restart", timeout=10.0)
        assert response.status_code == 202, response.text
        assert response.json() == {"success": True, "message": "Server is restarting..."}
        after = self.health(until=lambda body: body["startedAt"] != before)["startedAt"]
        # os.execv keeps the PID: the same process, a new interpreter.
        assert self.proc.poll() is None
        assert wait_for(f"{self.base}/readyz")["status"] == "ready"
        return str(after)

    def records(self) -> list[dict[str, Any]]:
        text = self.log_path.read_text(errors="replace")
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_a_real_server_process_restarts_in_place(make_full_kernel: Any, tmp_path: Path) -> None:
    # Use the storage the current checkout can start with (as the assembled app does).
    storage = make_full_kernel().config.storage
    with ServerProcess(tmp_path, storage) as server:
        started = [server.health()["startedAt"]]
        # what a new user opens first: the docs page and the document behind it
        assert httpx.get(f"{server.base}/docs", timeout=10.0).status_code == 200
        spec = httpx.get(f"{server.base}/openapi.json", timeout=10.0).json()
        validate(spec)
        assert {"/healthz", "/docs", "/metrics", "/api/server/restart"} <= set(spec["paths"])
        started.append(server.restart())
        started.append(server.restart())
        assert len(set(started)) == 3
    records = server.records()
    assert sum(1 for r in records if r["message"].startswith("server restart requested by")) == 2
    restart_access = [r for r in records if r.get("path") == "/api/server/restart"]
    assert [r["status"] for r in restart_access] == [202, 202]
    assert all(r.get("request_id") for r in restart_access)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal for the exit status
    assert server.proc.returncode in (0, -signal.SIGTERM), records[-5:]
    assert records[-1]["message"].startswith("Finished server process")


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "seconds", "final"), [("interrupt", 60.0, "interrupted"), ("finish", 1.5, "complete")])
def test_running_runs_are_interrupted_or_finished_and_recorded(
    make_full_kernel: Any, tmp_path: Path, mode: str, seconds: float, final: str
) -> None:
    storage = make_full_kernel().config.storage
    if storage.runs is None:
        pytest.skip("no run history backend can start in this checkout")
    execution = {"on_shutdown": mode, "shutdown_timeout_seconds": 10}
    with ServerProcess(tmp_path, storage, execution=execution) as server:
        server.health()
        payload = {"nodes": [{"id": "s", "fullType": "restart-test:Sleep", "inputs": {"seconds": seconds}}]}
        submitted = httpx.post(f"{server.base}/api/prompt?wait=0.3", json=payload, timeout=10.0)
        if submitted.status_code == 404:
            pytest.skip("the executions plugin is not installed")
        assert submitted.status_code == 200, submitted.text
        prompt_id = submitted.json()["promptId"]
        assert submitted.json()["status"] == "running"
        metrics = httpx.get(f"{server.base}/metrics", timeout=10.0).text
        assert "ct_runs_running 1" in metrics
        server.restart()
        record = httpx.get(f"{server.base}/api/prompt/{prompt_id}", timeout=10.0)
        assert record.status_code == 200, record.text
        assert record.json()["status"] == final


def test_restart_is_unavailable_outside_the_cli(kernel: Any) -> None:
    with client_for(kernel) as client:
        response = client.post("/api/server/restart")
    assert response.status_code == 409
    assert "comfytavern serve" in response.json()["error"]


@pytest.mark.parametrize(
    ("token", "status"),
    [(None, 401), ("user-session", 403), ("user-key-server", 403), ("admin-key-projects", 403), ("admin-session", 202)],
)
def test_restart_is_admin_only_outside_local_mode(token_kernel: Any, auth_header: Any, token: str | None, status: int) -> None:
    kernel = token_kernel()
    server = SimpleNamespace(should_exit=False)
    kernel.services.provide(RESTART, RestartController(kernel, server, command=["/bin/true"]))
    with client_for(kernel) as client:
        response = client.post("/api/server/restart", headers=auth_header(token) if token else {})
        assert response.status_code == status, response.text
        if status == 202:
            # the background task ran after the response: uvicorn is told to stop, the CLI will exec
            assert server.should_exit is True
            assert kernel.services.require(RESTART_REQUESTED) == kernel.services.require(RESTART).exec_
            second = client.post("/api/server/restart", headers=auth_header(token))
            assert second.status_code == 409 and second.json() == {"error": "a restart is already in progress"}
        else:
            assert server.should_exit is False
            assert RESTART_REQUESTED not in kernel.services


class RecordingScheduler:
    """Implements the duck-typed scheduler side of a restart (see comfytavern_server_routes.restart)."""

    def __init__(self, with_shutdown: bool) -> None:
        self.calls: list[tuple[str, Any]] = []
        if with_shutdown:
            self.shutdown = self._shutdown

    async def _shutdown(self, *, mode: str, timeout: float, reason: str) -> list[str]:
        self.calls.append(("shutdown", (mode, timeout, reason)))
        await anyio.sleep(0)
        return ["p1"]

    def stop_accepting(self) -> None:
        self.calls.append(("stop_accepting", None))


@pytest.mark.parametrize("mode", ["interrupt", "finish"])
def test_restart_drains_the_scheduler_per_config(token_kernel: Any, mode: str) -> None:
    kernel = token_kernel(execution={"on_shutdown": mode, "shutdown_timeout_seconds": 3})
    server = SimpleNamespace(should_exit=False)
    controller = RestartController(kernel, server, command=["/bin/true"])
    scheduler = RecordingScheduler(with_shutdown=True)
    kernel.services.provide(SCHEDULER, scheduler)
    controller.claim("admin")
    anyio.run(controller.run)
    assert scheduler.calls == [("shutdown", (mode, 3.0, "server restart"))]
    assert server.should_exit is True

    fallback = RecordingScheduler(with_shutdown=False)
    kernel.services.provide(SCHEDULER, fallback)
    other = RestartController(kernel, SimpleNamespace(should_exit=False), command=["/bin/true"])
    other.claim("admin")
    anyio.run(other.run)
    assert fallback.calls == [("stop_accepting", None)]
    with pytest.raises(RestartUnavailable):
        other.claim("admin")


def test_restart_command_repeats_this_process_command_line() -> None:
    command = restart_command()
    assert command[0] == sys.executable
    assert command[1:] == list(sys.orig_argv[1:])


@pytest.mark.slow
def test_requests_during_a_restart_get_an_answer_never_a_refused_connection(make_full_kernel: Any, tmp_path: Path) -> None:
    storage = make_full_kernel().config.storage
    with ServerProcess(tmp_path, storage) as server:
        before = server.health()["startedAt"]
        first = httpx.post(f"{server.base}/api/server/restart", timeout=10.0)
        assert first.status_code == 202, first.text
        restarts: list[int] = []
        probes: list[tuple[int, str | None]] = []
        refused: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                # Fresh connections, as a client polling the restart opens them.
                again = httpx.post(f"{server.base}/api/server/restart", timeout=5.0)
                restarts.append(again.status_code)
                if again.status_code == 202:
                    break  # only the new process can accept it: the first restart is over
                assert again.status_code == 409, again.text
                assert again.json() == {"error": "a restart is already in progress"}
                health = httpx.get(f"{server.base}/healthz", timeout=5.0)
                if health.status_code == 200 and health.json()["startedAt"] != before:
                    break
                probes.append((health.status_code, health.headers.get("retry-after")))
            except httpx.TransportError as exc:
                refused.append(repr(exc))
        else:
            raise AssertionError("the new process never served")
        assert refused == [], refused
        assert restarts[:-1] == [409] * (len(restarts) - 1) and restarts[-1] in (202, 409)
        # The old process (200) or the stand-in between the two processes (503, retry in a second).
        assert set(probes) <= {(200, None), (503, "1")}, probes
        if restarts[-1] == 409:
            assert wait_for(f"{server.base}/readyz")["status"] == "ready"
    records = server.records()
    assert any(r["message"].startswith("serving on the listening socket(s) kept across the restart") for r in records)
    assert any(r["message"].startswith("restart: answered") for r in records), "the stand-in answered nothing"
