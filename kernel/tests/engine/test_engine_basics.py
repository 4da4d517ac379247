"""Executor behaviour: order, input resolution, modes, concurrency, failures, bypass, timeouts."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from comfytavern.engine import INTERFACE_OUTPUTS_NODE_ID

pytestmark = pytest.mark.anyio


def types(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [t for t, _ in events]


def of(events: list[tuple[str, dict[str, Any]]], kind: str) -> list[dict[str, Any]]:
    return [p for t, p in events if t == kind]


async def test_chain_runs_in_order_with_defaults(run_graph: Any, mk: Any) -> None:
    payload = {
        "nodes": [mk.node("c", "Const", inputs={"value": 2}), mk.node("a", "Add", inputs={"b": 3}), mk.node("m", "Mul")],
        "edges": [mk.edge("c", "value", "a", "a"), mk.edge("a", "result", "m", "a")],
    }
    execution, events = await run_graph(payload)
    assert execution.node_outputs() == {"c": {"value": 2}, "a": {"result": 5}, "m": {"result": 5.0}}
    assert types(events) == ["NODE_EXECUTING", "NODE_COMPLETE", "NODE_YIELD"] * 3
    assert events[0][1] == {"promptId": "p1", "nodeId": "c", "nodeType": "t:Const"}
    assert events[2][1] == {
        "promptId": "p1",
        "sourceNodeId": "c",
        "yieldedContent": {"type": "finish_reason_chunk", "content": "Stream ended"},
        "isLastChunk": True,
    }
    assert not execution.failed
    assert {s["status"] for s in execution.node_status().values()} == {"complete"}


async def test_multi_input_follows_connection_order_and_edges_beat_presets(run_graph: Any, mk: Any) -> None:
    payload = {
        "nodes": [
            mk.node("x", "Const", inputs={"value": "x"}),
            mk.node("y", "Const", inputs={"value": "y"}),
            mk.node("z", "Const", inputs={"value": "z"}),
            mk.node("j", "Concat", inputs={"parts": [None], "sep": "|"},
                    inputConnectionOrders={"parts": ["ez", "ex"]}),
        ],
        "edges": [
            mk.edge("x", "value", "j", "parts__0", id="ex"),
            mk.edge("y", "value", "j", "parts__1", id="ey"),
            mk.edge("z", "value", "j", "parts__2", id="ez"),
        ],
    }
    execution, _ = await run_graph(payload)
    # Listed edges first, in the listed order; an unlisted edge is kept, after them.
    assert execution.node_outputs()["j"] == {"text": "z|x|y"}


async def test_connected_value_then_preset_then_default(run_graph: Any, mk: Any) -> None:
    payload = {
        "nodes": [
            mk.node("none", "Const"),  # outputs value None
            mk.node("a1", "Add", inputs={"a": 10}),  # connected but None -> preset 10, b default 0
            mk.node("a2", "Add", inputs={"a": 1, "b": 2}),
        ],
        "edges": [mk.edge("none", "value", "a1", "a")],
    }
    execution, _ = await run_graph(payload)
    assert execution.node_outputs()["a1"] == {"result": 10}
    assert execution.node_outputs()["a2"] == {"result": 3}


async def test_config_values_and_modes_reach_the_node(run_graph: Any, mk: Any) -> None:
    payload = {
        "nodes": [
            mk.node("ctx", "Context", configValues={"label": "fancy"}),
            mk.node("d", "Modes", inputs={"x": 4}),
            mk.node("n", "Modes", inputs={"x": 4}, configValues={"mode": "negate"}),
        ],
        "edges": [],
        "interfaceInputs": {"input_0": {"key": "input_0", "config": {"default": "hi"}}},
    }
    execution, _ = await run_graph(payload)
    out = execution.node_outputs()
    assert out["ctx"]["info"]["label"] == "fancy"
    assert out["ctx"]["info"]["user"] == "alice"
    assert out["ctx"]["info"]["interface"]["input_0"]["config"]["default"] == "hi"
    assert out["d"] == {"out": 8}
    assert out["n"] == {"out": -4}


async def test_independent_branches_run_concurrently(run_graph: Any, mk: Any) -> None:
    payload = {"nodes": [mk.node(f"s{i}", "Sleep", inputs={"seconds": 0.2}) for i in range(10)], "edges": []}
    start = time.perf_counter()
    execution, _ = await run_graph(payload)
    assert time.perf_counter() - start < 0.6
    assert len(execution.node_outputs()) == 10


async def test_sync_nodes_run_in_worker_threads_beside_async_ones(run_graph: Any, mk: Any) -> None:
    payload = {
        "nodes": [mk.node("b", "Block", inputs={"seconds": 0.3}), mk.node("s", "Sleep", inputs={"seconds": 0.3})],
        "edges": [],
    }
    start = time.perf_counter()
    execution, _ = await run_graph(payload)
    assert time.perf_counter() - start < 0.55
    assert execution.node_outputs()["b"] == {"done": True}
    assert threading.current_thread() is threading.main_thread()


async def test_failure_skips_dependants_and_independent_branches_finish(run_graph: Any, mk: Any) -> None:
    payload = {
        "nodes": [
            mk.node("f", "Fail"),
            mk.node("d1", "Add"),
            mk.node("d2", "Add"),
            mk.node("ok", "Const", inputs={"value": 5}),
            mk.node("ok2", "Add", inputs={"b": 1}),
        ],
        "edges": [mk.edge("f", "result", "d1", "a"), mk.edge("d1", "result", "d2", "a"), mk.edge("ok", "value", "ok2", "a")],
    }
    execution, events = await run_graph(payload)
    errors = of(events, "NODE_ERROR")
    assert [e["nodeId"] for e in errors] == ["f"]
    assert errors[0]["errorDetails"] == "boom"
    assert errors[0]["errorInfo"] == {"message": "boom", "type": "ValueError"}
    skipped = of(events, "NODE_SKIPPED")
    assert {s["nodeId"] for s in skipped} == {"d1", "d2"}
    assert all(s["reason"] == "upstream node f failed" and s["causeNodeId"] == "f" for s in skipped)
    assert execution.node_outputs()["ok2"] == {"result": 6}
    status = execution.node_status()
    assert status["f"]["status"] == "error" and status["d2"]["status"] == "skipped"
    summary = execution.error_summary()
    assert summary["message"] == "One or more nodes failed during execution."
    assert summary["failedNodes"] == [{"nodeId": "f", "message": "boom"}]
    assert sorted(summary["skippedNodes"]) == ["d1", "d2"]
    assert "f: boom" in summary["summary"]


async def test_bypass_passes_through_or_mutes(run_graph: Any, mk: Any) -> None:
    payload = {
        "nodes": [
            mk.node("c", "Const", inputs={"value": 9}),
            mk.node("a", "Add", inputs={"b": 1}, bypassed=True),
            mk.node("a2", "Add", inputs={"b": 2}),
            mk.node("m", "Mute", inputs={"a": 3}, bypassed=True),
        ],
        "edges": [mk.edge("c", "value", "a", "a"), mk.edge("a", "result", "a2", "a")],
    }
    execution, events = await run_graph(payload)
    bypassed = of(events, "NODE_BYPASSED")
    assert {"promptId": "p1", "nodeId": "a", "pseudoOutputs": {"result": 9}} in bypassed
    assert {"promptId": "p1", "nodeId": "m", "pseudoOutputs": {"result": None}} in bypassed
    assert execution.node_outputs()["a2"] == {"result": 11}
    assert "a" not in [p["nodeId"] for p in of(events, "NODE_EXECUTING")]
    assert execution.node_status()["a"]["status"] == "bypassed"


async def test_interface_outputs_are_sent_last(run_graph: Any, mk: Any) -> None:
    payload = {
        "nodes": [mk.node("c", "Const", inputs={"value": 7}), mk.node("f", "Fail")],
        "edges": [],
        "interfaceOutputs": {"output_0": {"key": "output_0"}, "output_1": {"key": "output_1"}},
        "outputInterfaceMappings": {
            "output_0": {"sourceNodeId": "c", "sourceSlotKey": "value"},
            "output_1": {"sourceNodeId": "f", "sourceSlotKey": "result"},
        },
    }
    execution, events = await run_graph(payload)
    kind, last = events[-1]
    assert kind == "NODE_COMPLETE" and last["nodeId"] == INTERFACE_OUTPUTS_NODE_ID
    assert last["output"]["output_0"] == 7
    assert last["output"]["output_1"]["type"] == "error_placeholder"
    assert "boom" in last["output"]["output_1"]["message"]


async def test_node_timeout(run_graph: Any, mk: Any) -> None:
    payload = {"nodes": [mk.node("s", "Sleep", inputs={"seconds": 5}), mk.node("c", "Const")], "edges": []}
    start = time.perf_counter()
    execution, events = await run_graph(payload, node_timeout=0.1)
    assert time.perf_counter() - start < 2
    assert of(events, "NODE_ERROR")[0]["errorDetails"] == "Node timed out after 0.1 s."
    assert execution.node_status()["c"]["status"] == "complete"


async def test_progress_events(run_graph: Any, mk: Any) -> None:
    _, events = await run_graph({"nodes": [mk.node("p", "Progress", inputs={"steps": 3})], "edges": []})
    progress = of(events, "NODE_PROGRESS")
    assert progress[-1] == {"promptId": "p1", "nodeId": "p", "value": 3, "max": 3}
    assert progress[0]["value"] == 1


async def test_required_input_whose_source_gave_nothing_fails_at_run_time(run_graph: Any, mk: Any) -> None:
    # A required input with no default (STREAM) fed by a node that produced None.
    payload = {"nodes": [mk.node("none", "Const"), mk.node("c", "Collect")], "edges": [mk.edge("none", "value", "c", "stream")]}
    execution, events = await run_graph(payload)
    message = of(events, "NODE_ERROR")[0]["errorDetails"]
    assert message.startswith("Missing required input 'stream' for node c (t:Collect)")
    assert "c" not in [p["nodeId"] for p in of(events, "NODE_EXECUTING")]


async def test_long_cpu_only_chain_yields_to_the_event_loop(run_graph: Any, mk: Any) -> None:
    import anyio

    n = 3000
    nodes = [mk.node("n0", "Const", inputs={"value": 0})] + [mk.node(f"n{i}", "Add", inputs={"b": 1}) for i in range(1, n)]
    edges = [mk.edge("n0", "value", "n1", "a")] + [mk.edge(f"n{i - 1}", "result", f"n{i}", "a") for i in range(2, n)]
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0)
            ticks += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        execution, _ = await run_graph({"nodes": nodes, "edges": edges}, yield_interval=0.0005)
        tg.cancel_scope.cancel()
    assert execution.node_outputs()[f"n{n - 1}"] == {"result": n - 1}
    assert ticks > 3


async def test_each_node_gets_a_context_with_its_own_fields(registry: Any) -> None:
    """The context is built positionally (once per node): every field lands where it belongs."""
    from comfytavern.auth import Principal
    from comfytavern.engine import Execution, convert_payload, prepare
    from comfytavern.services import Services

    user = Principal(id="bob", username="bob")
    payload = convert_payload({
        "nodes": [{"id": "n1", "fullType": "t:Const", "inputs": {"value": 1}, "configValues": {"k": "v"}}],
        "interfaceInputs": {"i": {"x": 1}}, "interfaceOutputs": {"o": {"y": 2}}, "metadata": {"m": 3},
    })
    graph = prepare(payload, registry)
    services = Services()
    execution = Execution(graph, prompt_id="p9", user=user, emit=lambda t, p: None, services=services)
    node = graph.nodes[0]
    ctx = execution._context(node)
    assert (ctx.prompt_id, ctx.node_id, ctx.user, ctx.mode_id) == ("p9", "n1", user, node.mode_id)
    assert ctx.config_values == node.config_values and ctx.config_values["k"] == "v"
    assert (ctx.interface_inputs, ctx.interface_outputs, ctx.metadata) == ({"i": {"x": 1}}, {"o": {"y": 2}}, {"m": 3})
    assert ctx.services is services and ctx._reporter is execution and ctx._node_index == node.index
