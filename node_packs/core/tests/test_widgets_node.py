from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.anyio


async def test_defaults_are_echoed(core: dict[str, Any], run_node: Any) -> None:
    outputs = (await run_node(core["TestWidgets"], {})).outputs
    assert outputs["string_output"] == "这是默认文本"
    assert outputs["int_output"] == 10
    assert outputs["float_output"] == 0.5
    assert outputs["boolean_output"] is True
    assert outputs["combo_output"] == "选项A"
    assert outputs["json_output"] == {"name": "咕咕", "type": "猫头鹰娘", "skill": "智慧"}
    assert outputs["int_with_suggestions_output"] == 512
    assert outputs["float_with_suggestions_output"] == 7.5
    assert set(outputs) == set(core["TestWidgets"].definition.outputs)


async def test_json_default_is_never_shared(core: dict[str, Any], run_node: Any) -> None:
    first = (await run_node(core["TestWidgets"], {})).outputs["json_output"]
    first["name"] = "changed"
    second = (await run_node(core["TestWidgets"], {})).outputs["json_output"]
    assert second["name"] == "咕咕"


async def test_values_are_echoed_and_coerced(core: dict[str, Any], run_node: Any) -> None:
    inputs = {
        "string_input": "hello from anchor",
        "int_input": "42",
        "float_input": 1,
        "boolean_toggle": "false",
        "json_input": '{"a": [1, 2]}',
        "button_trigger": None,
    }
    outputs = (await run_node(core["TestWidgets"], inputs)).outputs
    assert outputs["string_output"] == "hello from anchor"
    assert outputs["int_output"] == 42
    assert outputs["float_output"] == 1.0
    assert outputs["boolean_output"] is False
    assert outputs["json_output"] == {"a": [1, 2]}


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"string_input": 5}, "'string_input' must be text"),
        ({"int_input": 1.5}, "whole number"),
        ({"float_input": "x"}, "'float_input' must be a number"),
        ({"boolean_toggle": "perhaps"}, "'boolean_toggle' must be a boolean"),
        ({"json_input": "{broken"}, "not valid JSON"),
        ({"json_input": 3}, "JSON object or array"),
    ],
)
async def test_bad_values_fail_clearly(core: dict[str, Any], run_node: Any, inputs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await run_node(core["TestWidgets"], inputs)
