"""Two server instances and one worker as real processes on loopback, sharing PostgreSQL and Redis.

Submit on A, watch on B (WebSocket), interrupt from B, kill the worker mid-run (the run ends
``worker_lost``, nothing else is lost), restart it and run again. A and B are web-only
(``execute: false``), so every run executes in the worker process. And: B never answers
``running`` for a run its socket has just reported ``complete``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from comfytavern_distributed.cluster import LocalCluster
from comfytavern_testing_contracts.services import postgres_dsn, postgres_schema, redis_prefix, redis_url
from comfytavern_testnodes import node_folder as node_folder_with_testnodes

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

FINAL = {"complete", "error", "interrupted"}
PARTS = [f"tok{i} " for i in range(60)]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with postgres_schema() as schema, redis_prefix() as prefix:
        root = tmp_path / "cluster"
        nodes = node_folder_with_testnodes(root)
        with LocalCluster(
            root,
            dsn=postgres_dsn(),
            schema=schema,
            redis_url=redis_url(),
            prefix=prefix,
            distributed={"lease_seconds": 2.0, "heartbeat_seconds": 0.4, "janitor_seconds": 0.4},
            node_paths=[nodes],
        ) as running:
            try:
                yield running
            except BaseException:
                print(running.logs())
                raise


def sleep_then_stream(seconds: float) -> dict[str, Any]:
    """A sleep (long enough to subscribe elsewhere) feeding a stream of ``PARTS``."""
    return {
        "nodes": [
            {"id": "sleep", "fullType": "t:Sleep", "inputs": {"seconds": seconds, "value": PARTS}},
            {"id": "stream", "fullType": "t:Stream", "inputs": {"delay": 0.005}},
        ],
        "edges": [
            {"id": "e1", "sourceNodeId": "sleep", "sourceHandle": "value", "targetNodeId": "stream", "targetHandle": "parts"}
        ],
        "metadata": {"workflowName": "multi-process"},
    }


def sleeper(seconds: float) -> dict[str, Any]:
    return {"nodes": [{"id": "sleep", "fullType": "t:Sleep", "inputs": {"seconds": seconds, "value": 1}}]}


def submit(base: str, payload: dict[str, Any]) -> str:
    response = httpx.post(f"{base}/api/prompt", json=payload, timeout=10)
    assert response.status_code == 200, response.text
    return str(response.json()["promptId"])


def status(base: str, prompt_id: str) -> dict[str, Any]:
    response = httpx.get(f"{base}/api/prompt/{prompt_id}", timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_status(base: str, prompt_id: str, wanted: set[str], timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        record = status(base, prompt_id)
        if record["status"] in wanted:
            return record
        if time.monotonic() > deadline:
            raise AssertionError(f"run {prompt_id} is {record['status']}, not {wanted}, after {timeout} s")
        time.sleep(0.05)


def ws_send(ws: ClientConnection, type_: str, payload: dict[str, Any]) -> None:
    ws.send(json.dumps({"type": type_, "payload": payload}))


def ws_until_final(ws: ClientConnection, prompt_id: str, timeout: float = 20) -> list[dict[str, Any]]:
    """Messages of ``prompt_id`` up to and including its final EXECUTION_STATUS_UPDATE."""
    deadline = time.monotonic() + timeout
    seen: list[dict[str, Any]] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no final status for {prompt_id} within {timeout} s; saw {[m['type'] for m in seen]}")
        message = json.loads(ws.recv(timeout=remaining))
        payload = message.get("payload") or {}
        if message["type"] == "error":
            raise AssertionError(f"WebSocket error: {payload}")
        if payload.get("promptId") != prompt_id:
            continue
        seen.append(message)
        if message["type"] == "EXECUTION_STATUS_UPDATE" and payload.get("status") in FINAL:
            return seen


def test_two_instances_one_worker_share_runs_events_interrupts_and_survive_a_dead_worker(cluster: LocalCluster) -> None:
    a = cluster.start_server("a")
    b = cluster.start_server("b")
    worker = cluster.start_worker("w", concurrency=2)

    with connect(b.ws_url, open_timeout=10) as ws_b:
        # 1. Submit on A, watch on B: every chunk streamed by the worker reaches B's socket.
        first = submit(a.url, sleep_then_stream(1.0))
        ws_send(ws_b, "SUBSCRIBE_PROMPT", {"promptId": first})
        messages = ws_until_final(ws_b, first)
        assert messages[-1]["payload"]["status"] == "complete"
        chunks = [m["payload"]["yieldedContent"] for m in messages if m["type"] == "NODE_YIELD"]
        text = "".join(c["content"] for c in chunks if c.get("type") == "text_chunk")
        assert text == "".join(PARTS)
        assert len(chunks) <= len(PARTS) + 1  # coalesced before crossing the bus (never more)
        assert {"NODE_EXECUTING", "NODE_COMPLETE"} <= {m["type"] for m in messages}
        record = status(b.url, first)
        assert record["status"] == "complete"
        assert record["outputs"]["stream"]["text"] == "".join(PARTS)
        assert status(a.url, first) == record

        # 2. Interrupt from B a run submitted on A and executing in the worker.
        second = submit(a.url, sleeper(60))
        wait_status(b.url, second, {"running"})
        ws_send(ws_b, "SUBSCRIBE_PROMPT", {"promptId": second})
        started = time.monotonic()
        ws_send(ws_b, "INTERRUPT_REQUEST", {"promptId": second})
        messages = ws_until_final(ws_b, second, timeout=10)
        assert messages[-1]["payload"]["status"] == "interrupted"
        assert time.monotonic() - started < 5
        assert wait_status(a.url, second, FINAL)["status"] == "interrupted"

        # 3. Kill the worker mid-run: the run ends worker_lost; a run queued meanwhile waits.
        third = submit(a.url, sleeper(60))
        wait_status(a.url, third, {"running"})
        ws_send(ws_b, "SUBSCRIBE_PROMPT", {"promptId": third})
        worker.kill()
        messages = ws_until_final(ws_b, third, timeout=15)
        final = messages[-1]["payload"]
        assert final["status"] == "error" and final["errorInfo"]["code"] == "worker_lost"
        lost = status(b.url, third)
        assert lost["status"] == "error" and lost["errorInfo"]["code"] == "worker_lost"
        assert lost["nodeStatus"]["sleep"]["status"] == "interrupted"
        fourth = submit(b.url, sleeper(0.1))
        time.sleep(1.0)
        assert status(a.url, fourth)["status"] == "queued"  # nobody executes it, nobody loses it
        pending = httpx.get(f"{a.url}/api/executions", timeout=10).json()
        assert fourth in [r["promptId"] for r in pending["pending"]]

    # Nothing else was lost: the earlier runs are intact on both instances.
    assert status(b.url, first)["outputs"]["stream"]["text"] == "".join(PARTS)
    assert status(a.url, second)["status"] == "interrupted"

    # 4. Restart the worker: the queued run executes, and new runs run again.
    cluster.start_worker("w2", concurrency=2)
    assert wait_status(a.url, fourth, FINAL)["status"] == "complete"
    fifth = submit(b.url, sleep_then_stream(0.5))
    # Server-sent events of a run submitted on B, followed on A while the worker executes it.
    sse: list[str] = []
    with httpx.stream("GET", f"{a.url}/api/prompt/{fifth}/events", timeout=30) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("event: "):
                sse.append(line[len("event: "):])
    assert sse[-1] == "EXECUTION_STATUS_UPDATE" and "NODE_YIELD" in sse
    done = httpx.get(f"{a.url}/api/prompt/{fifth}", params={"wait": 20}, timeout=30).json()
    assert done["status"] == "complete" and done["outputs"]["stream"]["text"] == "".join(PARTS)
    assert status(a.url, third)["status"] == "error"  # the lost run was not re-run

    history = httpx.get(f"{b.url}/api/history", timeout=10)
    assert history.status_code == 200, history.text
    assert {first, second, third, fourth, fifth} <= {item["promptId"] for item in history.json()["items"]}

    # Graceful stops: every process exits by itself on SIGTERM (uvicorn re-raises the signal once
    # it has shut down, hence -15 for the servers; -9 would mean it had to be killed).
    assert cluster.procs["w2"].stop() == 0
    assert a.stop() in (0, -15) and b.stop() in (0, -15)


# A client on B's socket that sees ``complete`` and asks B for the run at once gets the final
# record, for every run (the final event leaves the worker only after the final record is stored
# and the shared state is final).
FINAL_STATUS_RUNS = 12


def quick(n: int) -> dict[str, Any]:
    parts = [f"p{n}-{i} " for i in range(8)]
    return {
        "nodes": [
            {"id": "c", "fullType": "t:Const", "inputs": {"value": parts}},
            {"id": "stream", "fullType": "t:Stream", "inputs": {"delay": 0.001}},
        ],
        "edges": [{"id": "e", "sourceNodeId": "c", "sourceHandle": "value", "targetNodeId": "stream", "targetHandle": "parts"}],
    }


def test_b_answers_the_final_record_the_moment_its_socket_says_complete(cluster: LocalCluster) -> None:
    a = cluster.start_server("a")
    b = cluster.start_server("b")
    cluster.start_worker("w", concurrency=4)
    answered: list[tuple[str, str]] = []
    with connect(b.ws_url, open_timeout=10) as ws, httpx.Client(timeout=10) as http:
        for n in range(FINAL_STATUS_RUNS):
            if n % 2:
                # Submitted on A, watched on B.
                response = http.post(f"{a.url}/api/prompt", json=quick(n))
                assert response.status_code == 200, response.text
                prompt_id = response.json()["promptId"]
                ws.send(json.dumps({"type": "SUBSCRIBE_PROMPT", "payload": {"promptId": prompt_id}}))
            else:
                # Submitted and watched on B's socket from the start.
                ws.send(json.dumps({"type": "PROMPT_REQUEST", "payload": quick(n)}))
                accepted = json.loads(ws.recv(timeout=10))
                while accepted["type"] == "SYSTEM_QUEUE_UPDATE":  # broadcast after the previous run
                    accepted = json.loads(ws.recv(timeout=10))
                assert accepted["type"] == "PROMPT_ACCEPTED_RESPONSE", accepted
                prompt_id = accepted["payload"]["promptId"]
            deadline = time.monotonic() + 20
            while True:
                message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
                payload = message.get("payload") or {}
                assert message["type"] != "error", message
                if (
                    message["type"] == "EXECUTION_STATUS_UPDATE"
                    and payload.get("promptId") == prompt_id
                    and payload.get("status") in FINAL
                ):
                    break
            # At once, as the editor does when its socket says the run ended.
            record = http.get(f"{b.url}/api/prompt/{prompt_id}").json()
            answered.append((payload["status"], record["status"]))
            if record["status"] == "complete":
                assert record["outputs"]["stream"]["text"] == "".join(f"p{n}-{i} " for i in range(8))
    assert answered == [("complete", "complete")] * FINAL_STATUS_RUNS
