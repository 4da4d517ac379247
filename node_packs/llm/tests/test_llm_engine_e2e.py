"""End to end over the assembled server: the library's streaming chat workflow run with
``POST /api/prompt`` and over the editor's WebSocket against the loopback fake server; one stream
fanned out to two consumers; interrupt closing the upstream connection."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from comfytavern_testing import client_for, make_kernel

pytest.importorskip("comfytavern_nodes_core", reason="the core node pack (CreateMessage, GroupInput...) is needed")
pytest.importorskip("comfytavern_executions", reason="the executions plugin (POST /api/prompt, /ws) is needed")

REPO = Path(__file__).resolve().parents[3]
WORKFLOW = REPO / "library" / "workflows" / "llm-streaming-chat.json"
GROUP_OUTPUT = "core:GroupOutput"


def payload_from_workflow(doc: dict[str, Any], *, text: str, base_url: str, model: str | None = None) -> dict[str, Any]:
    """What the editor sends for a stored workflow (top level, no groups), with the user's text,
    the APISettings base URL and, optionally, the model changed."""
    doc = copy.deepcopy(doc)
    nodes = []
    for n in doc["nodes"]:
        inputs = dict(n.get("inputValues") or {})
        if n["type"] == "core:APISettings":
            inputs["base_url"] = base_url
        if n["type"] == "core:GenericLlmRequest" and model is not None:
            inputs["activated_model_id"] = model
        entry: dict[str, Any] = {"id": n["id"], "fullType": n["type"], "inputs": inputs}
        if n.get("inputConnectionOrders"):
            entry["inputConnectionOrders"] = n["inputConnectionOrders"]
        nodes.append(entry)
    types = {n["id"]: n["type"] for n in doc["nodes"]}
    edges = [
        {
            "id": e["id"],
            "sourceNodeId": e["source"],
            "sourceHandle": e["sourceHandle"],
            "targetNodeId": e["target"],
            "targetHandle": e["targetHandle"],
        }
        for e in doc["edges"]
    ]
    mappings = {
        e["targetHandle"]: {"sourceNodeId": e["source"], "sourceSlotKey": e["sourceHandle"]}
        for e in doc["edges"]
        if types[e["target"]] == GROUP_OUTPUT
    }
    interface_inputs = doc["interfaceInputs"]
    interface_inputs["input_0"]["config"]["default"] = text
    return {
        "nodes": nodes,
        "edges": edges,
        "interfaceInputs": interface_inputs,
        "interfaceOutputs": doc["interfaceOutputs"],
        "outputInterfaceMappings": mappings,
        "metadata": {"workflowId": doc["id"], "workflowName": doc["name"]},
    }


@pytest.fixture
def workflow() -> dict[str, Any]:
    return json.loads(WORKFLOW.read_text("utf-8"))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    kernel = make_kernel(
        tmp_path,
        storage={"projects": None, "accounts": None, "runs": None},
        plugins={"settings": {"llm": {"read_timeout_seconds": 5, "retry_backoff_seconds": 0.01}}},
    )
    with client_for(kernel) as c:
        yield c


FINAL = ("complete", "error", "interrupted")


def run_over_ws(client: TestClient, payload: dict[str, Any]) -> list[tuple[float, dict[str, Any]]]:
    """Submit like the editor (``PROMPT_REQUEST`` on ``/ws``) and collect every frame of the run,
    with its arrival time, until the final status."""
    frames: list[tuple[float, dict[str, Any]]] = []
    with client.websocket_connect("/ws", headers={"origin": "http://localhost:5573"}) as ws:
        ws.send_json({"type": "PROMPT_REQUEST", "payload": payload})
        while True:
            frame = ws.receive_json()
            frames.append((time.monotonic(), frame))
            if frame["type"] == "EXECUTION_STATUS_UPDATE" and frame["payload"]["status"] in FINAL:
                return frames


def yielded(frames: list[tuple[float, dict[str, Any]]], node_id: str, kind: str = "text_chunk") -> list[Any]:
    return [
        f["payload"]["yieldedContent"]["content"]
        for _, f in frames
        if f["type"] == "NODE_YIELD"
        and f["payload"]["sourceNodeId"] == node_id
        and f["payload"]["yieldedContent"]["type"] == kind
    ]


def test_library_workflow_over_http_keeps_the_final_outputs(
    client: TestClient, fake: Any, workflow: dict[str, Any]
) -> None:
    payload = payload_from_workflow(workflow, text="Tell me about streams", base_url=fake.base_url)
    record = client.post("/api/prompt?wait=20", json=payload).json()
    assert record["status"] == "complete", record
    # The final outputs of the streaming node are kept (the original lost them).
    llm = record["outputs"]["llm"]
    assert llm["responseText"] == "Tell me about streams"
    assert llm["response"]["text"] == "Tell me about streams" and llm["response"]["finish_reason"] == "stop"
    assert llm["usage"]["completion_tokens"] == 4
    assert record["interfaceOutputs"]["output_1"] == "Tell me about streams"
    assert record["interfaceOutputs"]["output_0"]["text"] == "Tell me about streams"
    # The settings node shows no key (there is none here).
    assert record["outputs"]["api"]["api_settings"]["api_key_set"] is False
    sent = fake.requests[0].body
    assert sent["model"] == "gpt-4o-mini" and sent["stream"] is True
    assert sent["messages"] == [
        {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
        {"role": "user", "content": "Tell me about streams"},
    ]


def test_library_workflow_from_the_editor_shows_tokens_as_they_arrive(
    client: TestClient, fake: Any, workflow: dict[str, Any]
) -> None:
    fake.reply = "one two three four five six"
    payload = payload_from_workflow(workflow, text="hi", base_url=fake.base_url, model="slow-40")
    frames = run_over_ws(client, payload)
    assert frames[0][1]["type"] == "PROMPT_ACCEPTED_RESPONSE"
    assert frames[-1][1]["payload"]["status"] == "complete", frames[-1]
    texts = yielded(frames, "llm")
    assert texts == ["one ", "two ", "three ", "four ", "five ", "six"]
    assert yielded(frames, "llm", "finish_reason_chunk")[-1]["accumulated_text"] == fake.reply
    # Each token reached the socket as it was produced, not in one burst at the end.
    times = [t for t, f in frames if f["type"] == "NODE_YIELD" and f["payload"]["yieldedContent"]["type"] == "text_chunk"]
    assert times[-1] - times[0] > 0.1
    interface = [
        f["payload"]["yieldedContent"]["content"]
        for _, f in frames
        if f["type"] == "WORKFLOW_INTERFACE_YIELD"
        and f["payload"]["interfaceOutputKey"] == "output_0"
        and f["payload"]["yieldedContent"].get("type") == "text_chunk"
    ]
    assert interface == texts
    complete = {f["payload"]["nodeId"]: f["payload"]["output"] for _, f in frames if f["type"] == "NODE_COMPLETE"}
    assert complete["llm"]["responseText"] == fake.reply
    assert complete["__WORKFLOW_INTERFACE_OUTPUTS__"]["output_1"] == fake.reply


def test_one_stream_feeds_two_consumers(client: TestClient, fake: Any, workflow: dict[str, Any]) -> None:
    payload = payload_from_workflow(workflow, text="alpha beta gamma", base_url=fake.base_url)
    payload["nodes"] += [
        {"id": "relay_a", "fullType": "core:StreamSuffixRelay", "inputs": {"suffix": "|A"}},
        {"id": "relay_b", "fullType": "core:StreamSuffixRelay", "inputs": {"suffix": "|B"}},
    ]
    payload["edges"] += [
        {"id": "e_ra", "sourceNodeId": "llm", "sourceHandle": "stream_output", "targetNodeId": "relay_a", "targetHandle": "inputStream"},
        {"id": "e_rb", "sourceNodeId": "llm", "sourceHandle": "stream_output", "targetNodeId": "relay_b", "targetHandle": "inputStream"},
    ]
    frames = run_over_ws(client, payload)
    assert frames[-1][1]["payload"]["status"] == "complete", frames[-1]
    assert yielded(frames, "llm") == ["alpha ", "beta ", "gamma"]
    assert yielded(frames, "relay_a") == ["alpha |A", "beta |A", "gamma|A"]
    assert yielded(frames, "relay_b") == ["alpha |B", "beta |B", "gamma|B"]
    assert len(fake.requests) == 1  # one upstream request, fanned out


def test_interrupt_mid_stream_closes_the_upstream_connection(
    client: TestClient, fake: Any, workflow: dict[str, Any]
) -> None:
    fake.reply = " ".join(f"w{i}" for i in range(200))
    payload = payload_from_workflow(workflow, text="x", base_url=fake.base_url, model="slow-50")
    prompt_id = client.post("/api/prompt", json=payload).json()["promptId"]
    assert fake.wait_chunks(4, timeout=10), "the stream never started"
    interrupted_at = time.monotonic()
    response = client.delete(f"/api/interrupt/{prompt_id}")
    assert response.status_code == 200, response.text
    disconnected_at = fake.wait_disconnect(timeout=5)
    assert disconnected_at is not None, "the LLM server never saw the client leave"
    assert disconnected_at - interrupted_at < 1.0
    assert fake.requests[0].completed_at is None and fake.requests[0].chunks_sent < 100
    record = client.get(f"/api/prompt/{prompt_id}?wait=5").json()
    assert record["status"] == "interrupted"


def test_upstream_error_becomes_node_error(client: TestClient, fake: Any, workflow: dict[str, Any]) -> None:
    payload = payload_from_workflow(workflow, text="x", base_url=fake.base_url, model="error-404")
    frames = run_over_ws(client, payload)
    assert frames[-1][1]["payload"]["status"] == "error"
    errors = [f["payload"] for _, f in frames if f["type"] == "NODE_ERROR"]
    assert [e["nodeId"] for e in errors] == ["llm"]
    assert "answered HTTP 404: model or endpoint not found" in errors[0]["errorDetails"]
    skipped = [f["payload"]["nodeId"] for _, f in frames if f["type"] == "NODE_SKIPPED"]
    assert skipped == ["default-group-output"]
