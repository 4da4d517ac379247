"""HTTP: submit, status during and after, wait, SSE, interrupt, listings, errors, ownership."""

from __future__ import annotations

import json
import time
from typing import Any

from comfytavern_testing import client_for

ALICE = {"X-User": "alice"}
BOB = {"X-User": "bob"}
ROOT = {"X-User": "root"}


def chain_payload() -> dict[str, Any]:
    return {
        "nodes": [
            {"id": "c", "fullType": "t:Const", "inputs": {"value": 2}},
            {"id": "a", "fullType": "t:Add", "inputs": {"b": 3}},
        ],
        "edges": [{"id": "e", "sourceNodeId": "c", "sourceHandle": "value", "targetNodeId": "a", "targetHandle": "a"}],
        "outputInterfaceMappings": {"output_0": {"sourceNodeId": "a", "sourceSlotKey": "result"}},
        "metadata": {"workflowId": "wf-1", "workflowName": "Add"},
    }


def sleep_payload(seconds: float) -> dict[str, Any]:
    return {"nodes": [{"id": "s", "fullType": "t:Sleep", "inputs": {"seconds": seconds}}]}


def test_submit_then_follow_the_run(kernel_factory: Any) -> None:
    with client_for(kernel_factory()) as client:
        response = client.post("/api/prompt", json=chain_payload(), headers=ALICE)
        assert response.status_code == 200
        prompt_id = response.json()["promptId"]
        assert len(prompt_id) == 21
        record = client.get(f"/api/prompt/{prompt_id}?wait=10", headers=ALICE).json()
        assert record["status"] == "complete"
        assert record["promptId"] == prompt_id and record["ownerId"] == "alice"
        assert record["outputs"] == {"c": {"value": 2}, "a": {"result": 5}}
        assert record["nodeStatus"]["a"]["status"] == "complete"
        assert record["interfaceOutputs"] == {"output_0": 5}
        assert record["workflowId"] == "wf-1" and record["workflowName"] == "Add"
        assert record["source"] == "http"


def test_submit_and_wait_in_one_call(kernel_factory: Any) -> None:
    with client_for(kernel_factory()) as client:
        record = client.post("/api/prompt?wait=10", json=chain_payload(), headers=ALICE).json()
        assert record["status"] == "complete" and record["interfaceOutputs"] == {"output_0": 5}
        # A wait that runs out answers the current state.
        record = client.post("/api/prompt?wait=0.05", json=sleep_payload(0.5), headers=ALICE).json()
        assert record["status"] == "running"
        assert record["nodeStatus"]["s"]["status"] == "running"


def test_status_during_the_run_and_the_queue_listing(kernel_factory: Any) -> None:
    with client_for(kernel_factory(execution={"max_concurrent_workflows": 1})) as client:
        first = client.post("/api/prompt", json=sleep_payload(0.4), headers=ALICE).json()["promptId"]
        second = client.post("/api/prompt", json=chain_payload(), headers=ALICE).json()["promptId"]
        listing = client.get("/api/executions", headers=ALICE).json()
        assert [r["promptId"] for r in listing["running"]] == [first]
        assert [(r["promptId"], r["status"]) for r in listing["pending"]] == [(second, "queued")]
        assert client.get("/api/system_stats", headers=ALICE).json() == {
            "maxConcurrentWorkflows": 1,
            "runningExecutions": 1,
            "pendingExecutions": 1,
        }
        assert client.get(f"/api/prompt/{second}", headers=ALICE).json()["status"] == "queued"
        assert client.get(f"/api/prompt/{second}?wait=10", headers=ALICE).json()["status"] == "complete"
        assert client.get("/api/executions", headers=ALICE).json() == {"running": [], "pending": []}
        history = client.get("/api/history?limit=1", headers=ALICE).json()
        assert history["total"] == 2 and [i["promptId"] for i in history["items"]] == [second]
        assert "outputs" not in history["items"][0]  # listings are summaries


def test_interrupt_over_http(kernel_factory: Any) -> None:
    with client_for(kernel_factory()) as client:
        prompt_id = client.post("/api/prompt", json=sleep_payload(30), headers=ALICE).json()["promptId"]
        start = time.perf_counter()
        response = client.delete(f"/api/interrupt/{prompt_id}", headers=ALICE)
        assert response.status_code == 200
        assert response.json() == {"success": True, "message": f"Interrupt signal sent for execution {prompt_id}."}
        assert time.perf_counter() - start < 2
        assert client.get(f"/api/prompt/{prompt_id}", headers=ALICE).json()["status"] == "interrupted"
        again = client.post(f"/api/interrupt/{prompt_id}", headers=ALICE)
        assert again.status_code == 404
        assert "not found in running or waiting queue" in again.json()["error"]


