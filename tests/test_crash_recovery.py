"""``kill -9`` a real ``comfytavern serve`` in the middle of saves and runs, start it again on the
same data, and find everything it acknowledged: every ``promptId`` it answered (HTTP
``POST /api/prompt`` and the WebSocket's ``PROMPT_ACCEPTED_RESPONSE``) is there, ``complete`` or
``interrupted``, and every workflow it answered 2xx for is there with the content of its last
acknowledged save (or of the save in flight at the kill).

Production configuration: the default storage (workflows as files, the run history in SQLite),
the default auth mode, limits and concurrency; and the same on PostgreSQL. The engine's test
nodes come from the default node folder ``custom_nodes``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from comfytavern_testing_contracts.services import postgres_dsn, postgres_schema

pytestmark = [pytest.mark.fault, pytest.mark.slow]

#: Load before the kill: until this many runs and saves were acknowledged (or LOAD_SECONDS).
MIN_RUNS, MIN_SAVES, LOAD_SECONDS = 60, 30, 6.0
RUN_CLIENTS, WS_CLIENTS, SAVE_CLIENTS = 4, 2, 3
FINAL = {"complete", "interrupted"}

NODE_FOLDER_MODULE = (
    '"""The engine\'s test nodes (namespace ``t``)."""\n'
    "from comfytavern_testnodes import NODES\n\n\n"
    "def register_nodes():\n    return NODES\n"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``comfytavern serve`` on a loopback port with its own data folder (kept across starts)."""

    def __init__(self, root: Path, storage: dict[str, Any] | None) -> None:
        self.root = root
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        data = root / "data"
        (data / "custom_nodes").mkdir(parents=True)
        (data / "custom_nodes" / "t.py").write_text(NODE_FOLDER_MODULE, encoding="utf-8")
        config: dict[str, Any] = {"server": {"host": "127.0.0.1", "port": self.port}, "data": {"root": str(data)}}
        if storage is not None:
            config["storage"] = storage
        self.config = root / "config.json"
        self.config.write_text(json.dumps(config), encoding="utf-8")
        self.log = root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CT_")}
        env["PYTHONUNBUFFERED"] = "1"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "comfytavern", "serve", "--config", str(self.config)],
                cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the server exited with {self.proc.returncode}:\n{self.tail()}"
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"the server did not become ready:\n{self.tail()}")

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        assert self.proc.returncode == -signal.SIGKILL

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text("utf-8", errors="replace").splitlines()[-lines:])


@dataclass
class Ledger:
    """What the server acknowledged, written by the load threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    runs: dict[str, str] = field(default_factory=dict)  # promptId -> how it was submitted
    #: (projectId, workflowId) -> (last acknowledged revision, revision in flight or None)
    saves: dict[tuple[str, str], tuple[int, int | None]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)

    def counts(self) -> tuple[int, int]:
        with self.lock:
            return len(self.runs), sum(rev + 1 for rev, _ in self.saves.values())


def run_payload(rng: random.Random) -> dict[str, Any]:
    """A sleep (so some runs are running or queued at the kill) or a short chain of core nodes."""
    if rng.random() < 0.3:
        return {"nodes": [{"id": "s", "fullType": "t:Sleep", "inputs": {"seconds": rng.uniform(0.05, 0.5), "value": 1}}]}
    nodes = [{"id": "n0", "fullType": "core:RandomNumber", "inputs": {"mode": "固定", "value": 1}}]
    edges = []
    for i in range(1, 30):
        nodes.append({"id": f"n{i}", "fullType": "core:RandomNumber", "inputs": {"mode": "固定"}})
        edges.append({"id": f"e{i}", "sourceNodeId": f"n{i - 1}", "sourceHandle": "number", "targetNodeId": f"n{i}", "targetHandle": "value"})
    return {"nodes": nodes, "edges": edges}


def workflow(name: str, revision: int) -> dict[str, Any]:
    return {
        "name": name,
        "description": f"revision {revision}",
        "nodes": [{"id": f"n{k}", "type": "core:RandomNumber", "position": {"x": k, "y": revision}} for k in range(20)],
        "edges": [],
        "viewport": {"x": 0, "y": 0, "zoom": 1},
        "revision": revision,
        "payload": f"r{revision}-" * 2000,  # ~10 kB: a write that takes a moment
    }


def http_runs(server: Server, ledger: Ledger, seed: int) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=server.base, timeout=10) as client:
        while not ledger.stop.is_set():
            try:
                response = client.post("/api/prompt", json=run_payload(rng))
            except httpx.HTTPError:
                return  # the server is gone
            if response.status_code != 200:
                ledger.errors.append(f"POST /api/prompt {response.status_code}: {response.text}")
                return
            with ledger.lock:
                ledger.runs[response.json()["promptId"]] = "http"


def ws_runs(server: Server, ledger: Ledger, seed: int) -> None:
    rng = random.Random(seed)
    try:
        with connect(server.ws_url, open_timeout=10, max_size=None) as ws:
            while not ledger.stop.is_set():
                ws.send(json.dumps({"type": "PROMPT_REQUEST", "payload": run_payload(rng)}))
                while True:
                    message = json.loads(ws.recv(timeout=10))
                    if message["type"] == "PROMPT_ACCEPTED_RESPONSE":
                        with ledger.lock:
                            ledger.runs[message["payload"]["promptId"]] = "websocket"
                        break
                    if message["type"] == "error":
                        ledger.errors.append(f"WebSocket error: {message}")
                        return
    except Exception:  # noqa: BLE001 - the server was killed: the socket ends somehow
        return


