"""Server-side NodeGroup expansion (read through the projects storage interface)."""

from __future__ import annotations

from typing import Any

import pytest

from comfytavern.auth import Principal
from comfytavern.engine import Execution, WorkflowInvalid, convert_payload, expand_groups, prepare
from comfytavern.nodes.registry import NodeRegistry

pytestmark = pytest.mark.anyio


class Projects:
    """A tiny in-test projects store: ``{(project, workflow): WorkflowObject}``."""

    def __init__(self, workflows: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.workflows = workflows
        self.calls: list[tuple[str, str, str]] = []

    async def get_workflow(self, user_id: str, project_id: str, workflow_id: str) -> dict[str, Any] | None:
        self.calls.append((user_id, project_id, workflow_id))
        return self.workflows.get((project_id, workflow_id))


# Inner workflow "plus": interface input_0 -> Add(b=10) -> interface output_0; output_1 passes input_0 through.
PLUS = {
    "name": "plus",
    "nodes": [
        {"id": "gi", "type": "core:GroupInput", "position": {"x": 0, "y": 0}},
        {"id": "add", "type": "t:Add", "position": {"x": 0, "y": 0}, "inputValues": {"b": 10}},
        {"id": "go", "type": "core:GroupOutput", "position": {"x": 0, "y": 0}},
    ],
    "edges": [
        {"id": "i1", "source": "gi", "sourceHandle": "input_0", "target": "add", "targetHandle": "a"},
        {"id": "o1", "source": "add", "sourceHandle": "result", "target": "go", "targetHandle": "output_0"},
        {"id": "o2", "source": "gi", "sourceHandle": "input_0", "target": "go", "targetHandle": "output_1"},
    ],
    "interfaceInputs": {"input_0": {"key": "input_0", "dataFlowType": "FLOAT", "config": {"default": 1}}},
    "interfaceOutputs": {"output_0": {"key": "output_0", "dataFlowType": "FLOAT"}},
}
# "twice" uses "plus" two times in a row.
TWICE = {
    "name": "twice",
    "nodes": [
        {"id": "gi", "type": "core:GroupInput"},
        {"id": "g1", "type": "core:NodeGroup", "configValues": {"referencedWorkflowId": "plus"}},
        {"id": "g2", "type": "core:NodeGroup", "configValues": {"referencedWorkflowId": "plus"}},
        {"id": "go", "type": "core:GroupOutput"},
    ],
    "edges": [
        {"id": "a", "source": "gi", "sourceHandle": "input_0", "target": "g1", "targetHandle": "input_0"},
        {"id": "b", "source": "g1", "sourceHandle": "output_0", "target": "g2", "targetHandle": "input_0"},
        {"id": "c", "source": "g2", "sourceHandle": "output_0", "target": "go", "targetHandle": "output_0"},
    ],
}


def group(id_: str, ref: str, **inputs: Any) -> dict[str, Any]:
    return {"id": id_, "fullType": "core:NodeGroup", "configValues": {"referencedWorkflowId": ref}, "inputs": inputs}


async def run(raw: dict[str, Any], projects: Projects, registry: NodeRegistry) -> dict[str, Any]:
    payload = await expand_groups(convert_payload(raw), projects, user_id="alice", project_id="proj")
    execution = Execution(prepare(payload, registry), prompt_id="p", user=Principal(id="alice", username="a"),
                          emit=lambda t, p: None)
    await execution.run()
    assert not execution.failed, execution.errors
    return {"outputs": execution.node_outputs(), "interface": execution.interface_values, "payload": payload}


async def test_group_used_twice_gets_prefixed_ids(registry: NodeRegistry, mk: Any) -> None:
    projects = Projects({("proj", "plus"): PLUS, ("proj", "twice"): TWICE})
    raw = {
        "nodes": [mk.node("c", "Const", inputs={"value": 5}), group("G", "twice"), group("H", "plus", input_0=100),
                  mk.node("k", "Const", inputs={"value": 7}), group("P", "plus"),
                  mk.node("sum", "Sum", inputConnectionOrders={"values": ["eg", "eh"]})],
        "edges": [
            mk.edge("c", "value", "G", "input_0"),
            mk.edge("G", "output_0", "sum", "values__0", id="eg"),
            mk.edge("H", "output_0", "sum", "values__1", id="eh"),
            mk.edge("k", "value", "P", "input_0"),
        ],
        "outputInterfaceMappings": {"out": {"sourceNodeId": "P", "sourceSlotKey": "output_1"}},
        "metadata": {"projectId": "proj"},
    }
    result = await run(raw, projects, registry)
    out = result["outputs"]
    assert out["G/g1/add"] == {"result": 15}
    assert out["G/g2/add"] == {"result": 25}
    assert out["H/add"] == {"result": 110}  # the group instance's own input value
    assert out["sum"] == {"result": 135.0}
    assert result["interface"] == {"out": 7}  # GroupInput -> GroupOutput pass-through to the outer source
    assert all(c[0] == "alice" and c[1] == "proj" for c in projects.calls)


async def test_interface_default_when_nothing_feeds_the_group(registry: NodeRegistry, mk: Any) -> None:
    projects = Projects({("proj", "plus"): PLUS})
    result = await run({"nodes": [group("G", "plus")], "edges": []}, projects, registry)
    assert result["outputs"]["G/add"] == {"result": 11}


@pytest.mark.parametrize(
    ("workflows", "metadata", "fragment"),
    [
        ({}, {"projectId": "proj"}, "does not exist"),
        ({("proj", "plus"): {**PLUS, "nodes": [*PLUS["nodes"], {"id": "self", "type": "core:NodeGroup",
                                                               "configValues": {"referencedWorkflowId": "plus"}}]}},
         {"projectId": "proj"}, "reference cycle: plus -> plus"),
        ({("proj", "plus"): PLUS}, {}, "metadata.projectId"),
        ({("proj", "plus"): {"nodes": [{"id": 1}]}}, {"projectId": "proj"}, "malformed"),
    ],
)
async def test_group_errors(workflows: dict[Any, Any], metadata: dict[str, Any], fragment: str) -> None:
    payload = convert_payload({"nodes": [group("G", "plus")], "metadata": metadata})
    with pytest.raises(WorkflowInvalid) as info:
        await expand_groups(payload, Projects(workflows), user_id="alice", project_id=metadata.get("projectId"))
    assert fragment in info.value.issues[0].message
    assert info.value.issues[0].type == "node_group_error"


async def test_group_without_storage_is_an_error() -> None:
    payload = convert_payload({"nodes": [group("G", "plus")]})
    with pytest.raises(WorkflowInvalid, match="no projects storage"):
        await expand_groups(payload, None, user_id="a", project_id="p")
