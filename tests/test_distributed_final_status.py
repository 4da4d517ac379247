"""Real processes: two web-only instances and one worker sharing PostgreSQL and Redis. A client on
B's socket that sees ``complete`` and asks B for the run at once gets the final record — for every
run, not most of them (the final event leaves the worker only after the final record is stored
and the shared state is final)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from comfytavern.testing_contracts.services import postgres_dsn, postgres_schema, redis_prefix, redis_url
from comfytavern_distributed.cluster import LocalCluster, node_folder_with_testnodes

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

FINAL = {"complete", "error", "interrupted"}
RUNS = 12


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with postgres_schema() as schema, redis_prefix() as prefix:
        root = tmp_path / "cluster"
        with LocalCluster(
            root,
            dsn=postgres_dsn(),
            schema=schema,
            redis_url=redis_url(),
            prefix=prefix,
            node_paths=[node_folder_with_testnodes(root)],
        ) as running:
            try:
                yield running
            except BaseException:
                print(running.logs())
                raise


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
        for n in range(RUNS):
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
    assert answered == [("complete", "complete")] * RUNS
