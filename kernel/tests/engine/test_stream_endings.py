"""Streams cut short still end for their watchers, and streams into skipped nodes buffer nothing.

- a stream that times out, fails or is interrupted sends its last chunk (``isLastChunk: true``) on
  ``NODE_YIELD`` and on every interface output it feeds, before the node's or the run's end;
- a consumer that is skipped (another of its inputs failed) gets no chunks buffered for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from comfytavern.auth import Principal
from comfytavern.engine import Execution, ExecutionSettings, Scheduler, convert_payload, prepare
from comfytavern.events import EventHub, HubEvent
from comfytavern.nodes.definition import Input, Output, node
from comfytavern.nodes.registry import NodeRegistry, RegistryHolder
from comfytavern.storage.runs import MemoryRunStore
from comfytavern_testnodes import NODES

pytestmark = pytest.mark.anyio

ALICE = Principal(id="alice", username="alice")


@node(type="Breaks", category="test", display_name="Stream, then raise", namespace="x",
      outputs={"stream": Output(data_flow_type="STREAM", is_stream=True)})
async def breaks(inputs: dict[str, Any], ctx: Any) -> AsyncIterator[Any]:
    yield {"type": "text_chunk", "content": "partial"}
    raise ValueError("connection reset")


@node(type="Join", category="test", display_name="Read a stream once another input is there", namespace="x",
      inputs={"stream": Input(data_flow_type="STREAM", is_stream=True, required=True),
              "after": Input(data_flow_type="WILDCARD", required=True)},
      outputs={"text": Output(data_flow_type="STRING")})
async def join(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"text": "".join([chunk["content"] async for chunk in inputs["stream"]])}


REGISTRY = NodeRegistry.build([("t", "t", NODES), ("x", "x", [breaks, join])])


def interface(source: str) -> dict[str, Any]:
    return {
        "interfaceOutputs": {"reply": {"key": "reply", "displayName": "Reply", "isStream": True}},
        "outputInterfaceMappings": {"reply": {"sourceNodeId": source, "sourceSlotKey": "stream"}},
    }


async def run(raw: dict[str, Any], **settings: Any) -> tuple[Execution, list[tuple[str, dict[str, Any]]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    execution = Execution(
        prepare(convert_payload(raw), REGISTRY), prompt_id="p1", user=ALICE,
        emit=lambda t, p: events.append((t, p)), settings=ExecutionSettings(**settings),
    )
    await execution.run()
    return execution, events


def node_yields(events: list[tuple[str, dict[str, Any]]], node_id: str) -> list[dict[str, Any]]:
    return [p for t, p in events if t == "NODE_YIELD" and p["sourceNodeId"] == node_id]


def interface_yields(events: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [p for t, p in events if t == "WORKFLOW_INTERFACE_YIELD"]


def assert_ends_once(yields: list[dict[str, Any]], chunk: dict[str, Any]) -> None:
    assert yields, "the stream sent nothing"
    assert [y["isLastChunk"] for y in yields].count(True) == 1
    assert yields[-1]["isLastChunk"] is True and yields[-1]["yieldedContent"] == chunk


async def test_a_stream_that_times_out_ends_its_interface_output_and_its_node_yields() -> None:
    raw = {
        "nodes": [{"id": "s", "fullType": "t:Stream", "inputs": {"parts": [f"p{i}" for i in range(1000)], "delay": 0.01}}],
        **interface("s"),
    }
    execution, events = await run(raw, node_timeout=0.3)
    timed_out = {"type": "error_chunk", "content": "Node timed out after 0.3 s."}
    assert execution.node_status()["s"]["status"] == "error"
    assert_ends_once(interface_yields(events), timed_out)
    assert_ends_once(node_yields(events, "s"), timed_out)
    types = [t for t, _ in events]
    # The ends come before the node's error and before the run's interface outputs.
    last_yield = max(i for i, t in enumerate(types) if t == "WORKFLOW_INTERFACE_YIELD")
    assert last_yield < types.index("NODE_ERROR") < len(types) - 1
    assert events[-1][1]["output"]["reply"]["type"] == "error_placeholder"


async def test_a_stream_that_raises_ends_its_node_yields_with_the_error() -> None:
    execution, events = await run({"nodes": [{"id": "b", "fullType": "x:Breaks"}], **interface("b")})
    assert execution.node_status()["b"] == {**execution.node_status()["b"], "status": "error", "error": "connection reset"}
    failed = {"type": "error_chunk", "content": "connection reset"}
    assert_ends_once(node_yields(events, "b"), failed)
    assert_ends_once(interface_yields(events), failed)


async def test_an_error_chunk_still_ends_each_stream_once() -> None:
    execution, events = await run({"nodes": [{"id": "e", "fullType": "t:ErrorStream"}], **interface("e")})
    assert_ends_once(node_yields(events, "e"), {"type": "error_chunk", "content": "model exploded"})
    assert_ends_once(interface_yields(events), {"type": "error_chunk", "content": "model exploded"})


async def test_an_interrupted_stream_ends_its_interface_output_before_the_final_status() -> None:
    """Production defaults (no node timeout): the user interrupts a long stream."""
    hub = EventHub()
    seen: list[HubEvent] = []
    hub.subscribe(max_buffer=1, accept=lambda e: seen.append(e) or False)
    scheduler = Scheduler(hub=hub, registry=RegistryHolder(REGISTRY), store=MemoryRunStore())
    raw = {
        "nodes": [
            {"id": "s", "fullType": "t:Stream", "inputs": {"parts": [f"p{i}" for i in range(10_000)], "delay": 0.01}},
            {"id": "k", "fullType": "t:Collect"},
        ],
        "edges": [{"id": "e", "sourceNodeId": "s", "sourceHandle": "stream", "targetNodeId": "k", "targetHandle": "stream"}],
        **interface("s"),
    }
    async with scheduler.running():
        prompt_id = await scheduler.submit(convert_payload(raw), ALICE)
        with anyio.fail_after(10):
            while not any(e.type == "WORKFLOW_INTERFACE_YIELD" for e in seen):
                await anyio.sleep(0.005)
            assert await scheduler.interrupt(prompt_id, ALICE)
    mine = [e for e in seen if e.prompt_id == prompt_id]
    interrupted = {"type": "finish_reason_chunk", "content": "Interrupted"}
    assert_ends_once([e.payload for e in mine if e.type == "WORKFLOW_INTERFACE_YIELD"], interrupted)
    assert_ends_once([e.payload for e in mine if e.type == "NODE_YIELD"], interrupted)
    assert mine[-1].type == "EXECUTION_STATUS_UPDATE" and mine[-1].payload["status"] == "interrupted"


def _skip_payload(*, fail_first: bool) -> dict[str, Any]:
    """``s`` streams to ``k`` (reads it) and to ``j``, which also needs ``f``'s output: ``f``
    fails, so ``j`` is skipped, before ``s`` starts or while it streams."""
    parts = [f"p{i}" for i in range(500)]
    nodes: list[dict[str, Any]] = [
        {"id": "k", "fullType": "t:Collect"},
        {"id": "j", "fullType": "x:Join"},
        {"id": "f", "fullType": "t:Fail"},
    ]
    edges = [
        {"id": "e1", "sourceNodeId": "s", "sourceHandle": "stream", "targetNodeId": "k", "targetHandle": "stream"},
        {"id": "e2", "sourceNodeId": "s", "sourceHandle": "stream", "targetNodeId": "j", "targetHandle": "stream"},
        {"id": "e3", "sourceNodeId": "f", "sourceHandle": "result", "targetNodeId": "j", "targetHandle": "after"},
    ]
    if fail_first:
        # ``s`` waits for ``w`` (its parts come through it); ``f`` fails at once.
        nodes += [
            {"id": "w", "fullType": "t:Sleep", "inputs": {"seconds": 0.05, "value": parts}},
            {"id": "s", "fullType": "t:Stream"},
        ]
        edges.append({"id": "e4", "sourceNodeId": "w", "sourceHandle": "value", "targetNodeId": "s", "targetHandle": "parts"})
    else:
        # ``s`` streams at once; ``f`` fails after ``w``, while ``s`` is still streaming.
        nodes += [
            {"id": "w", "fullType": "t:Sleep", "inputs": {"seconds": 0.05}},
            {"id": "s", "fullType": "t:Stream", "inputs": {"parts": parts, "delay": 0.001}},
        ]
        edges.append({"id": "e4", "sourceNodeId": "w", "sourceHandle": "value", "targetNodeId": "f", "targetHandle": "a"})
    return {"nodes": nodes, "edges": edges}


@pytest.mark.parametrize("fail_first", [True, False], ids=["skipped-before-the-stream", "skipped-while-streaming"])
async def test_a_skipped_consumer_gets_nothing_buffered(fail_first: bool) -> None:
    execution, _ = await run(_skip_payload(fail_first=fail_first))
    status = execution.node_status()
    assert status["f"]["status"] == "error" and status["j"]["status"] == "skipped"
    assert status["s"]["status"] == "complete" and status["k"]["status"] == "complete"
    assert execution.node_outputs()["k"]["count"] == 500  # the reader got everything
    edges = {(execution.graph.nodes[e.source].id, execution.graph.nodes[e.target].id): e.index for e in execution.graph.stream_edges}
    skipped_queue = execution.queues[edges[("s", "j")]]
    assert skipped_queue is not None
    assert skipped_queue.detached and len(skipped_queue.buffer) == 0