def saves(server: Server, ledger: Ledger, n: int) -> None:
    project = f"Crash {n}"
    with httpx.Client(base_url=server.base, timeout=10) as client:
        try:
            created = client.post("/api/projects", json={"name": project})
            assert created.status_code == 201, created.text
            project_id = created.json()["id"]
            k = 0
            while not ledger.stop.is_set():
                # A new workflow, then a few saves of it.
                name = f"wf {n}-{k}"
                k += 1
                response = client.post(f"/api/projects/{project_id}/workflows", json=workflow(name, 0))
                if response.status_code != 201:
                    ledger.errors.append(f"create {response.status_code}: {response.text}")
                    return
                workflow_id = response.json()["id"]
                key = (project_id, workflow_id)
                with ledger.lock:
                    ledger.saves[key] = (0, None)
                for revision in range(1, 6):
                    with ledger.lock:
                        ledger.saves[key] = (revision - 1, revision)
                    body = workflow(name, revision)
                    response = client.put(f"/api/projects/{project_id}/workflows/{workflow_id}", json=body)
                    if response.status_code != 200:
                        ledger.errors.append(f"save {response.status_code}: {response.text}")
                        return
                    with ledger.lock:
                        ledger.saves[key] = (revision, None)
        except httpx.HTTPError:
            return


def check_after_restart(server: Server, ledger: Ledger) -> dict[str, int]:
    statuses: dict[str, int] = {}
    lost: list[str] = []
    with httpx.Client(base_url=server.base, timeout=10) as client:
        for prompt_id, source in sorted(ledger.runs.items()):
            response = client.get(f"/api/prompt/{prompt_id}")
            if response.status_code != 200:
                lost.append(f"{source} run {prompt_id}: {response.status_code} {response.text}")
                continue
            status = response.json()["status"]
            statuses[status] = statuses.get(status, 0) + 1
            if status not in FINAL:
                lost.append(f"{source} run {prompt_id} came back {status}")
        for (project_id, workflow_id), (acked, in_flight) in sorted(ledger.saves.items()):
            response = client.get(f"/api/projects/{project_id}/workflows/{workflow_id}")
            if response.status_code != 200:
                lost.append(f"workflow {workflow_id} (revision {acked}): {response.status_code} {response.text}")
                continue
            doc = response.json()
            allowed = {acked} if in_flight is None else {acked, in_flight}
            if doc.get("revision") not in allowed:
                lost.append(f"workflow {workflow_id}: revision {doc.get('revision')}, acknowledged {acked}")
            elif doc["payload"] != f"r{doc['revision']}-" * 2000 or doc["description"] != f"revision {doc['revision']}":
                lost.append(f"workflow {workflow_id}: content of revision {doc['revision']} is not intact")
    assert lost == [], "\n".join(lost[:20])
    return statuses


@pytest.fixture(params=["default", "postgres"])
def storage(request: pytest.FixtureRequest) -> Iterator[dict[str, Any] | None]:
    if request.param == "default":
        yield None
        return
    with postgres_schema() as schema:
        yield {
            "projects": "postgres",
            "accounts": "postgres",
            "runs": "postgres",
            "settings": {"postgres": {"dsn": postgres_dsn(), "schema": schema}},
        }


def test_everything_acknowledged_survives_kill_9(tmp_path: Path, storage: dict[str, Any] | None) -> None:
    server = Server(tmp_path, storage)
    try:
        server.start()
        ledger = Ledger()
        threads = [threading.Thread(target=http_runs, args=(server, ledger, n)) for n in range(RUN_CLIENTS)]
        threads += [threading.Thread(target=ws_runs, args=(server, ledger, 100 + n)) for n in range(WS_CLIENTS)]
        threads += [threading.Thread(target=saves, args=(server, ledger, n)) for n in range(SAVE_CLIENTS)]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        while time.monotonic() - started < LOAD_SECONDS:
            runs, saved = ledger.counts()
            if runs >= MIN_RUNS and saved >= MIN_SAVES:
                break
            time.sleep(0.05)
        # Mid-load: every client has a request in flight now.
        server.kill()
        ledger.stop.set()
        for thread in threads:
            thread.join(15)
        assert ledger.errors == [], ledger.errors[:5]
        runs, saved = ledger.counts()
        assert runs >= 20 and saved >= 10, f"too little load before the kill: {runs} runs, {saved} saves"
        assert {"http", "websocket"} <= set(ledger.runs.values())

        server.start()
        statuses = check_after_restart(server, ledger)
        # A crash leaves runs queued or running: they are recorded as interrupted at the start.
        assert statuses.get("interrupted", 0) > 0, statuses
        # And the restarted server works.
        done = httpx.post(f"{server.base}/api/prompt?wait=10", json=run_payload(random.Random(1)), timeout=15)
        assert done.status_code == 200 and done.json()["status"] == "complete", done.text
        print(f"acknowledged before kill -9: {runs} runs ({statuses}), {len(ledger.saves)} workflows / {saved} saves")
    finally:
        server.stop()
