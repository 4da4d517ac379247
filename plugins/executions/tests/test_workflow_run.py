"""``POST /api/projects/{p}/workflows/{w}/run``: a stored workflow run by reference, with every
installed plugin and node pack, the default storage (workflow files, SQLite history) and the
header test auth mode to act as several users and as scoped keys."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from comfytavern_testing import client_for, header_auth_plugin, make_kernel

ALICE = {"X-User": "alice"}
BOB = {"X-User": "bob"}
ROOT = {"X-User": "root"}
P = "/api/projects/demo"


def slot(key: str, kind: str = "STRING", **extra: Any) -> dict[str, Any]:
    return {"key": key, "displayName": key, "dataFlowType": kind, **extra}


def n(node_id: str, type_: str, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": type_, "position": {"x": 0, "y": 0}, **extra}


def e(eid: str, source: str, sh: str, target: str, th: str) -> dict[str, Any]:
    return {"id": eid, "source": source, "sourceHandle": sh, "target": target, "targetHandle": th}


def greeting_workflow(**extra: Any) -> dict[str, Any]:
    """GroupInput.greeting + GroupInput.name -> TextMerge(", ") -> GroupOutput.text."""
    return {
        "name": "Greeting",
        "nodes": [
            n("gi", "core:GroupInput"),
            n("merge", "core:TextMerge", inputValues={"separator": ", "},
              inputConnectionOrders={"text_inputs": ["e1", "e2"]}),
            n("go", "core:GroupOutput"),
        ],
        "edges": [
            e("e1", "gi", "greeting", "merge", "text_inputs__0"),
            e("e2", "gi", "name", "merge", "text_inputs__1"),
            e("e3", "merge", "merged_text", "go", "text"),
        ],
        "viewport": {"x": 0, "y": 0, "zoom": 1},
        "interfaceInputs": {
            "greeting": slot("greeting", config={"default": "Hello"}),
            "name": slot("name", required=True),
        },
        "interfaceOutputs": {"text": slot("text")},
        **extra,
    }


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    kernel = make_kernel(
        tmp_path,
        plugins=[header_auth_plugin(scopes_header="x-scopes", admins=("root",))],
        auth={"mode": "test-header"},
    )
    with client_for(kernel) as c:
        yield c


def save(client: TestClient, doc: dict[str, Any], headers: dict[str, str] = ALICE, project: str = "demo") -> str:
    if client.get(f"/api/projects/{project}/metadata", headers=headers).status_code == 404:
        assert client.post("/api/projects", json={"name": project}, headers=headers).status_code == 201
    created = client.post(f"/api/projects/{project}/workflows", json=doc, headers=headers)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def test_run_by_reference_then_follow_it(client: TestClient) -> None:
    wid = save(client, greeting_workflow())
    accepted = client.post(f"{P}/workflows/{wid}/run", json={"inputs": {"name": "Ada"}}, headers=ALICE)
    assert accepted.status_code == 200, accepted.text
    prompt_id = accepted.json()["promptId"]
    assert list(accepted.json()) == ["promptId"] and len(prompt_id) == 21
    record = client.get(f"/api/prompt/{prompt_id}?wait=10", headers=ALICE).json()
    assert record["status"] == "complete"
    assert record["interfaceOutputs"] == {"text": "Hello, Ada"}
    assert record["workflowId"] == wid and record["workflowName"] == "Greeting" and record["ownerId"] == "alice"
    # The same SSE follow-up as POST /api/prompt.
    with client.stream("GET", f"/api/prompt/{prompt_id}/events", headers=ALICE) as events:
        text = "".join(events.iter_text())
    frames = [f for f in text.split("\n\n") if f.strip()]
    assert frames[-1].startswith("event: EXECUTION_STATUS_UPDATE")
    assert json.loads(frames[-1].split("data: ", 1)[1]) == {"promptId": prompt_id, "status": "complete"}
    assert '"__WORKFLOW_INTERFACE_OUTPUTS__"' in text and '"Hello, Ada"' in text


def test_wait_returns_the_record_with_the_interface_outputs(client: TestClient) -> None:
    wid = save(client, greeting_workflow())
    record = client.post(f"{P}/workflows/{wid}/run?wait=10", json={"inputs": {"greeting": "Hi", "name": "Bo"}},
                         headers=ALICE).json()
    assert record["status"] == "complete" and record["interfaceOutputs"] == {"text": "Hi, Bo"}
    # null means "use the default"; the stored workflow itself is not changed by a run.
    record = client.post(f"{P}/workflows/{wid}/run?wait=10", json={"inputs": {"greeting": None, "name": "Cy"}},
                         headers=ALICE).json()
    assert record["interfaceOutputs"] == {"text": "Hello, Cy"}
    stored = client.get(f"{P}/workflows/{wid}", headers=ALICE).json()
    assert stored["interfaceInputs"]["greeting"]["config"] == {"default": "Hello"}
    assert "config" not in stored["interfaceInputs"]["name"]


def test_input_errors_are_422_naming_the_input(client: TestClient) -> None:
    wid = save(client, greeting_workflow())
    url = f"{P}/workflows/{wid}/run"
    unknown = client.post(url, json={"inputs": {"name": "x", "nmae": "typo"}}, headers=ALICE)
    assert unknown.status_code == 422
    assert "unknown interface input 'nmae'" in unknown.json()["error"]
    assert unknown.json()["details"] == [{
        "path": "$.inputs.nmae", "key": "nmae", "problem": "unknown",
        "message": "unknown interface input 'nmae' (the workflow has: greeting, name)",
    }]
    missing = client.post(url, json={"inputs": {"greeting": "Hi"}}, headers=ALICE)
    assert missing.status_code == 422
    assert missing.json()["error"] == "interface input 'name' is required and has no default"
    wrong = client.post(url, json={"inputs": {"name": 42}}, headers=ALICE)
    assert wrong.status_code == 422 and wrong.json()["error"] == "interface input 'name': expected STRING, got number"
    both = client.post(url, json={"inputs": {"zzz": 1}}, headers=ALICE).json()
    assert [d["problem"] for d in both["details"]] == ["unknown", "missing"]
    # The body itself.
    assert client.post(url, content=b"{nope", headers=ALICE).status_code == 400
    assert client.post(url, json={"input": {"name": "x"}}, headers=ALICE).status_code == 422
    assert client.post(url, json={"inputs": ["name"]}, headers=ALICE).status_code == 422
    assert client.post(url, json=[], headers=ALICE).status_code == 422
    # No run was created by any of them.
    assert client.get("/api/history", headers=ALICE).json()["total"] == 0


def test_empty_body_runs_with_the_defaults(client: TestClient) -> None:
    doc = greeting_workflow()
    doc["interfaceInputs"]["name"] = slot("name", config={"default": "World"})
    wid = save(client, doc)
    record = client.post(f"{P}/workflows/{wid}/run?wait=10", headers=ALICE).json()
    assert record["interfaceOutputs"] == {"text": "Hello, World"}
    record = client.post(f"{P}/workflows/{wid}/run?wait=10", json={}, headers=ALICE).json()
    assert record["interfaceOutputs"] == {"text": "Hello, World"}


def test_unknown_project_or_workflow_is_404_and_bad_ids_400(client: TestClient) -> None:
    wid = save(client, greeting_workflow())
    body = {"inputs": {"name": "x"}}
    assert client.post(f"/api/projects/nope/workflows/{wid}/run", json=body, headers=ALICE).status_code == 404
    missing = client.post(f"{P}/workflows/nope/run", json=body, headers=ALICE)
    assert missing.status_code == 404 and missing.json() == {"error": "Workflow with ID 'nope' not found in project 'demo'."}
    assert client.post(f"{P}/workflows/%2E%2E/run", json=body, headers=ALICE).status_code == 400
    assert client.post(f"{P}/workflows/{wid}/run?wait=abc", json=body, headers=ALICE).status_code == 400
    assert client.get(f"{P}/workflows/{wid}/run", headers=ALICE).status_code == 405


def test_ownership_and_scopes(client: TestClient) -> None:
    wid = save(client, greeting_workflow())
    body = {"inputs": {"name": "x"}}
    url = f"{P}/workflows/{wid}/run"
    # Another user (even an administrator) has no such workflow: projects are per user.
    assert client.post(url, json=body, headers=BOB).status_code == 404
    assert client.post(url, json=body, headers=ROOT).status_code == 404
    save(client, greeting_workflow(), headers=BOB)  # same names in bob's own space do not help alice
    assert client.post(url, json=body).status_code == 401
    # Keys: runs:write is what running needs (no projects scope); read-only keys are refused.
    assert client.post(url, json=body, headers={**ALICE, "X-Scopes": "runs:read"}).status_code == 403
    assert client.post(url, json=body, headers={**ALICE, "X-Scopes": "projects:*"}).status_code == 403
    ok = client.post(url, json=body, headers={**ALICE, "X-Scopes": "runs:write"})
    assert ok.status_code == 200
    prompt_id = ok.json()["promptId"]
    assert client.get(f"/api/prompt/{prompt_id}", headers=BOB).status_code == 404
    assert client.get(f"/api/prompt/{prompt_id}?wait=10", headers=ROOT).json()["ownerId"] == "alice"


def test_node_groups_inside_expand_on_the_server(client: TestClient) -> None:
    inner = save(client, {
        "name": "Shout",
        "nodes": [n("gi", "core:GroupInput"), n("m", "core:TextMerge", inputValues={"separator": ""},
                                                  inputConnectionOrders={"text_inputs": ["i1", "i2"]}),
                  n("bang", "core:TextMerge", inputValues={"separator": ""}), n("go", "core:GroupOutput")],
        "edges": [e("i1", "gi", "text", "m", "text_inputs__0"), e("i2", "bang", "merged_text", "m", "text_inputs__1"),
                  e("i3", "m", "merged_text", "go", "loud")],
        "viewport": {"x": 0, "y": 0, "zoom": 1},
        "interfaceInputs": {"text": slot("text")},
        "interfaceOutputs": {"loud": slot("loud")},
    })
    # `bang` has no connection: its text comes from a preset value.
    stored_inner = client.get(f"{P}/workflows/{inner}", headers=ALICE).json()
    stored_inner["nodes"][2]["inputValues"] = {"separator": "", "text_inputs": ["!"]}
    assert client.put(f"{P}/workflows/{inner}", json=stored_inner, headers=ALICE).status_code == 200
    outer = save(client, {
        "name": "Outer",
        "nodes": [n("gi", "core:GroupInput"), n("g1", "core:NodeGroup", configValues={"referencedWorkflowId": inner}),
                  n("g2", "core:NodeGroup", configValues={"referencedWorkflowId": inner}), n("go", "core:GroupOutput")],
        "edges": [e("a", "gi", "word", "g1", "text"), e("b", "g1", "loud", "g2", "text"), e("c", "g2", "loud", "go", "result")],
        "viewport": {"x": 0, "y": 0, "zoom": 1},
        "interfaceInputs": {"word": slot("word", required=True)},
        "interfaceOutputs": {"result": slot("result")},
    })
    record = client.post(f"{P}/workflows/{outer}/run?wait=10", json={"inputs": {"word": "hey"}}, headers=ALICE).json()
    assert record["status"] == "complete", record
    assert record["interfaceOutputs"] == {"result": "hey!!"}
    assert {"g1/m", "g2/m"} <= set(record["nodeStatus"])


def test_an_invalid_stored_graph_is_422_and_creates_no_run(client: TestClient) -> None:
    doc = greeting_workflow()
    doc["nodes"].append(n("ghost", "core:NoSuchNode"))
    wid = save(client, doc)
    bad = client.post(f"{P}/workflows/{wid}/run", json={"inputs": {"name": "x"}}, headers=ALICE)
    assert bad.status_code == 422
    assert bad.json()["details"]["nodeErrors"]["ghost"]
    assert client.get("/api/history", headers=ALICE).json()["total"] == 0


def test_a_failing_node_ends_the_run_in_error_with_the_reason(client: TestClient) -> None:
    wid = save(client, {
        "name": "Divide",
        "nodes": [n("gi", "core:GroupInput"), n("div", "core:MathOperation", configValues={"operationMode": "divide"}),
                  n("go", "core:GroupOutput")],
        "edges": [e("a", "gi", "a", "div", "a"), e("b", "gi", "b", "div", "b"), e("c", "div", "result", "go", "q")],
        "viewport": {"x": 0, "y": 0, "zoom": 1},
        "interfaceInputs": {"a": slot("a", "FLOAT"), "b": slot("b", "FLOAT")},
        "interfaceOutputs": {"q": slot("q", "FLOAT")},
    })
    url = f"{P}/workflows/{wid}/run?wait=10"
    assert client.post(url, json={"inputs": {"a": 7, "b": 2}}, headers=ALICE).json()["interfaceOutputs"] == {"q": 3.5}
    record = client.post(url, json={"inputs": {"a": 1, "b": 0}}, headers=ALICE).json()
    assert record["status"] == "error"
    assert record["interfaceOutputs"]["q"]["type"] == "error_placeholder"
    assert record["errorInfo"]["failedNodes"] == [{"nodeId": "div", "message": "division by zero: input 'b' is 0"}]


def test_parallel_runs_of_one_workflow_by_two_users(client: TestClient) -> None:
    wid_a = save(client, greeting_workflow())
    wid_b = save(client, greeting_workflow(), headers=BOB)

    def call(i: int) -> tuple[str, dict[str, Any]]:
        who, wid = (ALICE, wid_a) if i % 2 else (BOB, wid_b)
        response = client.post(f"{P}/workflows/{wid}/run?wait=30", json={"inputs": {"name": f"n{i}"}}, headers=who)
        assert response.status_code == 200, response.text
        return who["X-User"], response.json()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(24)))
    for i, (who, record) in enumerate(results):
        assert record["status"] == "complete" and record["ownerId"] == who
        assert record["interfaceOutputs"] == {"text": f"Hello, n{i}"}
