"""Payload decoding and validation before anything runs."""

from __future__ import annotations

from typing import Any

import pytest

from comfytavern.engine import Limits, PayloadError, WorkflowInvalid, convert_payload, decode_payload, prepare
from comfytavern.nodes.registry import NodeRegistry


def issues_of(registry: NodeRegistry, raw: dict[str, Any], **limits: Any) -> list[dict[str, Any]]:
    with pytest.raises(WorkflowInvalid) as info:
        prepare(convert_payload(raw), registry, Limits(**limits) if limits else Limits())
    return info.value.details()["errors"]


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"edges": []}, "$"),
        ({"nodes": "x"}, "$.nodes"),
        ({"nodes": [{"id": "a"}]}, "$.nodes[0]"),
        ({"nodes": [{"id": 3, "fullType": "t:Const"}]}, "$.nodes[0].id"),
        ({"nodes": [], "edges": [{"sourceNodeId": "a"}]}, "$.edges[0]"),
        ({"nodes": [], "outputInterfaceMappings": {"o": {"sourceNodeId": "a"}}}, "$.outputInterfaceMappings[...]"),
    ],
)
def test_malformed_payloads_name_the_field(raw: dict[str, Any], path: str) -> None:
    with pytest.raises(PayloadError) as info:
        convert_payload(raw)
    assert info.value.details[0]["path"] == path


def test_decode_errors() -> None:
    with pytest.raises(PayloadError) as info:
        decode_payload(b"{bad")
    assert info.value.message == "malformed JSON"
    with pytest.raises(PayloadError):
        convert_payload([1, 2])
    assert decode_payload(b'{"nodes": [], "extra": 1}').nodes == []


def test_preview_run_inputs_are_unwrapped() -> None:
    payload = convert_payload(
        {
            "nodes": [{"id": "a", "fullType": "t:Add", "inputs": {"b": {"value": 2, "dataFlowType": "FLOAT"}}}],
            "metadata": {"isPreviewRun": True},
        }
    )
    assert payload.nodes[0].inputs == {"b": 2}


def test_every_structural_problem_is_reported_per_node(registry: NodeRegistry, mk: Any) -> None:
    raw = {
        "nodes": [
            mk.node("u", "Nope"),
            mk.node("c", "Const"),
            mk.node("a", "Add"),
            mk.node("s", "Stream"),
            mk.node("col", "Collect"),
            mk.node("dup", "Const"),
            mk.node("dup", "Const"),
        ],
        "edges": [
            mk.edge("c", "nope", "a", "a"),
            mk.edge("c", "value", "a", "zzz"),
            mk.edge("s", "text", "col", "stream"),
            mk.edge("c", "value", "ghost", "a"),
        ],
    }
    errors = issues_of(registry, raw)
    kinds = {(e["type"], e.get("nodeId")) for e in errors}
    assert ("unknown_node_type", "u") in kinds
    assert ("unknown_output", "c") in kinds
    assert ("unknown_input", "a") in kinds
    assert ("incompatible_connection", "col") in kinds
    assert ("unknown_node", None) in kinds
    assert ("duplicate_node_id", "dup") in kinds
    unknown = next(e for e in errors if e["type"] == "unknown_node_type")
    assert unknown["message"] == "Node type t:Nope not found or not executable."


def test_missing_required_input_after_defaults(registry: NodeRegistry, mk: Any) -> None:
    # Add.a (FLOAT) falls back to the editor's default 0.0; Collect.stream has no default.
    errors = issues_of(registry, {"nodes": [mk.node("a", "Add"), mk.node("c", "Collect")], "edges": []})
    assert errors == [
        {
            "type": "missing_required_input",
            "message": "Missing required input 'stream' for node c (t:Collect)",
            "nodeId": "c",
            "input": "stream",
        }
    ]


def test_two_edges_into_a_single_input(registry: NodeRegistry, mk: Any) -> None:
    raw = {
        "nodes": [mk.node("x", "Const"), mk.node("y", "Const"), mk.node("a", "Add")],
        "edges": [mk.edge("x", "value", "a", "a"), mk.edge("y", "value", "a", "a")],
    }
    assert issues_of(registry, raw)[0]["type"] == "too_many_connections"


