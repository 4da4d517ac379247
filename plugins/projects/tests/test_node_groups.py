"""The node-group sync rule (docs/projects.md): saving a workflow brings the workflows that embed
it as a NodeGroup in line with its interface."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from comfytavern.storage.projects import group_references
from comfytavern_projects.groups import apply_group_interface, normalise_references

P = "/api/projects/groups"
SLOT = {"dataFlowType": "STRING"}


def iface(*keys: str) -> dict[str, Any]:
    return {k: {"key": k, "displayName": k, **SLOT} for k in keys}


def group_node(node_id: str, target: str, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "core:NodeGroup", "position": {"x": 0, "y": 0},
            "configValues": {"referencedWorkflowId": target}, **extra}


def plain(node_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "core:TextMerge", "position": {"x": 0, "y": 0}, **extra}


def edge(eid: str, source: str, sh: str, target: str, th: str) -> dict[str, Any]:
    return {"id": eid, "source": source, "sourceHandle": sh, "target": target, "targetHandle": th}


def body(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "nodes": [], "edges": [], "viewport": {"x": 0, "y": 0, "zoom": 1}, **extra}


@pytest.fixture
def setup(client: TestClient) -> dict[str, Any]:
    client.post("/api/projects", json={"name": "groups"})
    group = client.post(f"{P}/workflows", json=body("分组_abc123", creationMethod="group",
                                                    interfaceInputs=iface("in_a", "in_b"),
                                                    interfaceOutputs=iface("out_x", "out_y"))).json()
    other = client.post(f"{P}/workflows", json=body("other group", interfaceInputs=iface("in_b"))).json()
    user = client.post(f"{P}/workflows", json=body(
        "user",
        nodes=[
            plain("src"),
            group_node("grp", group["id"], data={"groupInterface": {"inputs": group["interfaceInputs"],
                                                                     "outputs": group["interfaceOutputs"]}},
                       inputValues={"in_b": "preset", "in_a": "kept"}),
            group_node("grp2", other["id"]),
            plain("t", inputConnectionOrders={"text_inputs": ["e_out", "e_other", "e_y"]}),
        ],
        edges=[
            edge("e_a", "src", "o", "grp", "in_a"),
            edge("e_b", "src", "o", "grp", "in_b"),
            edge("e_b_multi", "src", "o", "grp", "in_b__1"),
            edge("e_out", "grp", "out_x", "t", "text_inputs__0"),
            edge("e_y", "grp", "out_y", "t", "text_inputs__2"),
            edge("e_other", "grp2", "in_b", "t", "text_inputs__1"),
            edge("e_grp2", "src", "o", "grp2", "in_b"),
        ],
    )).json()
    return {"group": group, "other": other, "user": user}


def test_references_are_derived_from_nodes(client: TestClient, setup: dict[str, Any]) -> None:
    group, other, user = setup["group"], setup["other"], setup["user"]
    # The editor never sends referencedWorkflows on save; the server derives it.
    assert user["referencedWorkflows"] == [group["id"], other["id"]]
    listed = {w["id"]: w for w in client.get(f"{P}/workflows").json()}
    assert listed[user["id"]]["referencedWorkflows"] == [group["id"], other["id"]]
    assert listed[group["id"]]["creationMethod"] == "group"  # the editor's "未使用" marker needs it back
    # A stale list sent by a client is corrected; a consistent one keeps its order.
    fixed = client.put(f"{P}/workflows/{user['id']}", json={**user, "referencedWorkflows": ["ghost"]}).json()
    assert fixed["referencedWorkflows"] == [group["id"], other["id"]]
    kept = client.put(f"{P}/workflows/{user['id']}", json={**user, "referencedWorkflows": [other["id"], group["id"]]}).json()
    assert kept["referencedWorkflows"] == [other["id"], group["id"]]


def test_unchanged_interface_leaves_users_untouched(client: TestClient, setup: dict[str, Any], user_dir: Path) -> None:
    group, user = setup["group"], setup["user"]
    path = user_dir / "groups" / "workflows" / "user.json"
    before = path.read_bytes()
    assert client.put(f"{P}/workflows/{group['id']}", json={**group, "description": "only text"}).status_code == 200
    assert path.read_bytes() == before
    assert client.get(f"{P}/workflows/{user['id']}").json() == user


def test_interface_change_syncs_every_user(client: TestClient, setup: dict[str, Any]) -> None:
    group, other, user = setup["group"], setup["other"], setup["user"]
    new_in, new_out = iface("in_a", "in_c"), iface("out_y")
    saved = client.put(f"{P}/workflows/{group['id']}", json={**group, "interfaceInputs": new_in, "interfaceOutputs": new_out})
    assert saved.status_code == 200

    synced = client.get(f"{P}/workflows/{user['id']}").json()
    assert [e["id"] for e in synced["edges"]] == ["e_a", "e_y", "e_other", "e_grp2"]
    nodes = {n["id"]: n for n in synced["nodes"]}
    assert nodes["grp"]["data"]["groupInterface"] == {"inputs": new_in, "outputs": new_out}
    assert nodes["grp"]["inputValues"] == {"in_a": "kept"}
    assert nodes["t"]["inputConnectionOrders"] == {"text_inputs": ["e_other", "e_y"]}
    assert "data" not in nodes["grp2"]  # other groups are not touched
    assert synced["referencedWorkflows"] == [group["id"], other["id"]]
    assert synced["updatedAt"] > user["updatedAt"]
    # Idempotent: saving again changes nothing more.
    client.put(f"{P}/workflows/{group['id']}", json={**group, "interfaceInputs": new_in, "interfaceOutputs": new_out})
    assert client.get(f"{P}/workflows/{user['id']}").json() == synced


def test_foreign_file_with_stale_references_is_repaired_on_group_save(
    client: TestClient, setup: dict[str, Any], user_dir: Path
) -> None:
    group = setup["group"]
    stale = body("hand", id="hand-made", nodes=[group_node("g", group["id"])], referencedWorkflows=[])
    (user_dir / "groups" / "workflows" / "hand.json").write_text(json.dumps(stale), "utf-8")
    client.put(f"{P}/workflows/{group['id']}", json=group)
    assert client.get(f"{P}/workflows/hand-made").json()["referencedWorkflows"] == [group["id"]]


def test_deleting_a_group_keeps_its_users(client: TestClient, setup: dict[str, Any]) -> None:
    group, user = setup["group"], setup["user"]
    assert client.delete(f"{P}/workflows/{group['id']}").status_code == 204
    assert client.get(f"{P}/workflows/{user['id']}").json() == user


def test_legacy_data_reference_and_pure_rule() -> None:
    doc = body("w", id="w", nodes=[{"id": "g", "type": "core:NodeGroup", "position": {"x": 0, "y": 0},
                                    "data": {"referencedWorkflowId": "G", "groupInterface": {}}}],
               edges=[edge("e", "g", "gone", "x", "in")])
    assert group_references(doc) == ["G"]
    out = apply_group_interface(doc, "G", {"i": {}}, {"o": {}}, now="2030-01-01T00:00:00.000Z")
    assert out is not doc and out["edges"] == [] and out["updatedAt"] == "2030-01-01T00:00:00.000Z"
    assert out["nodes"][0]["data"]["groupInterface"] == {"inputs": {"i": {}}, "outputs": {"o": {}}}
    assert doc["edges"] != [], "the input is not mutated"
    assert apply_group_interface(out, "G", {"i": {}}, {"o": {}}, now="later") is out
    normalise_references(doc)
    assert doc["referencedWorkflows"] == ["G"]
