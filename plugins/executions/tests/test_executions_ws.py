"""The WebSocket /ws: the original's message sequences, bad frames, watching and privacy."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from starlette.websockets import WebSocketDisconnect

from comfytavern.auth import Principal
from comfytavern.events import EventHub, HubEvent
from comfytavern.services import Services
from comfytavern_executions.settings import ExecutionsSettings
from comfytavern_executions.ws import Connection
from comfytavern_testing import client_for

FINAL = ("complete", "error", "interrupted")


def run_messages(ws: Any) -> list[dict[str, Any]]:
    """Every frame of one run, through the broadcast SYSTEM_QUEUE_UPDATE that follows it."""
    out: list[dict[str, Any]] = []
    done = False
    while True:
        message = ws.receive_json()
        out.append(message)
        if message["type"] == "EXECUTION_STATUS_UPDATE" and message["payload"]["status"] in FINAL:
            done = True
        if done and message["type"] == "SYSTEM_QUEUE_UPDATE":
            return out
        if message["type"] == "error":
            return out


def shape(messages: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """(type, nodeId or status) per frame, to compare with the reference transcripts."""
    out = []
    for m in messages:
        p = m["payload"]
        out.append((m["type"], p.get("nodeId") or p.get("sourceNodeId") or p.get("status")))
    return out


def submit(ws: Any, payload: dict[str, Any]) -> list[dict[str, Any]]:
    ws.send_json({"type": "PROMPT_REQUEST", "payload": payload})
    return run_messages(ws)


def edge(src: str, out: str, tgt: str, inp: str, id: str) -> dict[str, Any]:
    return {"id": id, "sourceNodeId": src, "sourceHandle": out, "targetNodeId": tgt, "targetHandle": inp}


def test_normal_run_matches_the_reference_sequence(kernel_factory: Any) -> None:
    payload = {
        "nodes": [
            {"id": "r", "fullType": "t:Const", "inputs": {"value": 42}},
            {"id": "m", "fullType": "t:Add", "inputs": {"b": 8}},
            {"id": "j", "fullType": "t:Concat", "inputs": {"sep": " | "}, "inputConnectionOrders": {"parts": ["e2", "e3"]}},
        ],
        "edges": [edge("r", "value", "m", "a", "e1"), edge("r", "value", "j", "parts__0", "e2"), edge("m", "result", "j", "parts__1", "e3")],
        "interfaceInputs": {},
        "interfaceOutputs": {},
        "outputInterfaceMappings": {},
        "metadata": {"internalId": "tab-1", "workflowId": "wf", "workflowName": "w", "projectId": "p"},
    }
    with client_for(kernel_factory()) as client, client.websocket_connect("/ws?user=alice") as ws:
        messages = submit(ws, payload)
    prompt_id = messages[0]["payload"]["promptId"]
    assert messages[0] == {"type": "PROMPT_ACCEPTED_RESPONSE", "payload": {"promptId": prompt_id}}
    assert shape(messages) == [
        ("PROMPT_ACCEPTED_RESPONSE", None),
        ("EXECUTION_STATUS_UPDATE", "running"),
        ("NODE_EXECUTING", "r"), ("NODE_COMPLETE", "r"), ("NODE_YIELD", "r"),
        ("NODE_EXECUTING", "m"), ("NODE_COMPLETE", "m"), ("NODE_YIELD", "m"),
        ("NODE_EXECUTING", "j"), ("NODE_COMPLETE", "j"), ("NODE_YIELD", "j"),
        ("EXECUTION_STATUS_UPDATE", "complete"),
        ("SYSTEM_QUEUE_UPDATE", None),
    ]
    assert all(m["payload"]["promptId"] == prompt_id for m in messages[:-1])
    assert messages[9]["payload"]["output"] == {"text": "42 | 50"}
    assert messages[4]["payload"] == {
        "promptId": prompt_id,
        "sourceNodeId": "r",
        "yieldedContent": {"type": "finish_reason_chunk", "content": "Stream ended"},
        "isLastChunk": True,
    }
    assert messages[-1]["payload"] == {"runningExecutions": 0, "pendingExecutions": 0}


def test_interface_outputs_come_after_the_last_node_and_before_the_status(kernel_factory: Any) -> None:
    payload = {
        "nodes": [
            {"id": "n_rand", "fullType": "t:Const", "inputs": {"value": 7}},
            {"id": "n_math", "fullType": "t:Mul", "inputs": {"b": 3}},
            {"id": "n_out", "fullType": "t:GroupOutput"},
        ],
        "edges": [edge("n_rand", "value", "n_math", "a", "e1"), edge("n_math", "result", "n_out", "output_1", "e2")],
        "interfaceOutputs": {"output_1": {"key": "output_1", "displayName": "Product", "dataFlowType": "FLOAT"}},
        "outputInterfaceMappings": {"output_1": {"sourceNodeId": "n_math", "sourceSlotKey": "result"}},
    }
    with client_for(kernel_factory()) as client, client.websocket_connect("/ws?user=alice") as ws:
        messages = submit(ws, payload)
    assert shape(messages)[-4:] == [
        ("NODE_YIELD", "n_out"),
        ("NODE_COMPLETE", "__WORKFLOW_INTERFACE_OUTPUTS__"),
        ("EXECUTION_STATUS_UPDATE", "complete"),
        ("SYSTEM_QUEUE_UPDATE", None),
    ]
    assert messages[-3]["payload"]["output"] == {"output_1": 21.0}
    assert messages[-5]["payload"]["output"] == {}  # GroupOutput outputs {}


def test_error_paths(kernel_factory: Any) -> None:
    with client_for(kernel_factory()) as client, client.websocket_connect("/ws?user=alice") as ws:
        # Unknown node type: rejected before running, reported on the node.
        messages = submit(ws, {"nodes": [{"id": "n1", "fullType": "core:DoesNotExist"}, {"id": "n2", "fullType": "t:Add"}],
                               "edges": [edge("n1", "out", "n2", "a", "e1")]})
        assert shape(messages) == [
            ("PROMPT_ACCEPTED_RESPONSE", None),
            ("NODE_ERROR", "n1"),
            ("EXECUTION_STATUS_UPDATE", "error"),
            ("SYSTEM_QUEUE_UPDATE", None),
        ]
        assert messages[1]["payload"]["errorDetails"] == "Node type core:DoesNotExist not found or not executable."
        assert messages[2]["payload"]["errorInfo"]["nodeErrors"]["n1"][0]["type"] == "unknown_node_type"

        # Cycle: the message names the nodes on the cycle.
        cycle = {"nodes": [{"id": "m1", "fullType": "t:Add"}, {"id": "m2", "fullType": "t:Add"}],
                 "edges": [edge("m1", "result", "m2", "a", "e1"), edge("m2", "result", "m1", "a", "e2")]}
        messages = submit(ws, cycle)
        assert shape(messages) == [
            ("PROMPT_ACCEPTED_RESPONSE", None),
            ("NODE_ERROR", "m1"),
            ("NODE_ERROR", "m2"),
            ("EXECUTION_STATUS_UPDATE", "error"),
            ("SYSTEM_QUEUE_UPDATE", None),
        ]
        status = messages[3]["payload"]
        assert status["status"] == "error"
        assert status["errorInfo"]["message"] == "Workflow validation failed: Workflow contains a cycle involving nodes: m1, m2"

        # Runtime failure: the independent branch still runs, the dependant is reported skipped.
        failing = {"nodes": [{"id": "d1", "fullType": "t:Fail"}, {"id": "m2", "fullType": "t:Add"},
                             {"id": "r3", "fullType": "t:Const", "inputs": {"value": 5}}],
                   "edges": [edge("d1", "result", "m2", "a", "e1")]}
        messages = submit(ws, failing)
        assert shape(messages) == [
            ("PROMPT_ACCEPTED_RESPONSE", None),
            ("EXECUTION_STATUS_UPDATE", "running"),
            ("NODE_EXECUTING", "d1"), ("NODE_ERROR", "d1"), ("NODE_SKIPPED", "m2"),
            ("NODE_EXECUTING", "r3"), ("NODE_COMPLETE", "r3"), ("NODE_YIELD", "r3"),
            ("EXECUTION_STATUS_UPDATE", "error"),
            ("SYSTEM_QUEUE_UPDATE", None),
        ]
        assert messages[3]["payload"]["errorDetails"] == "boom"
        assert messages[4]["payload"]["reason"] == "upstream node d1 failed"
        assert messages[8]["payload"]["errorInfo"]["message"] == "One or more nodes failed during execution."

        # Bypassed node: NODE_BYPASSED instead of EXECUTING/COMPLETE, and the value passes through.
        bypass = {"nodes": [{"id": "r1", "fullType": "t:Const", "inputs": {"value": 9}},
                            {"id": "m1", "fullType": "t:Add", "inputs": {"b": 1}, "bypassed": True},
                            {"id": "m2", "fullType": "t:Add", "inputs": {"b": 2}}],
                  "edges": [edge("r1", "value", "m1", "a", "e1"), edge("m1", "result", "m2", "a", "e2")]}
        messages = submit(ws, bypass)
        assert ("NODE_BYPASSED", "m1") in shape(messages)
        assert messages[5]["payload"]["pseudoOutputs"] == {"result": 9}
        assert [m for m in messages if m["type"] == "NODE_COMPLETE"][-1]["payload"]["output"] == {"result": 11}

        # Empty workflow completes.
        assert shape(submit(ws, {"nodes": [], "edges": []})) == [
            ("PROMPT_ACCEPTED_RESPONSE", None),
            ("EXECUTION_STATUS_UPDATE", "running"),
            ("EXECUTION_STATUS_UPDATE", "complete"),
            ("SYSTEM_QUEUE_UPDATE", None),
        ]


def test_bad_frames_get_an_error_and_the_socket_stays_open(kernel_factory: Any) -> None:
    with client_for(kernel_factory()) as client, client.websocket_connect("/ws?user=alice") as ws:
        ws.send_json({"type": "NOPE", "payload": {}})
        assert ws.receive_json() == {"type": "error", "payload": {"message": "Unknown message type: NOPE", "details": {"type": "NOPE"}}}
        ws.send_text("this is not json")
        assert ws.receive_json()["payload"]["message"] == "message is not valid JSON"
        ws.send_json([1, 2])
        assert ws.receive_json()["payload"]["message"] == "message must be an object {type, payload}"
        ws.send_json({"type": "PROMPT_REQUEST"})
        assert ws.receive_json()["payload"]["message"] == "PROMPT_REQUEST needs a payload"
        ws.send_json({"type": "PROMPT_REQUEST", "payload": {"edges": [], "metadata": {"internalId": "tab-9"}}})
        reply = ws.receive_json()["payload"]
        assert reply["message"].startswith("invalid PROMPT_REQUEST payload")
        assert reply["details"][0]["path"] == "$" and reply["internalId"] == "tab-9"
        ws.send_json({"type": "PROMPT_REQUEST", "payload": {"nodes": [{"id": 5, "fullType": "t:Const"}]}})
        assert ws.receive_json()["payload"]["details"][0]["path"] == "$.nodes[0].id"
        ws.send_bytes(b"\xff\xfe")
        assert "binary" in ws.receive_json()["payload"]["message"]
        ws.send_json({"type": "button_click", "payload": {"nodeId": "x", "buttonName": "reroll"}})  # no reply
        ws.send_json({"type": "INTERRUPT_REQUEST", "payload": {"promptId": "nope"}})
        assert "nope" in ws.receive_json()["payload"]["message"]
        ws.send_json({"type": "INTERRUPT_REQUEST", "payload": {}})
        assert ws.receive_json()["payload"]["message"].startswith("INTERRUPT_REQUEST needs a payload")
        # Still fully usable.
        messages = submit(ws, {"nodes": [{"id": "c", "fullType": "t:Const", "inputs": {"value": 1}}]})
        assert messages[-2]["payload"]["status"] == "complete"
        assert client.get("/api/system_stats", headers={"X-User": "alice"}).status_code == 200


def test_one_socket_watches_several_runs_and_only_the_submitter_gets_them(kernel_factory: Any) -> None:
    with client_for(kernel_factory()) as client:
        with client.websocket_connect("/ws?user=alice") as ws, client.websocket_connect("/ws?user=alice") as other, \
                client.websocket_connect("/ws?user=bob") as bob:
            slow = {"nodes": [{"id": "s", "fullType": "t:Sleep", "inputs": {"seconds": 0.3}}]}
            fast = {"nodes": [{"id": "c", "fullType": "t:Const", "inputs": {"value": 1}}]}
            ws.send_json({"type": "PROMPT_REQUEST", "payload": slow})
            first = ws.receive_json()["payload"]["promptId"]
            ws.send_json({"type": "PROMPT_REQUEST", "payload": fast})
            seen: dict[str, list[str]] = {}
            finals = 0
            while finals < 2:
                m = ws.receive_json()
                pid = m["payload"].get("promptId")
                if pid:
                    seen.setdefault(pid, []).append(m["type"])
                if m["type"] == "EXECUTION_STATUS_UPDATE" and m["payload"]["status"] in FINAL:
                    finals += 1
            assert first in seen and len(seen) == 2
            assert all(types[-1] == "EXECUTION_STATUS_UPDATE" for types in seen.values())
            # The other sockets got only the broadcasts.
            assert other.receive_json()["type"] == "SYSTEM_QUEUE_UPDATE"
            assert bob.receive_json()["type"] == "SYSTEM_QUEUE_UPDATE"


def test_subscribe_to_a_run_submitted_over_http(kernel_factory: Any) -> None:
    payload = {"nodes": [{"id": "c", "fullType": "t:Const", "inputs": {"value": 1}},
                         {"id": "s", "fullType": "t:Sleep", "inputs": {"seconds": 0.3}}]}
    with client_for(kernel_factory()) as client:
        prompt_id = client.post("/api/prompt", json=payload, headers={"X-User": "alice"}).json()["promptId"]
        with client.websocket_connect("/ws?user=bob") as bob:
            bob.send_json({"type": "SUBSCRIBE_PROMPT", "payload": {"promptId": prompt_id}})
            assert bob.receive_json()["payload"]["message"] == f"Execution with promptId {prompt_id} not found."
        with client.websocket_connect("/ws?user=alice") as ws:
            ws.send_json({"type": "SUBSCRIBE_PROMPT", "payload": {"promptId": prompt_id}})
            messages = run_messages(ws)
        kinds = [m["type"] for m in messages]
        assert kinds[0] == "EXECUTION_STATUS_UPDATE" and messages[0]["payload"]["status"] == "running"
        assert kinds.count("NODE_COMPLETE") == 2
        assert messages[-2]["payload"]["status"] == "complete"
        # A finished run replays its summary.
        with client.websocket_connect("/ws?user=alice") as ws:
            ws.send_json({"type": "SUBSCRIBE_PROMPT", "payload": {"promptId": prompt_id}})
            replay = [ws.receive_json() for _ in range(3)]
        assert [m["type"] for m in replay] == ["NODE_COMPLETE", "NODE_COMPLETE", "EXECUTION_STATUS_UPDATE"]


def test_interrupt_request_over_the_socket(kernel_factory: Any) -> None:
    with client_for(kernel_factory()) as client, client.websocket_connect("/ws?user=alice") as ws:
        ws.send_json({"type": "PROMPT_REQUEST", "payload": {"nodes": [{"id": "s", "fullType": "t:Sleep", "inputs": {"seconds": 30}}]}})
        prompt_id = ws.receive_json()["payload"]["promptId"]
        assert ws.receive_json()["payload"]["status"] == "running"
        assert ws.receive_json()["type"] == "NODE_EXECUTING"
        ws.send_json({"type": "INTERRUPT_REQUEST", "payload": {"promptId": prompt_id}})
        assert ws.receive_json() == {"type": "EXECUTION_STATUS_UPDATE", "payload": {"promptId": prompt_id, "status": "interrupted"}}
        assert ws.receive_json()["type"] == "SYSTEM_QUEUE_UPDATE"


def test_unauthenticated_socket_is_closed(kernel_factory: Any) -> None:
    with client_for(kernel_factory()) as client, client.websocket_connect("/ws") as ws:
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_json()
        assert info.value.code == 4401


class _FakeSocket:
    def __init__(self) -> None:
        self.scope: dict[str, Any] = {"type": "websocket", "extensions": {}}
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None

    async def send_text(self, text: str) -> None:
        self.sent.append(text)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


class _FakeKernel:
    def __init__(self) -> None:
        self.hub = EventHub()
        self.services = Services()


@pytest.mark.anyio
async def test_a_slow_socket_is_cut_off_without_slowing_the_publisher() -> None:
    kernel = _FakeKernel()
    socket = _FakeSocket()
    connection = Connection(socket, Principal(id="alice", username="a"), kernel, ExecutionsSettings(ws_max_queue=10))  # type: ignore[arg-type]
    connection.watched.add("p")
    for i in range(50):  # publishing never waits for the socket
        kernel.hub.publish(HubEvent("NODE_EXECUTING", {"promptId": "p", "nodeId": str(i)}, "p", "alice"))
    kernel.hub.publish(HubEvent("NODE_EXECUTING", {"promptId": "q"}, "q", "bob"))  # not watched
    with anyio.fail_after(2):
        await connection.sender()
    assert socket.closed is not None and socket.closed[0] == 1013
    assert socket.sent == []
    connection.close()
    assert kernel.hub.subscriber_count == 0


def test_broadcasts_reach_every_socket(kernel_factory: Any) -> None:
    kernel = kernel_factory()
    with client_for(kernel) as client, client.websocket_connect("/ws?user=alice") as a, \
            client.websocket_connect("/ws?user=bob") as b:
        client.get("/api/system_stats", headers={"X-User": "alice"})  # both sockets are registered now
        portal_emit = kernel.hub.emit
        portal_emit("NODES_RELOADED", {"success": True, "count": 21})
        assert a.receive_json() == {"type": "NODES_RELOADED", "payload": {"success": True, "count": 21}}
        assert b.receive_json() == {"type": "NODES_RELOADED", "payload": {"success": True, "count": 21}}
