from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ({"text_inputs": ["a", "b", "c"]}, "a\nb\nc"),  # default separator is the text "\n"
        ({"text_inputs": ["a", "b"], "separator": " | "}, "a | b"),
        ({"text_inputs": ["a", "b"], "separator": "\\t"}, "a\tb"),
        ({"text_inputs": ["a", "b"], "separator": "\\\\"}, "a\\b"),
        ({"text_inputs": ["a", "b"], "separator": "\\q"}, "a\\qb"),  # unknown escape kept
        ({"text_inputs": ["a", "b"], "separator": ""}, "ab"),
        ({"text_inputs": "solo"}, "solo"),  # a scalar is one text
        ({"text_inputs": []}, ""),
        # Numbers print as in JavaScript (the original's output), None as empty, objects as JSON.
        ({"text_inputs": [42, 50.0, 0.5, True, None, {"k": "值"}], "separator": ","}, '42,50,0.5,true,,{"k":"值"}'),
    ],
)
async def test_text_merge(core: dict[str, Any], run_node: Any, inputs: dict[str, Any], expected: str) -> None:
    assert (await run_node(core["TextMerge"], inputs)).outputs == {"merged_text": expected}


async def test_text_merge_requires_texts(core: dict[str, Any], run_node: Any) -> None:
    with pytest.raises(ValueError, match="text_inputs"):
        await run_node(core["TextMerge"], {"separator": ","})


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ({}, 0),
        ({"value": 42, "mode": "随机"}, 42),  # the browser applies the mode, never the server
        ({"value": "7"}, 7),
        ({"value": 9.0}, 9),
        ({"value": 4294967295}, 4294967295),
    ],
)
async def test_random_number_outputs_the_stored_value(
    core: dict[str, Any], run_node: Any, inputs: dict[str, Any], expected: int
) -> None:
    assert (await run_node(core["RandomNumber"], inputs)).outputs == {"number": expected}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "between 0 and 4294967295"),
        (4294967296, "between 0 and 4294967295"),
        (1.5, "whole number"),
        ("abc", "must be a number"),
        (True, "must be a number"),
        ([1], "must be a number"),
    ],
)
async def test_random_number_rejects_bad_values(core: dict[str, Any], run_node: Any, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await run_node(core["RandomNumber"], {"value": value})


def test_random_number_has_its_client_script(core: dict[str, Any]) -> None:
    item = core["RandomNumber"]
    script = item.source_dir / item.definition.client_script_url
    text = script.read_text(encoding="utf-8")
    assert "export function setupClientNode(vueFlow, nodeProps, ctx)" in text
    for hook in ("onButtonClick", "onWorkflowExecute", "updateInputValue", "getNodeInputValue"):
        assert hook in text