def test_crowded_single_inputs_name_every_edge_in_order(registry: NodeRegistry, mk: Any) -> None:
    # Two crowded inputs, reported in the order of their first edge, each with all its edge ids
    # in edge order (an edge without an id is named by its position; a repeated edge counts).
    no_id = {"sourceNodeId": "z", "sourceHandle": "value", "targetNodeId": "a", "targetHandle": "a"}
    raw = {
        "nodes": [mk.node("x", "Const"), mk.node("y", "Const"), mk.node("z", "Const"), mk.node("a", "Add"), mk.node("b", "Add")],
        "edges": [
            mk.edge("y", "value", "b", "a", "e1"),
            mk.edge("x", "value", "a", "a", "e2"),
            mk.edge("z", "value", "b", "a", "e3"),
            mk.edge("x", "value", "a", "a", "e4"),
            mk.edge("x", "value", "a", "b", "e5"),
            no_id,
            mk.edge("y", "value", "b", "b", "e7"),
        ],
    }
    crowded = [e for e in issues_of(registry, raw) if e["type"] == "too_many_connections"]
    assert [(e["nodeId"], e["input"], e["message"]) for e in crowded] == [
        ("b", "a", "input 'a' of node b has 2 connections (e1, e3); it accepts one"),
        ("a", "a", "input 'a' of node a has 3 connections (e2, e4, #5); it accepts one"),
    ]


def test_cycles_name_only_the_nodes_on_the_cycle(registry: NodeRegistry, mk: Any) -> None:
    raw = {
        "nodes": [mk.node("m1", "Add"), mk.node("m2", "Add"), mk.node("after", "Add"), mk.node("self", "Sum")],
        "edges": [
            mk.edge("m1", "result", "m2", "a"),
            mk.edge("m2", "result", "m1", "a"),
            mk.edge("m2", "result", "after", "a"),
        ],
    }
    errors = issues_of(registry, raw)
    assert {e["nodeId"] for e in errors} == {"m1", "m2"}
    assert errors[0]["message"] == "Workflow contains a cycle involving nodes: m1, m2"
    self_loop = {"nodes": [mk.node("s", "Sum")], "edges": [mk.edge("s", "result", "s", "values__0")]}
    assert issues_of(registry, self_loop)[0]["type"] == "dependency_cycle"


def test_unknown_interface_mapping(registry: NodeRegistry, mk: Any) -> None:
    raw = {
        "nodes": [mk.node("c", "Const")],
        "outputInterfaceMappings": {"o": {"sourceNodeId": "c", "sourceSlotKey": "nope"}, "p": {"sourceNodeId": "z", "sourceSlotKey": "x"}},
    }
    assert [e["type"] for e in issues_of(registry, raw)] == ["unknown_interface_output"] * 2


def test_size_limits(registry: NodeRegistry, mk: Any) -> None:
    raw = {"nodes": [mk.node(f"n{i}", "Const") for i in range(11)], "edges": []}
    errors = issues_of(registry, raw, max_nodes=10)
    assert errors[0]["type"] == "too_large"


def test_deep_chain_validates_without_recursion(registry: NodeRegistry, mk: Any) -> None:
    n = 30_000
    nodes = [mk.node("n0", "Const", inputs={"value": 0})] + [mk.node(f"n{i}", "Add") for i in range(1, n)]
    edges = [mk.edge("n0", "value", "n1", "a")] + [mk.edge(f"n{i - 1}", "result", f"n{i}", "a") for i in range(2, n)]
    graph = prepare(convert_payload({"nodes": nodes, "edges": edges}), registry)
    assert graph.roots == [0]
    cyclic = {"nodes": nodes, "edges": [*edges, mk.edge(f"n{n - 1}", "result", "n1", "b")]}
    errors = issues_of(registry, cyclic)
    assert len(errors) == 200  # capped, one per node on the cycle
