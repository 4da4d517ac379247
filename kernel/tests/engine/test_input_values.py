"""Input values are checked against their definitions before a run (comfytavern.engine.validation)."""

from __future__ import annotations

from typing import Any

import pytest

from comfytavern import Input, Output, node
from comfytavern.engine import WorkflowInvalid, convert_payload
from comfytavern.engine.validation import prepare_checked
from comfytavern.nodes.registry import NodeRegistry
from comfytavern_testnodes import NODES

COMBO = {"default": "a", "suggestions": [{"value": "a", "label": "A"}, {"value": "b", "label": "B"}]}


@node(
    type="Widgets",
    category="test",
    display_name="Widgets",
    inputs={
        "count": Input("INTEGER", required=True, config={"default": 10, "min": 0, "max": 100}),
        "ratio": Input("FLOAT", config={"default": 0.5, "min": 0, "max": 1}),
        "flag": Input("BOOLEAN", config={"default": False}),
        "text": Input("STRING", config={"default": ""}),
        "choice": Input("STRING", match_categories=["ComboOption"], config=COMBO),
        "hint": Input("STRING", config={"suggestions": [{"value": "x"}]}),
        "data": Input("OBJECT"),
        "rows": Input("ARRAY"),
        "any": Input("WILDCARD"),
        "anything": Input("CONVERTIBLE_ANY"),
        "stream": Input("STREAM", is_stream=True),
        "dynamic": Input("INTEGER", allow_dynamic_type=True),
        "numbers": Input("INTEGER", multi=True, config={"max": 9}),
    },
    outputs={"out": Output("WILDCARD")},
    config_schema={"mode": Input("STRING", match_categories=["ComboOption"], config=COMBO)},
)
async def widgets(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"out": inputs}


@pytest.fixture
def registry() -> NodeRegistry:
    return NodeRegistry.build([("t", "t", [*NODES, widgets])])


def payload(inputs: dict[str, Any] | None = None, **fields: Any) -> Any:
    wire: dict[str, Any] = {"id": "w", "fullType": "t:Widgets", **fields}
    if inputs is not None:
        wire["inputs"] = inputs
    return convert_payload({"nodes": [wire]})


def problems(registry: NodeRegistry, raw: Any) -> list[dict[str, Any]]:
    with pytest.raises(WorkflowInvalid) as info:
        prepare_checked(raw, registry)
    return info.value.details()["errors"]


@pytest.mark.parametrize(
    ("key", "value", "rule", "expected"),
    [
        ("count", "notanint", "type", "INTEGER"),
        ("count", 500, "max", 100),
        ("count", -1, "min", 0),
        ("count", 2.5, "type", "INTEGER"),
        ("count", "2.5", "type", "INTEGER"),
        ("count", True, "type", "INTEGER"),
        ("count", [1], "type", "INTEGER"),
        ("ratio", "1.5", "max", 1),
        ("ratio", "nan", "type", "FLOAT"),
        ("ratio", "inf", "type", "FLOAT"),
        ("flag", "yes", "type", "BOOLEAN"),
        ("flag", 1, "type", "BOOLEAN"),
        ("text", 12, "type", "STRING"),
        ("text", {"a": 1}, "type", "STRING"),
        ("choice", "c", "options", ["a", "b"]),
        ("choice", 1, "type", "STRING"),
        ("data", 5, "type", "OBJECT"),
        ("rows", {"a": 1}, "type", "ARRAY"),
        ("numbers", [1, "x"], "type", "INTEGER"),
        ("numbers", [1, 10], "max", 9),
    ],
)
def test_a_bad_value_names_node_input_value_and_rule(registry: NodeRegistry, key: str, value: Any, rule: str, expected: Any) -> None:
    (issue,) = problems(registry, payload({key: value}))
    assert issue["type"] == "invalid_input_value"
    assert issue["nodeId"] == "w" and issue["input"] == key
    assert issue["rule"] == rule and issue["expected"] == expected
    assert issue["value"] == value or (isinstance(value, list) and issue["value"] in value)
    message = issue["message"]
    assert message.startswith("node w (t:Widgets): input ") and (repr(key) in message or f"'{key}[" in message)


def test_every_problem_of_a_payload_is_reported_at_once(registry: NodeRegistry) -> None:
    raw = convert_payload({
        "nodes": [
            {"id": "a", "fullType": "t:Widgets", "inputs": {"count": "x", "flag": "no"}},
            {"id": "b", "fullType": "t:Nope"},
        ]
    })
    found = {(i["type"], i.get("nodeId"), i.get("input")) for i in problems(registry, raw)}
    assert found == {
        ("invalid_input_value", "a", "count"),
        ("invalid_input_value", "a", "flag"),
        ("unknown_node_type", "b", None),
    }


