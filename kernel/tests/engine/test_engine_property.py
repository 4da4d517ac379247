"""Random DAGs of arithmetic nodes, compared with a straightforward reference evaluator."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import comfytavern_testnodes as testnodes
from comfytavern.auth import Principal
from comfytavern.engine import Execution, ExecutionSettings, convert_payload, prepare
from comfytavern.nodes.registry import NodeRegistry

REGISTRY = NodeRegistry.build([("t", "t", testnodes.NODES)])
KINDS = ("Const", "Add", "Mul", "Sum")


@st.composite
def dags(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(min_value=1, max_value=14))
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    for i in range(n):
        kind = "Const" if i == 0 else draw(st.sampled_from(KINDS))
        node: dict[str, Any] = {"id": f"n{i}", "fullType": f"t:{kind}"}
        if kind == "Const":
            node["inputs"] = {"value": draw(st.integers(-5, 5))}
        elif kind in ("Add", "Mul"):
            node["inputs"] = {"b": draw(st.integers(-3, 3))}
            if draw(st.booleans()):
                src = draw(st.integers(0, i - 1))
                edges.append(_edge(src, i, "a"))
            else:
                node["inputs"]["a"] = draw(st.integers(-3, 3))
            if draw(st.booleans()):
                src = draw(st.integers(0, i - 1))
                edges.append(_edge(src, i, "b"))
        else:
            sources = draw(st.lists(st.integers(0, i - 1), max_size=4))
            order = []
            for k, src in enumerate(sources):
                edge = _edge(src, i, f"values__{k}")
                edges.append(edge)
                order.append(edge["id"])
            if order:
                node["inputConnectionOrders"] = {"values": draw(st.permutations(order))}
        nodes.append(node)
    return {"nodes": draw(st.permutations(nodes)), "edges": draw(st.permutations(edges))}


def _edge(src: int, tgt: int, handle: str) -> dict[str, Any]:
    return {"id": f"e{src}-{tgt}-{handle}", "sourceNodeId": f"n{src}", "targetNodeId": f"n{tgt}",
            "sourceHandle": "SLOT", "targetHandle": handle}


def _fix_slots(raw: dict[str, Any]) -> dict[str, Any]:
    kinds = {n["id"]: n["fullType"] for n in raw["nodes"]}
    for e in raw["edges"]:
        e["sourceHandle"] = "value" if kinds[e["sourceNodeId"]] == "t:Const" else "result"
    return raw


def reference(raw: dict[str, Any]) -> dict[str, float]:
    """Evaluate in id order (ids were assigned topologically) with plain Python."""
    nodes = sorted(raw["nodes"], key=lambda n: int(n["id"][1:]))
    values: dict[str, float] = {}
    into: dict[str, dict[str, str]] = {}
    for e in raw["edges"]:
        into.setdefault(e["targetNodeId"], {})[e["id"]] = e["sourceNodeId"]
    for node in nodes:
        nid, kind, inputs = node["id"], node["fullType"][2:], node.get("inputs", {})
        feeds = {e["targetHandle"]: e["sourceNodeId"] for e in raw["edges"] if e["targetNodeId"] == nid}
        if kind == "Const":
            values[nid] = inputs["value"]
        elif kind in ("Add", "Mul"):
            a = values[feeds["a"]] if "a" in feeds else inputs.get("a", 0.0)
            b = values[feeds["b"]] if "b" in feeds else inputs.get("b", 0.0 if kind == "Add" else 1.0)
            values[nid] = a + b if kind == "Add" else a * b
        else:
            order = node.get("inputConnectionOrders", {}).get("values", [])
            values[nid] = float(sum(values[into[nid][eid]] for eid in order))
    return values


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags())
def test_random_dags_match_the_reference(raw: dict[str, Any]) -> None:
    raw = _fix_slots(raw)
    expected = reference(raw)

    async def run() -> dict[str, Any]:
        graph = prepare(convert_payload(raw), REGISTRY)
        execution = Execution(graph, prompt_id="p", user=Principal(id="u", username="u"), emit=lambda t, p: None,
                              settings=ExecutionSettings())
        await execution.run()
        assert not execution.failed, execution.errors
        return execution.node_outputs()

    outputs = anyio.run(run)
    for nid, value in expected.items():
        got = outputs[nid]["value" if "value" in outputs[nid] else "result"]
        assert got == pytest.approx(value), nid