def test_runs_are_private(kernel_factory: Any) -> None:
    with client_for(kernel_factory()) as client:
        prompt_id = client.post("/api/prompt", json=sleep_payload(30), headers=ALICE).json()["promptId"]
        assert client.get(f"/api/prompt/{prompt_id}", headers=BOB).status_code == 404
        assert client.get(f"/api/prompt/{prompt_id}/events", headers=BOB).status_code == 404
        assert client.delete(f"/api/interrupt/{prompt_id}", headers=BOB).status_code == 404
        assert client.get("/api/executions", headers=BOB).json() == {"running": [], "pending": []}
        assert client.get("/api/history", headers=BOB).json()["total"] == 0
        assert client.get("/api/executions", headers=ROOT).json()["running"][0]["ownerId"] == "alice"
        assert client.get(f"/api/prompt/{prompt_id}", headers=ROOT).status_code == 200
        assert client.delete(f"/api/interrupt/{prompt_id}", headers=ROOT).status_code == 200
        assert client.get("/api/prompt/nope", headers=ALICE).json() == {"error": "Execution with promptId nope not found."}
        assert client.get("/api/system_stats").status_code == 401


def test_server_sent_events_follow_a_run_and_replay_a_finished_one(kernel_factory: Any) -> None:
    payload = {
        "nodes": [
            {"id": "s", "fullType": "t:Stream", "inputs": {"parts": ["a", "b"], "delay": 0.05}},
            {"id": "c", "fullType": "t:Collect"},
        ],
        "edges": [{"id": "e", "sourceNodeId": "s", "sourceHandle": "stream", "targetNodeId": "c", "targetHandle": "stream"}],
    }
    with client_for(kernel_factory()) as client:
        prompt_id = client.post("/api/prompt", json=payload, headers=ALICE).json()["promptId"]
        with client.stream("GET", f"/api/prompt/{prompt_id}/events", headers=ALICE) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            body = "".join(response.iter_text())
        events = parse_sse(body)
        kinds = [k for k, _ in events]
        assert kinds[0] == "EXECUTION_STATUS_UPDATE" and events[0][1]["status"] == "running"
        chunks = [p["yieldedContent"]["content"] for k, p in events if k == "NODE_YIELD" and p["sourceNodeId"] == "s"]
        assert chunks == ["a", "b"]
        assert events[-1] == ("EXECUTION_STATUS_UPDATE", {"promptId": prompt_id, "status": "complete"})
        assert ("NODE_COMPLETE", {"promptId": prompt_id, "nodeId": "c", "output": {"text": "ab", "count": 2}}) in events
        with client.stream("GET", f"/api/prompt/{prompt_id}/events", headers=ALICE) as response:
            replayed = parse_sse("".join(response.iter_text()))
        assert replayed[-1][1]["status"] == "complete"
        assert {p["nodeId"] for k, p in replayed if k == "NODE_COMPLETE"} == {"s", "c"}


