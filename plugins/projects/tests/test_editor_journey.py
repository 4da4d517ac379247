"""The editor's project journey with the exact request shapes of the real frontend
(frontend-contract.md A3/A6): create a project, open it, save a workflow, rename it, reopen it,
delete it, and delete the project."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

ZOD_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")


def encode_uri_component(value: str) -> str:
    return quote(value, safe="-_.!~*'()")


def zod_project(meta: dict[str, Any]) -> None:
    for key in ("id", "name", "version", "schemaVersion", "createdAt", "updatedAt"):
        assert isinstance(meta[key], str), key
    assert ZOD_DATETIME.fullmatch(meta["createdAt"]) and ZOD_DATETIME.fullmatch(meta["updatedAt"])
    assert None not in meta.values()


# What useWorkflowData.saveWorkflow sends for a new tab with TestWidgets -> TextMerge -> GroupOutput.
NODES = [
    {"id": "default-group-input", "type": "core:GroupInput", "position": {"x": 100, "y": 300}},
    {"id": "default-group-output", "type": "core:GroupOutput", "position": {"x": 900, "y": 300}},
    {"id": "cvSihlipbK", "type": "core:TestWidgets", "position": {"x": 300, "y": 200},
     "inputValues": {"string_input": "hello from anchor"}},
    {"id": "5Eck2c7UdO", "type": "core:TextMerge", "position": {"x": 600, "y": 250},
     "inputConnectionOrders": {"text_inputs": ["bxYGPP-5sM"]}},
]
EDGES = [
    {"id": "bxYGPP-5sM", "source": "cvSihlipbK", "target": "5Eck2c7UdO", "sourceHandle": "string_output",
     "targetHandle": "text_inputs__0"},
    {"id": "d0qENRY0c1", "source": "5Eck2c7UdO", "target": "default-group-output", "sourceHandle": "merged_text",
     "targetHandle": "output_0"},
]
INTERFACE_IN = {"input_0": {"key": "input_0", "displayName": "*", "dataFlowType": "CONVERTIBLE_ANY", "allowDynamicType": True}}
INTERFACE_OUT = {
    "output_0": {"key": "output_0", "displayName": "合并文本", "dataFlowType": "STRING"},
    "output_1": {"key": "output_1", "displayName": "*", "dataFlowType": "CONVERTIBLE_ANY", "allowDynamicType": True},
}


def save_body(name: str, description: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "nodes": NODES,
        "edges": EDGES,
        "viewport": {"x": 12.5, "y": -40, "zoom": 0.8},
        "interfaceInputs": INTERFACE_IN,
        "interfaceOutputs": INTERFACE_OUT,
        "version": "0.0.7",
    }


@pytest.mark.parametrize("project_name", ["Anchor Journey 184250", "我的 项目"])
def test_project_journey(client: TestClient, user_dir: Path, project_name: str) -> None:
    # Home page: the project list.
    assert client.get("/api/projects").status_code == 200

    # "创建新项目" -> name dialog -> POST {"name"} -> 201, zod-validated, list fetched again.
    created = client.post("/api/projects", json={"name": project_name})
    assert created.status_code == 201
    meta = created.json()
    zod_project(meta)
    project_id = meta["id"]
    assert project_id == project_name
    assert [p["id"] for p in client.get("/api/projects").json()] == [project_id]

    # Route guard of /projects/<id>/editor, then the workflow panel.
    base = f"/api/projects/{encode_uri_component(project_id)}"
    opened = client.get(f"{base}/metadata")
    assert opened.status_code == 200
    zod_project(opened.json())
    assert client.get(f"{base}/workflows").json() == []

    # Ctrl+S on a new tab, name dialog: POST without id -> 201, the full object with id and name.
    saved = client.post(f"{base}/workflows", json=save_body("anchor-wf"))
    assert saved.status_code == 201
    workflow = saved.json()
    workflow_id = workflow["id"]
    assert workflow["name"] == "anchor-wf"
    for key, value in save_body("anchor-wf").items():
        assert workflow[key] == value, key
    assert workflow["interfaceInputs"] == INTERFACE_IN and workflow["interfaceOutputs"] == INTERFACE_OUT
    listed = client.get(f"{base}/workflows").json()
    assert listed == [{"id": workflow_id, "name": "anchor-wf", "description": "", "updatedAt": workflow["updatedAt"],
                       "referencedWorkflows": []}]
    folder = user_dir / project_id / "workflows"
    assert [p.name for p in folder.iterdir()] == ["anchor-wf.json"]

    # Save of an existing workflow under a new name (PUT, body without id): the file moves, the id stays.
    renamed = client.put(f"{base}/workflows/{encode_uri_component(workflow_id)}", json=save_body("锚点 工作流"))
    assert renamed.status_code == 200
    after = renamed.json()
    assert after["id"] == workflow_id and after["name"] == "锚点 工作流"
    assert after["createdAt"] == workflow["createdAt"]
    assert [p.name for p in folder.iterdir()] == ["锚点 工作流.json"]

    # Reopen: list, then load the tab from the panel.
    assert [(w["id"], w["name"]) for w in client.get(f"{base}/workflows").json()] == [(workflow_id, "锚点 工作流")]
    reopened = client.get(f"{base}/workflows/{encode_uri_component(workflow_id)}")
    assert reopened.status_code == 200 and reopened.json() == after

    # Delete from the workflow panel (body ignored), the list is fetched again.
    assert client.delete(f"{base}/workflows/{encode_uri_component(workflow_id)}").status_code == 204
    assert client.get(f"{base}/workflows").json() == []
    assert client.get(f"{base}/workflows/{encode_uri_component(workflow_id)}").status_code == 404

    # And the project itself.
    assert client.delete(base).status_code == 204
    assert client.get("/api/projects").json() == []
    assert client.get(f"{base}/metadata").status_code == 404
    assert sorted(p.name for p in user_dir.iterdir()) == [".recycle"]
