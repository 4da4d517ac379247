"""A stored workflow turned into the payload the editor would send, with interface inputs checked."""

from __future__ import annotations

from typing import Any

import pytest

from comfytavern.engine import WorkflowInvalid
from comfytavern_stored_runs import InterfaceInputError, check_inputs, interface_slots, slot_is_stream, stored_run_payload


def doc(**extra: Any) -> dict[str, Any]:
    return {
        "name": "Doc",
        "nodes": [
            {"id": "gi", "type": "core:GroupInput", "position": {"x": 0, "y": 0}},
            {"id": "m", "type": "core:TextMerge", "position": {"x": 0, "y": 0}, "inputValues": {"separator": "-"},
             "inputConnectionOrders": {"text_inputs": ["e1"]}, "bypassed": True},
            {"id": "go", "type": "core:GroupOutput", "position": {"x": 0, "y": 0}},
        ],
        "edges": [
            {"id": "e1", "source": "gi", "sourceHandle": "s", "target": "m", "targetHandle": "text_inputs__0"},
            {"id": "e2", "source": "m", "sourceHandle": "merged_text", "target": "go", "targetHandle": "out"},
            {"id": "e3", "source": "m", "sourceHandle": "merged_text", "target": "go", "targetHandle": "not_an_output"},
        ],
        "interfaceInputs": {
            "s": {"key": "s", "dataFlowType": "STRING", "config": {"default": "d", "multiline": True}},
            "i": {"key": "i", "dataFlowType": "INTEGER"},
            "f": {"key": "f", "dataFlowType": "FLOAT"},
            "b": {"key": "b", "dataFlowType": "BOOLEAN", "required": True, "config": {"default": False}},
            "o": {"key": "o", "dataFlowType": "OBJECT"},
            "a": {"key": "a", "dataFlowType": "ARRAY"},
            "w": {"key": "w", "dataFlowType": "WILDCARD"},
        },
        "interfaceOutputs": {"out": {"key": "out", "dataFlowType": "STRING", "isStream": True}, "unmapped": {"key": "unmapped"}},
        **extra,
    }


def test_the_payload_is_what_the_editor_sends() -> None:
    payload = stored_run_payload(doc(), project_id="p", workflow_id="w", inputs={"s": "given", "i": 3.0})
    assert [(x.id, x.full_type) for x in payload.nodes] == [("gi", "core:GroupInput"), ("m", "core:TextMerge"), ("go", "core:GroupOutput")]
    merge = payload.nodes[1]
    assert merge.inputs == {"separator": "-"} and merge.input_connection_orders == {"text_inputs": ["e1"]} and merge.bypassed
    assert payload.interface_inputs["s"]["config"] == {"default": "given", "multiline": True}
    assert payload.interface_inputs["i"]["config"] == {"default": 3} and isinstance(payload.interface_inputs["i"]["config"]["default"], int)
    assert "config" not in payload.interface_inputs["f"]
    assert {k: (m.source_node_id, m.source_slot_key) for k, m in payload.output_interface_mappings.items()} == {"out": ("m", "merged_text")}
    assert payload.metadata == {"workflowId": "w", "projectId": "p", "workflowName": "Doc"} and payload.workflow_id == "w"


def test_the_stored_document_is_not_changed() -> None:
    original = doc()
    stored_run_payload(original, project_id="p", workflow_id="w", inputs={"s": "given"})
    assert original["interfaceInputs"]["s"]["config"] == {"default": "d", "multiline": True}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("s", 1, "interface input 's': expected STRING, got number"),
        ("i", 1.5, "interface input 'i': expected INTEGER, got number"),
        ("i", True, "interface input 'i': expected INTEGER, got boolean"),
        ("f", "1", "interface input 'f': expected FLOAT, got string"),
        ("b", 0, "interface input 'b': expected BOOLEAN, got number"),
        ("o", [], "interface input 'o': expected OBJECT, got array"),
        ("a", {}, "interface input 'a': expected ARRAY, got object"),
        ("zz", 1, "unknown interface input 'zz' (the workflow has: a, b, f, i, o, s, w)"),
    ],
)
def test_bad_values_are_reported_by_key(key: str, value: Any, message: str) -> None:
    with pytest.raises(InterfaceInputError) as caught:
        check_inputs(doc(), {key: value})
    assert caught.value.details == [{"path": f"$.inputs.{key}", "key": key, "problem": caught.value.details[0]["problem"], "message": message}]


def test_loose_slots_take_anything_and_null_means_default() -> None:
    assert check_inputs(doc(), {"w": {"x": [1]}, "s": None, "f": 2}) == {"w": {"x": [1]}, "f": 2}


def test_required_inputs_need_a_value_or_a_default() -> None:
    required = doc()
    required["interfaceInputs"]["b"] = {"key": "b", "dataFlowType": "BOOLEAN", "required": True}
    with pytest.raises(InterfaceInputError) as caught:
        check_inputs(required, {"zz": 1, "b": None})
    assert [(d["key"], d["problem"]) for d in caught.value.details] == [("zz", "unknown"), ("b", "missing")]
    assert check_inputs(required, {"b": True}) == {"b": True}


def test_malformed_documents() -> None:
    assert interface_slots({"interfaceInputs": "x", "interfaceOutputs": {"a": 1, "b": {"key": "b"}}}) == ({}, {"b": {"key": "b"}})
    payload = stored_run_payload({"nodes": [], "interfaceInputs": ["x"]}, project_id="p", workflow_id="w", inputs={})
    assert payload.nodes == [] and payload.interface_inputs == {}
    with pytest.raises(WorkflowInvalid):
        stored_run_payload({"nodes": [{"id": "x"}]}, project_id="p", workflow_id="w", inputs={})
    with pytest.raises(WorkflowInvalid):
        stored_run_payload({"nodes": [], "edges": ["x"]}, project_id="p", workflow_id="w", inputs={})


def test_stream_slots_in_both_dialects() -> None:
    assert slot_is_stream({"isStream": True}) and slot_is_stream({"dataFlowType": "STREAM"})
    assert not slot_is_stream({"dataFlowType": "STRING"})
