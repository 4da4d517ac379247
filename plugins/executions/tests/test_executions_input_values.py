"""Bad input values are refused before anything runs, over HTTP (422) and the WebSocket (a failed
run with NODE_ERROR and the issues); the editor's own payloads still run."""

from __future__ import annotations

from typing import Any

import pytest

from comfytavern_testing import client_for

pytest.importorskip("comfytavern_nodes_core")

ALICE = {"X-User": "alice"}
FINAL = ("complete", "error", "interrupted")


def widgets(**inputs: Any) -> dict[str, Any]:
    return {"nodes": [{"id": "cvSihlipbK", "fullType": "core:TestWidgets", "inputs": inputs}],
            "metadata": {"workflowId": "wf", "internalId": "tab"}}


def ws_run(ws: Any, payload: dict[str, Any]) -> list[dict[str, Any]]:
    ws.send_json({"type": "PROMPT_REQUEST", "payload": payload})
    out: list[dict[str, Any]] = []
    while True:
        message = ws.receive_json()
        out.append(message)
        if message["type"] == "SYSTEM_QUEUE_UPDATE" and any(
            m["type"] == "EXECUTION_STATUS_UPDATE" and m["payload"]["status"] in FINAL for m in out
        ):
            return out


@pytest.mark.parametrize(
    ("value", "rule", "expected"),
    [(500, "max", 100), (-3, "min", 0), ("notanint", "type", "INTEGER"), (1.5, "type", "INTEGER")],
)
def test_http_refuses_a_bad_value_with_422_before_running(kernel_factory: Any, value: Any, rule: str, expected: Any) -> None:
    with client_for(kernel_factory(enabled=["core"])) as client:
        response = client.post("/api/prompt", json=widgets(int_input=value), headers=ALICE)
        assert response.status_code == 422, response.text
        body = response.json()
        (issue,) = body["details"]["errors"]
        assert issue == {
            "type": "invalid_input_value",
            "message": issue["message"],
            "nodeId": "cvSihlipbK",
            "input": "int_input",
            "rule": rule,
            "value": value,
            "expected": expected,
        }
        assert "cvSihlipbK" in body["error"] and "int_input" in body["error"]
        assert body["details"]["nodeErrors"]["cvSihlipbK"] == [issue]
        # nothing ran and nothing was recorded
        assert client.get("/api/history", headers=ALICE).json()["total"] == 0


def test_websocket_reports_a_structured_validation_error_and_runs_nothing(kernel_factory: Any) -> None:
    with client_for(kernel_factory(enabled=["core"])) as client, client.websocket_connect("/ws?user=alice") as ws:
        messages = ws_run(ws, widgets(int_input=500, combo_select="选项Z"))
    types = [m["type"] for m in messages]
    assert types == ["PROMPT_ACCEPTED_RESPONSE", "NODE_ERROR", "EXECUTION_STATUS_UPDATE", "SYSTEM_QUEUE_UPDATE"]
    node_error = messages[1]["payload"]
    assert node_error["nodeId"] == "cvSihlipbK"
    assert "int_input" in node_error["errorDetails"] and "combo_select" in node_error["errorDetails"]
    status = messages[2]["payload"]
    assert status["status"] == "error"
    rules = {(i["input"], i["rule"], str(i["value"])) for i in status["errorInfo"]["errors"]}
    assert rules == {("int_input", "max", "500"), ("combo_select", "options", "选项Z")}


def test_the_editors_widget_values_run(kernel_factory: Any) -> None:
    """What the editor sends for TestWidgets (only changed values; numbers as numbers or, from
    older clients, as strings; combo values; the JSON widget's object) runs and is echoed."""
    payload = widgets(
        string_input="hello from anchor", int_input="42", float_input=0.25, boolean_toggle=False,
        combo_select="选项B", json_input={"k": [1, 2]}, int_with_suggestions=1024,
        float_with_suggestions="12.5", string_with_suggestions="自由文本", button_trigger=None,
    )
    with client_for(kernel_factory(enabled=["core"])) as client:
        response = client.post("/api/prompt?wait=10", json=payload, headers=ALICE)
    assert response.status_code == 200, response.text
    record = response.json()
    assert record["status"] == "complete", record
    out = record["outputs"]["cvSihlipbK"]
    assert out["int_output"] == 42 and type(out["int_output"]) is int
    assert out["float_with_suggestions_output"] == 12.5 and out["combo_output"] == "选项B"
    assert out["json_output"] == {"k": [1, 2]} and out["boolean_output"] is False


