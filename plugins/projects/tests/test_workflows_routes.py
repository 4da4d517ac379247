"""Workflow routes: happy paths, renames, the bad-input table, lossless round trips, ETags and
parallel saves."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.testclient import TestClient

from comfytavern.app import create_app
from comfytavern.kernel import Kernel

P = "/api/projects/Anchor%20Demo"


@pytest.fixture
def project(client: TestClient) -> str:
    assert client.post("/api/projects", json={"name": "Anchor Demo"}).status_code == 201
    return P


def wf_files(user_dir: Path) -> list[str]:
    return sorted(p.name for p in (user_dir / "Anchor Demo" / "workflows").iterdir())


def test_crud_and_rename(client: TestClient, project: str, user_dir: Path, blank: Any) -> None:
    assert client.get(f"{project}/workflows").json() == []
    body = blank("Random plus Eight", interfaceInputs={}, interfaceOutputs={})
    created = client.post(f"{project}/workflows", json=body)
    assert created.status_code == 201
    saved = created.json()
    wid = saved["id"]
    assert saved["name"] == "Random plus Eight" and saved["nodes"] == [] and saved["referencedWorkflows"] == []
    assert saved["createdAt"] == saved["updatedAt"] and saved["createdAt"].endswith("Z")
    assert wf_files(user_dir) == ["Random plus Eight.json"]
    assert json.loads((user_dir / "Anchor Demo" / "workflows" / "Random plus Eight.json").read_text("utf-8")) == saved

    listed = client.get(f"{project}/workflows").json()
    assert listed == [{"id": wid, "name": "Random plus Eight", "updatedAt": saved["updatedAt"], "referencedWorkflows": []}]
    assert client.get(f"{project}/workflows/{wid}").json() == saved

    renamed = client.put(f"{project}/workflows/{wid}", json=blank("Renamed", description="updated"))
    assert renamed.status_code == 200
    after = renamed.json()
    assert after["id"] == wid and after["name"] == "Renamed" and after["description"] == "updated"
    assert after["createdAt"] == saved["createdAt"] and after["updatedAt"] >= saved["updatedAt"]
    assert wf_files(user_dir) == ["Renamed.json"]
    assert client.get(f"{project}/workflows/{wid}").json() == after

    assert client.delete(f"{project}/workflows/{wid}").status_code == 204
    assert wf_files(user_dir) == []
    assert client.get(f"{project}/workflows/{wid}").status_code == 404
    missing = client.delete(f"{project}/workflows/{wid}")
    assert missing.status_code == 404
    assert missing.json() == {"error": f"Workflow with ID '{wid}' not found in project 'Anchor Demo'."}
    recycled = list((user_dir / ".recycle").glob("*-Anchor Demo/workflows/Renamed.json"))
    assert len(recycled) == 1 and json.loads(recycled[0].read_text("utf-8"))["id"] == wid


def test_save_touches_project_updated_at(client: TestClient, project: str, blank: Any) -> None:
    before = client.get(f"{project}/metadata").json()["updatedAt"]
    saved = client.post(f"{project}/workflows", json=blank("w")).json()
    assert client.get(f"{project}/metadata").json()["updatedAt"] == saved["updatedAt"] >= before


def test_name_clashes_are_409_and_change_nothing(client: TestClient, project: str, user_dir: Path, blank: Any) -> None:
    a = client.post(f"{project}/workflows", json=blank("A")).json()
    client.post(f"{project}/workflows", json=blank("B"))
    again = client.post(f"{project}/workflows", json=blank("A"))
    assert again.status_code == 409 and "'A'" in again.json()["error"]
    # Names that derive the same file name clash too, never overwrite.
    assert client.post(f"{project}/workflows", json=blank("A ")).status_code == 409
    onto = client.put(f"{project}/workflows/{a['id']}", json=blank("B"))
    assert onto.status_code == 409
    assert wf_files(user_dir) == ["A.json", "B.json"]
    assert client.get(f"{project}/workflows/{a['id']}").json() == a
    # Saving under its own name again is not a clash.
    assert client.put(f"{project}/workflows/{a['id']}", json=blank("A")).status_code == 200


def test_body_id_rules(client: TestClient, project: str, blank: Any) -> None:
    chosen = client.post(f"{project}/workflows", json=blank("x", id="anchor-wf"))
    assert chosen.status_code == 201 and chosen.json()["id"] == "anchor-wf"
    assert client.post(f"{project}/workflows", json=blank("y", id="anchor-wf")).status_code == 409
    mismatch = client.put(f"{project}/workflows/anchor-wf", json=blank("x", id="other-id"))
    assert mismatch.status_code == 400
    assert mismatch.json() == {"error": "Workflow ID in body ('other-id') does not match URL parameter ('anchor-wf')."}
    assert client.put(f"{project}/workflows/anchor-wf", json=blank("x", id="anchor-wf")).status_code == 200


def test_editor_fields_are_kept(client: TestClient, project: str, blank: Any) -> None:
    """Fields this server does not model (node-group save, newer editors) come back as sent."""
    node = {"id": "n1", "type": "core:TextMerge", "position": {"x": 1, "y": 2}, "data": {"nodeType": "x", "deep": [1, {"a": None}]},
            "size": {"width": 10, "height": 20}, "customLabel": "L", "zIndex": 3}
    edge = {"id": "e1", "source": "n1", "target": "n1", "sourceHandle": None, "targetHandle": "t", "type": "default",
            "markerEnd": {"type": "arrow"}, "animated": True, "style": {"stroke": "#fff"}, "data": {"sourceType": "STRING"}}
    body = blank("group", nodes=[node], edges=[edge], creationMethod="group", previewTarget={"nodeId": "n1", "slotKey": "o"},
                 somethingNew={"nested": ["kept"]}, description="")
    saved = client.post(f"{project}/workflows", json=body).json()
    for key, value in body.items():
        assert saved[key] == value, key
    listed = client.get(f"{project}/workflows").json()[0]
    assert listed["creationMethod"] == "group" and listed["description"] == ""
    # A PUT without them (the editor never resends creationMethod) keeps them.
    put = client.put(f"{project}/workflows/{saved['id']}", json=blank("group", nodes=[node], edges=[edge])).json()
    assert put["creationMethod"] == "group" and put["somethingNew"] == {"nested": ["kept"]}


def test_round_trip_of_original_editor_file(client: TestClient, project: str, user_dir: Path, chat_demo: dict[str, Any]) -> None:
    """§4.4: a file the original editor saved is served as is, and saving it back loses nothing."""
    folder = user_dir / "Anchor Demo" / "workflows"
    (folder / "Chat demo.json").write_text(json.dumps(chat_demo, ensure_ascii=False, indent=2), "utf-8")
    wid = chat_demo["id"]
    served = client.get(f"{project}/workflows/{wid}")
    assert served.status_code == 200 and served.json() == chat_demo

    body = {k: v for k, v in chat_demo.items() if k not in ("id", "createdAt", "updatedAt", "referencedWorkflows")}
    saved = client.put(f"{project}/workflows/{wid}", json=body).json()
    assert saved["updatedAt"] > chat_demo["updatedAt"]
    assert {**saved, "updatedAt": chat_demo["updatedAt"]} == chat_demo
    assert list(saved) == list(chat_demo), "key order is kept too"
    assert client.get(f"{project}/workflows/{wid}").json() == saved

    # POSTed as a new workflow (the editor's "save as"): everything but the server fields is kept.
    copy_body = {**body, "name": "Chat demo copy"}
    created = client.post(f"{project}/workflows", json=copy_body).json()
    for key, value in copy_body.items():
        assert created[key] == value, key
    assert created["referencedWorkflows"] == [] and created["id"] != wid


def test_etag_and_if_match(client: TestClient, project: str, blank: Any) -> None:
    created = client.post(f"{project}/workflows", json=blank("w"))
    wid, tag = created.json()["id"], created.headers["etag"]
    assert client.get(f"{project}/workflows/{wid}").headers["etag"] == tag
    ok = client.put(f"{project}/workflows/{wid}", json=blank("w", description="1"), headers={"If-Match": tag})
    assert ok.status_code == 200 and ok.headers["etag"] != tag
    stale = client.put(f"{project}/workflows/{wid}", json=blank("w", description="2"), headers={"If-Match": tag})
    assert stale.status_code == 412
    assert client.get(f"{project}/workflows/{wid}").json()["description"] == "1"
    assert client.put(f"{project}/workflows/{wid}", json=blank("w"), headers={"If-Match": "*"}).status_code == 200


VALID = {"name": "w", "nodes": [], "edges": [], "viewport": {"x": 0, "y": 0, "zoom": 1}}
BAD_BODIES = [
    (b"{oops", 400, "$"),
    (b"[]", 422, "$"),
    (b"{}", 422, "$"),
    (json.dumps({k: v for k, v in VALID.items() if k != "nodes"}).encode(), 422, "$"),
    (json.dumps({k: v for k, v in VALID.items() if k != "viewport"}).encode(), 422, "$"),
    (json.dumps({**VALID, "name": ""}).encode(), 422, "$.name"),
    (json.dumps({**VALID, "name": "  "}).encode(), 422, "$.name"),
    (json.dumps({**VALID, "name": 7}).encode(), 422, "$.name"),
    (json.dumps({**VALID, "nodes": {}}).encode(), 422, "$.nodes"),
    (json.dumps({**VALID, "nodes": [{"id": "n", "type": "core:X"}]}).encode(), 422, "$.nodes[0]"),
    (json.dumps({**VALID, "nodes": [{"id": "n", "type": "core:X", "position": {"x": "1", "y": 0}}]}).encode(), 422, "$.nodes[0].position.x"),
    (json.dumps({**VALID, "nodes": [{"id": "n", "type": "t", "position": {"x": 1, "y": 0}, "inputConnectionOrders": {"k": "e"}}]}).encode(), 422, "$.nodes[0].inputConnectionOrders["),
    (json.dumps({**VALID, "edges": [{"id": "e", "source": "a"}]}).encode(), 422, "$.edges[0]"),
    (json.dumps({**VALID, "viewport": {"x": 0, "y": 0}}).encode(), 422, "$.viewport"),
    (json.dumps({**VALID, "interfaceInputs": []}).encode(), 422, "$.interfaceInputs"),
    (json.dumps({**VALID, "referencedWorkflows": [1]}).encode(), 422, "$.referencedWorkflows[0]"),
    (json.dumps({**VALID, "previewTarget": {"nodeId": "n"}}).encode(), 422, "$.previewTarget"),
    (json.dumps({**VALID, "name": "../evil"}).encode(), 400, "$.name"),
    (json.dumps({**VALID, "name": "a/b"}).encode(), 400, "$.name"),
    (json.dumps({**VALID, "name": "CON"}).encode(), 400, "$.name"),
    (json.dumps({**VALID, "name": "x\u0000y"}).encode(), 400, "$.name"),
    (json.dumps({**VALID, "name": "w" * 201}).encode(), 400, "$.name"),
]


@pytest.mark.parametrize(("body", "status", "path"), BAD_BODIES)
@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_bad_bodies(client: TestClient, project: str, user_dir: Path, method: str, body: bytes, status: int, path: str) -> None:
    existing = client.post(f"{project}/workflows", json=VALID).json()
    url = f"{project}/workflows" if method == "POST" else f"{project}/workflows/{existing['id']}"
    response = client.request(method, url, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    if status == 422 or path != "$":
        assert response.json()["details"][0]["path"].startswith(path)
    assert wf_files(user_dir) == ["w.json"]
    assert client.get(f"{project}/workflows/{existing['id']}").json() == existing


def test_bad_body_ids(client: TestClient, project: str, user_dir: Path) -> None:
    for bad in ["..", "a/b", "x\u0000", "CON", "", "i" * 201]:
        response = client.post(f"{project}/workflows", json={**VALID, "id": bad})
        assert response.status_code == 400, bad
        assert response.json()["details"][0]["path"] == "$.id"
    assert wf_files(user_dir) == []


def test_unknown_workflow_is_404(client: TestClient, project: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        response = client.request(method, f"{project}/workflows/does-not-exist", json=VALID if method == "PUT" else None)
        assert response.status_code == 404
        assert response.json() == {"error": "Workflow with ID 'does-not-exist' not found in project 'Anchor Demo'."}


@pytest.mark.anyio
async def test_parallel_puts_to_one_workflow(kernel: Kernel, blank: Any) -> None:
    """Thirty concurrent saves: each answered 200, the file ends as exactly one of them."""
    app = create_app(kernel)
    async with kernel.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:3233") as http:
            await http.post("/api/projects", json={"name": "Anchor Demo"})
            wid = (await http.post(f"{P}/workflows", json=blank("w"))).json()["id"]
            big_nodes = [{"id": f"n{i}", "type": "core:TextMerge", "position": {"x": i, "y": i}} for i in range(300)]
            statuses: list[int] = []

            async def save(i: int) -> None:
                body = blank("w" if i % 2 else "w renamed", nodes=big_nodes, description=f"save {i}")
                statuses.append((await http.put(f"{P}/workflows/{wid}", json=body)).status_code)

            async with anyio.create_task_group() as tg:
                for i in range(30):
                    tg.start_soon(save, i)
            assert statuses == [200] * 30
            final = (await http.get(f"{P}/workflows/{wid}")).json()
            listed = (await http.get(f"{P}/workflows")).json()
    assert final["description"].startswith("save ") and final["nodes"] == big_nodes
    assert [w["id"] for w in listed] == [wid]
    folder = kernel.config.data_path("projects") / "default_user" / "Anchor Demo" / "workflows"
    files = [p.name for p in folder.iterdir()]
    assert files == [f"{final['name']}.json"], files
    assert json.loads((folder / files[0]).read_text("utf-8")) == final


def test_get_returns_a_copy_not_shared_state(client: TestClient, project: str, blank: Any) -> None:
    saved = client.post(f"{project}/workflows", json=blank("w")).json()
    first = client.get(f"{project}/workflows/{saved['id']}").json()
    mutated = copy.deepcopy(first)
    mutated["nodes"].append({"id": "x"})
    assert client.get(f"{project}/workflows/{saved['id']}").json() == first
