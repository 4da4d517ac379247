"""``/api/workflows``: the read-only global library."""

from __future__ import annotations

import json
from pathlib import Path

from starlette.testclient import TestClient

from comfytavern.kernel import Kernel


def test_empty_or_missing_library(client: TestClient) -> None:
    assert client.get("/api/workflows").json() == []


def test_listing(client: TestClient, kernel: Kernel) -> None:
    folder = kernel.config.data_path("library_workflows")
    folder.mkdir(parents=True)
    (folder / "b.json").write_text(json.dumps({"nodes": []}), "utf-8")
    (folder / "a.json").write_text(json.dumps({"name": "Alpha", "nodes": []}), "utf-8")
    (folder / "中文.json").write_text(json.dumps({"name": "中文工作流"}), "utf-8")
    (folder / "broken.json").write_text("{nope", "utf-8")
    (folder / "list.json").write_text("[]", "utf-8")
    (folder / ".hidden.json").write_text("{}", "utf-8")
    (folder / "notes.txt").write_text("x", "utf-8")
    (folder / "sub.json").mkdir()
    assert client.get("/api/workflows").json() == [
        {"id": "a", "name": "Alpha"},
        {"id": "b", "name": "b"},
        {"id": "中文", "name": "中文工作流"},
    ]


def test_single_workflow_points_to_the_project_api(client: TestClient) -> None:
    response = client.get("/api/workflows/a")
    assert response.status_code == 404
    assert response.json()["error"] == (
        "Workflow with ID 'a' not found (global access disabled). Access via project API if applicable."
    )
    assert response.json()["details"] == {"projectApi": "/api/projects/{projectId}/workflows/{workflowId}"}
    assert client.get("/api/workflows/%2e%2e").status_code == 400


def test_writes_are_405_with_json(client: TestClient, kernel: Kernel) -> None:
    cases = [
        ("POST", "/api/workflows", "Creating global workflows is disabled. Please use the project-specific API."),
        ("PUT", "/api/workflows/x", "Updating global workflow 'x' is disabled. Please use the project-specific API."),
        ("DELETE", "/api/workflows/x", "Deleting global workflow 'x' is disabled. Please use the project-specific API."),
    ]
    for method, url, message in cases:
        response = client.request(method, url, json={"name": "x"} if method != "DELETE" else None)
        assert response.status_code == 405
        assert response.headers["content-type"] == "application/json"
        assert response.headers["allow"] == "GET"
        assert response.json() == {"error": message}
    assert not Path(kernel.config.data_path("library_workflows")).exists()