def test_editor_payload_with_connected_widgets_and_multi_inputs_runs(kernel_factory: Any) -> None:
    """The frontend contract's observed run (A5): a connected multi input sent as [null], top-level
    GroupInput/GroupOutput, a widget converted to a connected input that still carries a stale value."""
    payload = {
        "nodes": [
            {"id": "default-group-input", "fullType": "core:GroupInput"},
            {"id": "default-group-output", "fullType": "core:GroupOutput"},
            {"id": "cvSihlipbK", "fullType": "core:TestWidgets", "inputs": {"string_input": "hello from anchor"}},
            {"id": "rand", "fullType": "core:RandomNumber", "inputs": {"mode": "随机", "value": 7}},
            {"id": "math", "fullType": "core:MathOperation", "inputs": {"a": "not used: connected", "b": "2"},
             "configValues": {"operationMode": "multiply"}},
            {"id": "5Eck2c7UdO", "fullType": "core:TextMerge", "inputs": {"text_inputs": [None]},
             "inputConnectionOrders": {"text_inputs": ["bxYGPP-5sM"]}},
        ],
        "edges": [
            {"id": "bxYGPP-5sM", "sourceNodeId": "cvSihlipbK", "targetNodeId": "5Eck2c7UdO",
             "sourceHandle": "string_output", "targetHandle": "text_inputs__0"},
            {"id": "r-m", "sourceNodeId": "rand", "targetNodeId": "math", "sourceHandle": "number", "targetHandle": "a"},
            {"id": "d0qENRY0c1", "sourceNodeId": "5Eck2c7UdO", "targetNodeId": "default-group-output",
             "sourceHandle": "merged_text", "targetHandle": "output_0"},
        ],
        "outputInterfaceMappings": {"output_0": {"sourceNodeId": "5Eck2c7UdO", "sourceSlotKey": "merged_text"}},
        "interfaceInputs": {"input_0": {"key": "input_0", "displayName": "*", "dataFlowType": "CONVERTIBLE_ANY", "allowDynamicType": True}},
        "interfaceOutputs": {"output_0": {"key": "output_0", "displayName": "合并文本", "dataFlowType": "STRING"}},
        "metadata": {"internalId": "5a4e56f8", "workflowId": "anchor-wf", "workflowName": "anchor-wf", "projectId": "P", "version": "0.0.7"},
    }
    with client_for(kernel_factory(enabled=["core"])) as client, client.websocket_connect("/ws?user=alice") as ws:
        messages = ws_run(ws, payload)
    statuses = [m["payload"]["status"] for m in messages if m["type"] == "EXECUTION_STATUS_UPDATE"]
    assert statuses == ["running", "complete"], [m for m in messages if m["type"] == "NODE_ERROR"]
    done = {m["payload"]["nodeId"]: m["payload"]["output"] for m in messages if m["type"] == "NODE_COMPLETE"}
    assert done["math"] == {"result": 14}
    assert done["__WORKFLOW_INTERFACE_OUTPUTS__"] == {"output_0": "hello from anchor"}


def test_preview_runs_unwrap_then_check_values(kernel_factory: Any) -> None:
    """Preview runs send raw widget objects; their value is checked like any other."""
    good = {"nodes": [{"id": "w", "fullType": "core:TestWidgets",
                       "inputs": {"int_input": {"value": 5, "dataFlowType": "INTEGER", "description": "整数"}}}],
            "clientId": "temp-preview-client-id", "metadata": {"isPreviewRun": True, "promptId": "abc"}}
    bad = {**good, "nodes": [{"id": "w", "fullType": "core:TestWidgets",
                              "inputs": {"int_input": {"value": 101, "dataFlowType": "INTEGER"}}}]}
    with client_for(kernel_factory(enabled=["core"])) as client, client.websocket_connect("/ws?user=alice") as ws:
        ok = ws_run(ws, good)
        refused = ws_run(ws, bad)
    assert [m["payload"]["status"] for m in ok if m["type"] == "EXECUTION_STATUS_UPDATE"][-1] == "complete"
    final = [m["payload"] for m in refused if m["type"] == "EXECUTION_STATUS_UPDATE"][-1]
    assert final["status"] == "error" and final["errorInfo"]["errors"][0]["rule"] == "max"
    assert not any(m["type"] == "NODE_EXECUTING" for m in refused)
