from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.anyio


def types(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [t for t, _ in events]


async def test_chain_runs_in_order_with_defaults(run_graph: Any, mk: Any) -> None:
    payload = {
        "nodes": [
            mk.node("c", "Const", inputs={"value": 2}),
            mk.node("a", "Add", inputs={"b": 3}),
            mk.node("m", "Mul"),
        ],
        "edges": [mk.edge("c", "value", "a", "a"), mk.edge("a", "result", "m", "a")],
    }
    execution, events = await run_graph(payload)
    assert execution.node_outputs() == {"c": {"value": 2}, "a": {"result": 5}, "m": {"result": 5.0}}
    assert types(events) == ["NODE_EXECUTING", "NODE_COMPLETE", "NODE_YIELD"] * 3
    assert events[0][1] == {"promptId": "p1", "nodeId": "c"}
    assert events[2][1]["yieldedContent"] == {"type": "finish_reason_chunk", "content": "Stream ended"}
