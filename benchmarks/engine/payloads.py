"""Workflow payloads used by the benchmark (the editor's execution format)."""

from __future__ import annotations

from typing import Any


def chain(n: int, node_type: str = "t:Add", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``Const -> Add -> Add ...``: ``n`` nodes in one line."""
    nodes: list[dict[str, Any]] = [{"id": "n0", "fullType": "t:Const", "inputs": {"value": 1}}]
    edges: list[dict[str, Any]] = []
    src_slot = "value"
    in_slot = "value" if node_type in ("t:Spin",) else "a"
    out_slot = "value" if node_type in ("t:Spin",) else "result"
    for i in range(1, n):
        node: dict[str, Any] = {"id": f"n{i}", "fullType": node_type}
        if extra:
            node["inputs"] = dict(extra)
        nodes.append(node)
        edges.append({"id": f"e{i}", "sourceNodeId": f"n{i - 1}", "sourceHandle": src_slot,
                      "targetNodeId": f"n{i}", "targetHandle": in_slot})
        src_slot = out_slot
    return {"nodes": nodes, "edges": edges}


def wide_sleep(width: int, seconds: float) -> dict[str, Any]:
    """``width`` independent nodes that each await ``seconds`` of I/O."""
    return {
        "nodes": [{"id": f"s{i}", "fullType": "t:Sleep", "inputs": {"seconds": seconds, "value": i}} for i in range(width)],
        "edges": [],
    }