def parse_sse(body: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_bad_payloads_get_precise_errors_and_the_server_keeps_serving(kernel_factory: Any) -> None:
    with client_for(kernel_factory()) as client:
        post = lambda body, **kw: client.post("/api/prompt", headers={**ALICE, **kw.pop("headers", {})}, content=body, **kw)  # noqa: E731
        assert post(b"{bad").status_code == 400
        assert post(b"").json()["error"].startswith("request body is empty")
        missing = post(b'{"edges": []}')
        assert missing.status_code == 422
        assert missing.json()["details"][0]["path"] == "$"
        assert "nodes" in missing.json()["details"][0]["message"]
        wrong = post(json.dumps({"nodes": [{"id": 1, "fullType": "t:Const"}]}).encode())
        assert wrong.status_code == 422 and wrong.json()["details"][0]["path"] == "$.nodes[0].id"
        unknown = post(json.dumps({"nodes": [{"id": "n1", "fullType": "core:DoesNotExist"}]}).encode())
        assert unknown.status_code == 422
        assert unknown.json()["details"]["nodeErrors"]["n1"][0]["type"] == "unknown_node_type"
        cycle = {
            "nodes": [{"id": "m1", "fullType": "t:Add"}, {"id": "m2", "fullType": "t:Add"}],
            "edges": [
                {"id": "e1", "sourceNodeId": "m1", "sourceHandle": "result", "targetNodeId": "m2", "targetHandle": "a"},
                {"id": "e2", "sourceNodeId": "m2", "sourceHandle": "result", "targetNodeId": "m1", "targetHandle": "a"},
            ],
        }
        response = post(json.dumps(cycle).encode())
        assert response.status_code == 422
        assert response.json()["error"] == "Workflow validation failed: Workflow contains a cycle involving nodes: m1, m2"
        huge = {"nodes": [{"id": f"n{i}", "fullType": "t:Const"} for i in range(100_000)]}
        response = post(json.dumps(huge).encode())
        assert response.status_code == 422 and response.json()["details"]["errors"][0]["type"] == "too_large"
        n = 5000
        deep = {
            "nodes": [{"id": "n0", "fullType": "t:Const", "inputs": {"value": 0}}]
            + [{"id": f"n{i}", "fullType": "t:Add", "inputs": {"b": 1}} for i in range(1, n)],
            "edges": [
                {"id": f"e{i}", "sourceNodeId": f"n{i - 1}", "sourceHandle": "value" if i == 1 else "result",
                 "targetNodeId": f"n{i}", "targetHandle": "a"}
                for i in range(1, n)
            ],
        }
        record = client.post("/api/prompt?wait=30", json=deep, headers=ALICE).json()
        assert record["status"] == "complete" and record["outputs"][f"n{n - 1}"] == {"result": n - 1}
        assert client.get("/api/prompt/x?wait=abc", headers=ALICE).status_code == 400
        assert client.get("/api/history?limit=0", headers=ALICE).status_code == 400
        assert client.get("/api/system_stats", headers=ALICE).status_code == 200


def test_configured_size_limits_refuse_larger_payloads(kernel_factory: Any) -> None:
    """``execution.max_nodes`` / ``max_edges`` replace the built-in limits: at the limit runs, over it is a 422."""
    with client_for(kernel_factory(execution={"max_nodes": 2, "max_edges": 1})) as client:
        record = client.post("/api/prompt?wait=10", json=chain_payload(), headers=ALICE).json()
        assert record["status"] == "complete"  # 2 nodes, 1 edge: exactly at the limits
        three = chain_payload()
        three["nodes"].append({"id": "x", "fullType": "t:Const", "inputs": {"value": 1}})
        response = client.post("/api/prompt", json=three, headers=ALICE)
        assert response.status_code == 422
        assert response.json()["error"] == "Workflow validation failed: workflow has 3 nodes; the limit is 2"
        assert response.json()["details"]["errors"] == [
            {"type": "too_large", "message": "workflow has 3 nodes; the limit is 2"}
        ]
        two_edges = chain_payload()
        two_edges["edges"].append({**two_edges["edges"][0], "id": "e2"})
        response = client.post("/api/prompt", json=two_edges, headers=ALICE)
        assert response.status_code == 422
        assert response.json()["details"]["errors"][0]["message"] == "workflow has 2 edges; the limit is 1"
        assert client.get("/api/history", headers=ALICE).json()["total"] == 1  # refused runs are not recorded


def test_restart_keeps_history_and_records_cut_off_runs(kernel_factory: Any) -> None:
    with client_for(kernel_factory()) as client:
        done = client.post("/api/prompt?wait=10", json=chain_payload(), headers=ALICE).json()["promptId"]
        cut = client.post("/api/prompt", json=sleep_payload(30), headers=ALICE).json()["promptId"]
    with client_for(kernel_factory()) as client:
        record = client.get(f"/api/prompt/{done}", headers=ALICE).json()
        assert record["status"] == "complete" and record["outputs"]["a"] == {"result": 5}
        record = client.get(f"/api/prompt/{cut}", headers=ALICE).json()
        assert record["status"] == "interrupted"
        assert record["nodeStatus"]["s"]["status"] == "interrupted"
        assert client.get("/api/history", headers=ALICE).json()["total"] == 2


def test_execution_events_reach_observers(kernel_factory: Any) -> None:
    from comfytavern import hookimpl
    from comfytavern.events import HubEvent

    seen: list[HubEvent] = []

    class Observer:
        name = "test-observer"

        @hookimpl
        def on_execution_event(self, event: HubEvent) -> None:
            seen.append(event)

    kernel = kernel_factory()
    kernel.register_plugin(Observer())
    with client_for(kernel) as client:
        prompt_id = client.post("/api/prompt?wait=10", json=chain_payload(), headers=ALICE).json()["promptId"]
        deadline = time.time() + 5
        while time.time() < deadline and not any(
            e.type == "EXECUTION_STATUS_UPDATE" and e.payload.get("status") == "complete" for e in seen
        ):
            time.sleep(0.02)
    mine = [e for e in seen if e.prompt_id == prompt_id]
    assert [e.type for e in mine][0] == "EXECUTION_STATUS_UPDATE"
    assert mine[-1].payload == {"promptId": prompt_id, "status": "complete"}
    assert all(e.owner_id == "alice" for e in mine)