@pytest.mark.parametrize(
    "inputs",
    [
        {"count": 0}, {"count": 100}, {"count": 7.0}, {"ratio": 0}, {"ratio": 1}, {"ratio": 0.25},
        {"flag": True}, {"text": "hi"}, {"choice": "b"}, {"hint": "free text"},
        {"data": {"a": 1}}, {"data": [1]}, {"data": '{"a": 1}'}, {"rows": [1, 2]}, {"rows": "[]"},
        {"any": object.__name__}, {"any": [1, {"x": None}]}, {"anything": 5}, {"stream": "text"},
        {"dynamic": "not a number"}, {"numbers": [None, 3]}, {"count": None}, {"unknown_key": "kept"},
    ],
)
def test_values_that_fit_pass(registry: NodeRegistry, inputs: dict[str, Any]) -> None:
    graph = prepare_checked(payload(inputs), registry)
    static = graph.nodes[0].static_inputs
    assert {k: static[k] for k, v in inputs.items() if v is not None} == {k: v for k, v in inputs.items() if v is not None}


def test_numbers_sent_as_strings_are_converted(registry: NodeRegistry) -> None:
    graph = prepare_checked(payload({"count": " 42 ", "ratio": "0.75", "numbers": ["3", None]}), registry)
    static = graph.nodes[0].static_inputs
    assert static["count"] == 42 and type(static["count"]) is int
    assert static["ratio"] == 0.75
    assert static["numbers"] == [3, None]


def test_text_is_never_coerced(registry: NodeRegistry) -> None:
    assert problems(registry, payload({"text": 5}))[0]["rule"] == "type"
    graph = prepare_checked(payload({"text": "5"}), registry)
    assert graph.nodes[0].static_inputs["text"] == "5"


def test_connected_inputs_are_not_checked(registry: NodeRegistry) -> None:
    raw = convert_payload({
        "nodes": [
            {"id": "c", "fullType": "t:Const", "inputs": {"value": 5}},
            # the editor leaves stale widget values (and [null] for multi inputs) on connected inputs
            {"id": "w", "fullType": "t:Widgets", "inputs": {"count": "stale", "numbers": [None, "x"]}},
        ],
        "edges": [
            {"id": "e1", "sourceNodeId": "c", "sourceHandle": "value", "targetNodeId": "w", "targetHandle": "count"},
            {"id": "e2", "sourceNodeId": "c", "sourceHandle": "value", "targetNodeId": "w", "targetHandle": "numbers__0"},
        ],
    })
    prepare_checked(raw, registry)


def test_bypassed_nodes_are_not_checked(registry: NodeRegistry) -> None:
    prepare_checked(payload({"count": 1000}, bypassed=True), registry)


def test_config_values_follow_their_schema(registry: NodeRegistry) -> None:
    (issue,) = problems(registry, payload(configValues={"mode": "zzz"}))
    assert issue["rule"] == "options" and issue["input"] == "mode" and "setting 'mode'" in issue["message"]
    prepare_checked(payload(configValues={"mode": "b", "undeclared": 1}), registry)


def test_mode_inputs_are_checked_against_the_selected_mode(registry: NodeRegistry) -> None:
    raw = convert_payload({"nodes": [{"id": "m", "fullType": "t:Modes", "inputs": {"x": "abc"}, "configValues": {"mode": "negate"}}]})
    (issue,) = problems(registry, raw)
    assert issue["input"] == "x" and issue["rule"] == "type" and issue["expected"] == "FLOAT"


def test_long_values_are_summarised(registry: NodeRegistry) -> None:
    (issue,) = problems(registry, payload({"count": "y" * 10_000}))
    assert len(issue["value"]) < 300 and len(issue["message"]) < 500
    (issue,) = problems(registry, payload({"text": list(range(5000))}))
    assert issue["value"].startswith("<list of")


def test_huge_payloads_are_refused_for_their_size_first(registry: NodeRegistry) -> None:
    from comfytavern.engine import Limits

    raw = convert_payload({"nodes": [{"id": str(i), "fullType": "t:Widgets", "inputs": {"count": "x"}} for i in range(3)]})
    with pytest.raises(WorkflowInvalid) as info:
        prepare_checked(raw, registry, Limits(max_nodes=2))
    assert [i.type for i in info.value.issues] == ["too_large"]


def test_issue_count_is_bounded(registry: NodeRegistry) -> None:
    raw = convert_payload({"nodes": [{"id": str(i), "fullType": "t:Widgets", "inputs": {"count": "x", "flag": 1}} for i in range(500)]})
    assert len(problems(registry, raw)) == 200
