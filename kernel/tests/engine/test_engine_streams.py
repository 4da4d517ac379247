"""Streams: every consumer gets every chunk, the final value is kept, errors propagate."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from comfytavern.engine.stream import ChunkQueue, StreamStalled, Tee, UpstreamFailed

pytestmark = pytest.mark.anyio

PARTS = [f"p{i}" for i in range(600)]  # more than the default per-consumer buffer (256)


def of(events: list[tuple[str, dict[str, Any]]], kind: str) -> list[dict[str, Any]]:
    return [p for t, p in events if t == kind]


async def test_fan_out_every_consumer_gets_every_chunk_and_final_value_is_kept(run_graph: Any, mk: Any) -> None:
    payload = {
        "nodes": [
            mk.node("s", "Stream", inputs={"parts": PARTS}),
            mk.node("c1", "Collect"),
            mk.node("c2", "Collect", inputs={"suffix": "?"}),
            mk.node("r", "Relay"),
            mk.node("c3", "Collect"),
            mk.node("sc", "SyncCollect"),
            mk.node("ig", "Ignore"),
            mk.node("after", "Concat", inputConnectionOrders={"parts": ["final"]}),
        ],
        "edges": [
            mk.edge("s", "stream", "c1", "stream"),
            mk.edge("s", "stream", "c2", "stream"),
            mk.edge("s", "stream", "r", "stream"),
            mk.edge("r", "stream", "c3", "stream"),
            mk.edge("s", "stream", "sc", "stream"),
            mk.edge("s", "stream", "ig", "stream"),
            mk.edge("s", "text", "after", "parts__0", id="final"),
        ],
    }
    execution, events = await run_graph(payload)
    out = execution.node_outputs()
    whole = "".join(PARTS)
    assert out["s"] == {"text": whole}  # the generator's final Outputs (the original lost it)
    assert out["c1"] == {"text": whole, "count": len(PARTS)}
    assert out["c2"]["text"] == whole + "?"
    assert out["c3"]["text"] == "".join(p + "!" for p in PARTS)
    assert out["r"] == {"count": len(PARTS)}
    assert out["sc"] == {"text": whole}
    assert out["ig"] == {"done": True}
    assert out["after"] == {"text": whole}
    yields = [p for p in of(events, "NODE_YIELD") if p["sourceNodeId"] == "s"]
    assert [y["yieldedContent"]["content"] for y in yields] == PARTS
    assert not any(y["isLastChunk"] for y in yields)
    complete = [p for p in of(events, "NODE_COMPLETE") if p["nodeId"] == "s"]
    assert complete == [{"promptId": "p1", "nodeId": "s", "output": {"text": whole}}]


async def test_sync_generator_streams(run_graph: Any, mk: Any) -> None:
    payload = {
        "nodes": [mk.node("s", "SyncStream", inputs={"parts": ["a", "b", "c"]}), mk.node("c", "Collect")],
        "edges": [mk.edge("s", "stream", "c", "stream")],
    }
    execution, events = await run_graph(payload)
    assert execution.node_outputs()["c"]["text"] == "abc"
    assert execution.node_outputs()["s"] == {"text": "abc"}
    assert len([p for p in of(events, "NODE_YIELD") if p["sourceNodeId"] == "s"]) == 3


async def test_interface_stream_output_yields_every_chunk_then_a_placeholder(run_graph: Any, mk: Any) -> None:
    payload = {
        "nodes": [mk.node("s", "Stream", inputs={"parts": ["he", "llo"]}), mk.node("out", "GroupOutput")],
        "edges": [mk.edge("s", "stream", "out", "output_0")],
        "interfaceOutputs": {"output_0": {"key": "output_0", "displayName": "Reply", "isStream": True}},
        "outputInterfaceMappings": {"output_0": {"sourceNodeId": "s", "sourceSlotKey": "stream"}},
    }
    execution, events = await run_graph(payload)
    yields = of(events, "WORKFLOW_INTERFACE_YIELD")
    assert [(y["yieldedContent"]["content"], y["isLastChunk"]) for y in yields] == [
        ("he", False),
        ("llo", False),
        ("Stream ended", True),
    ]
    assert all(y["interfaceOutputKey"] == "output_0" for y in yields)
    final = events[-1][1]["output"]["output_0"]
    assert final == {
        "type": "stream_placeholder",
        "message": "Stream started for output_0 (Reply)",
        "interfaceOutputKey": "output_0",
        "text": "hello",
    }
    # The GroupOutput drained its own copy; the interface still saw every chunk.
    assert execution.node_status()["out"]["status"] == "complete"


async def test_error_chunk_fails_the_producer_and_its_consumers(run_graph: Any, mk: Any) -> None:
    payload = {
        "nodes": [mk.node("e", "ErrorStream"), mk.node("c", "Collect"), mk.node("ok", "Const", inputs={"value": 1})],
        "edges": [mk.edge("e", "stream", "c", "stream")],
    }
    execution, events = await run_graph(payload)
    yields = [p for p in of(events, "NODE_YIELD") if p["sourceNodeId"] == "e"]
    assert yields[-1]["yieldedContent"] == {"type": "error_chunk", "content": "model exploded"}
    assert yields[-1]["isLastChunk"] is True
    errors = {p["nodeId"]: p["errorDetails"] for p in of(events, "NODE_ERROR")}
    assert errors["e"] == "model exploded"
    # The consumer either never started (skipped) or saw the upstream error while reading.
    status = execution.node_status()["c"]
    assert status["status"] in ("skipped", "error")
    assert "upstream node e failed" in (status.get("reason") or errors.get("c", ""))
    assert execution.node_status()["ok"]["status"] == "complete"


async def test_bypassed_stream_node_relays_the_stream(run_graph: Any, mk: Any) -> None:
    payload = {
        "nodes": [mk.node("s", "Stream", inputs={"parts": ["x", "y"]}), mk.node("r", "Relay", bypassed=True), mk.node("c", "Collect")],
        "edges": [mk.edge("s", "stream", "r", "stream"), mk.edge("r", "stream", "c", "stream")],
    }
    execution, events = await run_graph(payload)
    assert execution.node_outputs()["c"]["text"] == "xy"
    assert not [p for p in of(events, "NODE_YIELD") if p["sourceNodeId"] == "r"]
    assert of(events, "NODE_BYPASSED")[0]["nodeId"] == "r"


async def test_tee_detaches_a_stalled_consumer_and_serves_the_others() -> None:
    reader, staller = ChunkQueue(4, 1000), ChunkQueue(4, 1000)
    staller.started = True  # it read once and then stopped reading
    tee = Tee([reader, staller], stall_timeout=0.1)
    got: list[int] = []

    async def read() -> None:
        async for item in reader:
            got.append(item)

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        for i in range(50):
            await tee.send(i)
        tee.close()
    assert got == list(range(50))
    assert staller.detached
    with pytest.raises(StreamStalled):
        await staller.__anext__()


async def test_tee_buffers_for_a_consumer_that_has_not_started_up_to_the_cap() -> None:
    later, capped = ChunkQueue(2, 100), ChunkQueue(2, 10)
    tee = Tee([later, capped], stall_timeout=5)
    with anyio.fail_after(2):
        for i in range(50):
            await tee.send(i)  # never blocks: nobody has started reading
    tee.close()
    assert await later.drain() == list(range(50))
    with pytest.raises(StreamStalled):
        await capped.drain()


async def test_tee_propagates_upstream_errors() -> None:
    q = ChunkQueue(8, 100)
    tee = Tee([q], stall_timeout=1)
    await tee.send("a")
    tee.close(UpstreamFailed("upstream node x failed: nope"))
    assert await q.__anext__() == "a"
    with pytest.raises(UpstreamFailed):
        await q.__anext__()
