"""End to end with the real core node pack: the reference transcripts' payloads, same sequences."""

from __future__ import annotations

from typing import Any

import pytest

from comfytavern_testing import client_for

pytest.importorskip("comfytavern_nodes_core")

FINAL = ("complete", "error", "interrupted")


def run(ws: Any, payload: dict[str, Any]) -> list[dict[str, Any]]:
    ws.send_json({"type": "PROMPT_REQUEST", "payload": payload})
    out: list[dict[str, Any]] = []
    while True:
        m = ws.receive_json()
        out.append(m)
        if m["type"] == "SYSTEM_QUEUE_UPDATE" and any(
            x["type"] == "EXECUTION_STATUS_UPDATE" and x["payload"]["status"] in FINAL for x in out
        ):
            return out


def shape(messages: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(m["type"], m["payload"].get("nodeId") or m["payload"].get("sourceNodeId") or m["payload"].get("status"))
            for m in messages]


TRANSCRIPT_2_1 = {
    "nodes": [
        {"id": "node_rand_1", "fullType": "core:RandomNumber", "inputs": {"mode": "固定", "value": 42}},
        {"id": "node_math_1", "fullType": "core:MathOperation", "inputs": {"b": 8}, "configValues": {"operationMode": "add"}},
        {"id": "node_merge_1", "fullType": "core:TextMerge", "inputs": {"separator": " | "},
         "inputConnectionOrders": {"text_inputs": ["edge_rand_merge", "edge_math_merge"]}},
    ],
    "edges": [
        {"id": "edge_rand_math", "sourceNodeId": "node_rand_1", "sourceHandle": "number", "targetNodeId": "node_math_1", "targetHandle": "a"},
        {"id": "edge_rand_merge", "sourceNodeId": "node_rand_1", "sourceHandle": "number", "targetNodeId": "node_merge_1", "targetHandle": "text_inputs__0"},
        {"id": "edge_math_merge", "sourceNodeId": "node_math_1", "sourceHandle": "result", "targetNodeId": "node_merge_1", "targetHandle": "text_inputs__1"},
    ],
    "interfaceInputs": {},
    "interfaceOutputs": {},
    "outputInterfaceMappings": {},
    "metadata": {"internalId": "anchor-tab-1", "workflowId": "wf-anchor", "workflowName": "Random plus Eight", "projectId": "Anchor Demo"},
}

TRANSCRIPT_2_2 = {
    "nodes": [
        {"id": "n_rand", "fullType": "core:RandomNumber", "inputs": {"value": 7}},
        {"id": "n_math", "fullType": "core:MathOperation", "inputs": {"b": 3}, "configValues": {"operationMode": "multiply"}},
        {"id": "n_out", "fullType": "core:GroupOutput"},
    ],
    "edges": [
        {"id": "e1", "sourceNodeId": "n_rand", "sourceHandle": "number", "targetNodeId": "n_math", "targetHandle": "a"},
        {"id": "e2", "sourceNodeId": "n_math", "sourceHandle": "result", "targetNodeId": "n_out", "targetHandle": "output_1"},
    ],
    "interfaceInputs": {},
    "interfaceOutputs": {"output_1": {"key": "output_1", "displayName": "Product", "dataFlowType": "FLOAT"}},
    "outputInterfaceMappings": {"output_1": {"sourceNodeId": "n_math", "sourceSlotKey": "result"}},
}


def test_reference_transcripts_with_core_nodes(kernel_factory: Any) -> None:
    with client_for(kernel_factory(enabled=["core"])) as client, client.websocket_connect("/ws?user=alice") as ws:
        first = run(ws, TRANSCRIPT_2_1)
        second = run(ws, TRANSCRIPT_2_2)
    per_node = [("NODE_EXECUTING", None), ("NODE_COMPLETE", None), ("NODE_YIELD", None)]
    assert shape(first) == [
        ("PROMPT_ACCEPTED_RESPONSE", None),
        ("EXECUTION_STATUS_UPDATE", "running"),
        *[(t, "node_rand_1") for t, _ in per_node],
        *[(t, "node_math_1") for t, _ in per_node],
        *[(t, "node_merge_1") for t, _ in per_node],
        ("EXECUTION_STATUS_UPDATE", "complete"),
        ("SYSTEM_QUEUE_UPDATE", None),
    ]
    outputs = {m["payload"]["nodeId"]: m["payload"]["output"] for m in first if m["type"] == "NODE_COMPLETE"}
    assert outputs == {"node_rand_1": {"number": 42}, "node_math_1": {"result": 50}, "node_merge_1": {"merged_text": "42 | 50"}}
    assert shape(second)[-4:] == [
        ("NODE_YIELD", "n_out"),
        ("NODE_COMPLETE", "__WORKFLOW_INTERFACE_OUTPUTS__"),
        ("EXECUTION_STATUS_UPDATE", "complete"),
        ("SYSTEM_QUEUE_UPDATE", None),
    ]
    assert second[-3]["payload"]["output"] == {"output_1": 21}


def test_editor_default_workflow_with_group_input_and_output(kernel_factory: Any) -> None:
    """The editor's shape: GroupInput feeds a node, GroupOutput is mapped to an interface output."""
    payload = {
        "nodes": [
            {"id": "default-group-input", "fullType": "core:GroupInput"},
            {"id": "default-group-output", "fullType": "core:GroupOutput"},
            {"id": "merge", "fullType": "core:TextMerge", "inputs": {"text_inputs": [None]},
             "inputConnectionOrders": {"text_inputs": ["e_in"]}},
        ],
        "edges": [
            {"id": "e_in", "sourceNodeId": "default-group-input", "sourceHandle": "input_0", "targetNodeId": "merge", "targetHandle": "text_inputs__0"},
            {"id": "e_out", "sourceNodeId": "merge", "sourceHandle": "merged_text", "targetNodeId": "default-group-output", "targetHandle": "output_0"},
        ],
        "interfaceInputs": {"input_0": {"key": "input_0", "dataFlowType": "STRING", "config": {"default": "hello from anchor"}}},
        "interfaceOutputs": {"output_0": {"key": "output_0", "displayName": "合并文本", "dataFlowType": "STRING"}},
        "outputInterfaceMappings": {"output_0": {"sourceNodeId": "merge", "sourceSlotKey": "merged_text"}},
        "metadata": {"internalId": "tab", "workflowId": "anchor-wf", "workflowName": "anchor-wf", "projectId": "P", "version": "0.0.7"},
    }
    with client_for(kernel_factory(enabled=["core"])) as client, client.websocket_connect("/ws?user=alice") as ws:
        messages = run(ws, payload)
    statuses = [m["payload"]["status"] for m in messages if m["type"] == "EXECUTION_STATUS_UPDATE"]
    assert statuses == ["running", "complete"], messages
    interface = [m for m in messages if m["type"] == "NODE_COMPLETE" and m["payload"]["nodeId"] == "__WORKFLOW_INTERFACE_OUTPUTS__"]
    assert interface[0]["payload"]["output"] == {"output_0": "hello from anchor"}
    group_nodes = [m["payload"]["output"] for m in messages if m["type"] == "NODE_COMPLETE"
                   and m["payload"]["nodeId"] == "default-group-output"]
    assert group_nodes == [{}]
