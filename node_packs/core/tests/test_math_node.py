from __future__ import annotations

import math
from typing import Any

import pytest

pytestmark = pytest.mark.anyio

CASES: list[tuple[str, dict[str, Any], float]] = [
    ("add", {"a": 2, "b": 3}, 5.0),
    ("subtract", {"a": 2, "b": 3.5}, -1.5),
    ("multiply", {"a": -2, "b": 3}, -6.0),
    ("multiply_add", {"val1": 2, "val2": 3, "val3": 4}, 10.0),
    ("divide", {"a": 1, "b": 4}, 0.25),
    ("power", {"base": 3}, 9.0),  # exponent defaults to 2
    ("power", {"base": 3, "exponent": 0}, 1.0),  # a real 0 stays 0 (the original used 2)
    ("power", {"base": -2, "exponent": 3}, -8.0),
    ("logarithm", {"value": math.e}, 1.0),  # base defaults to e
    ("logarithm", {"value": 8, "base": 2}, 3.0),
    ("sqrt", {"value": 16}, 4.0),
    ("inverse_sqrt", {"value": 4}, 0.5),
    ("absolute", {"value": -3.5}, 3.5),
    ("exp", {"value": 0}, 1.0),
    ("min", {"a": 2, "b": -1}, -1.0),
    ("max", {"a": 2, "b": -1}, 2.0),
    ("lessThan", {"a": 1, "b": 2}, 1.0),
    ("lessThan", {"a": 2, "b": 2}, 0.0),
    ("greaterThan", {"a": 3, "b": 2}, 1.0),
    ("sign", {"value": -0.1}, -1.0),
    ("sign", {"value": 0}, 0.0),
    ("round", {"value": 2.5}, 3.0),
    ("round", {"value": -2.5}, -2.0),  # .5 rounds up, as JavaScript's Math.round
    ("floor", {"value": -1.5}, -2.0),
    ("ceil", {"value": -1.5}, -1.0),
    ("truncate", {"value": -1.7}, -1.0),
    ("fraction", {"value": -1.25}, 0.75),  # x - floor(x)
    ("modulo", {"a": -7, "b": 3}, -1.0),  # sign of the dividend
    ("sin", {"value": math.pi / 2}, 1.0),
    ("cos", {"value": 0}, 1.0),
    ("tan", {"value": 0}, 0.0),
    ("asin", {"value": 1}, math.pi / 2),
    ("acos", {"value": 1}, 0.0),
    ("atan", {"value": 1}, math.pi / 4),
    ("atan2", {"y": 1, "x": 0}, math.pi / 2),
    ("sinh", {"value": 0}, 0.0),
    ("cosh", {"value": 0}, 1.0),
    ("tanh", {"value": 0}, 0.0),
    ("to_radians", {"degrees": 180}, math.pi),
    ("to_degrees", {"radians": math.pi}, 180.0),
]


@pytest.mark.parametrize(("mode", "inputs", "expected"), CASES)
async def test_math_modes(core: dict[str, Any], run_node: Any, mode: str, inputs: dict[str, Any], expected: float) -> None:
    result = await run_node(core["MathOperation"], inputs, config_values={"operationMode": mode})
    assert result.outputs["result"] == pytest.approx(expected)
    assert isinstance(result.outputs["result"], float)


def test_every_mode_is_tested(core: dict[str, Any]) -> None:
    assert set(core["MathOperation"].definition.modes) == {mode for mode, _, _ in CASES}


@pytest.mark.parametrize(("value", "expected"), [(1.7, 1.0), (-3, 0.0), (0.25, 0.25)])
async def test_clamp_limits_to_unit_range(core: dict[str, Any], run_node: Any, value: float, expected: float) -> None:
    result = await run_node(core["MathOperation"], {"a": value, "b": 0, "clamp": True})
    assert result.outputs == {"result": expected}


@pytest.mark.parametrize("clamp", [True, 1, "true"])
async def test_clamp_accepts_boolean_like_values(core: dict[str, Any], run_node: Any, clamp: Any) -> None:
    result = await run_node(core["MathOperation"], {"a": 5, "b": 0, "clamp": clamp})
    assert result.outputs == {"result": 1.0}


async def test_numeric_strings_are_accepted(core: dict[str, Any], run_node: Any) -> None:
    assert (await run_node(core["MathOperation"], {"a": "1.5", "b": " 2 "})).outputs == {"result": 3.5}


async def test_default_mode_is_add(core: dict[str, Any], run_node: Any) -> None:
    assert (await run_node(core["MathOperation"], {"a": 1, "b": 2})).outputs == {"result": 3.0}


async def test_engine_mode_wins_over_config(core: dict[str, Any], run_node: Any) -> None:
    result = await run_node(core["MathOperation"], {"a": 2, "b": 5}, config_values={"operationMode": "add"}, mode_id="max")
    assert result.outputs == {"result": 5.0}


@pytest.mark.parametrize(
    ("mode", "inputs", "message"),
    [
        ("divide", {"a": 1, "b": 0}, "division by zero"),
        ("modulo", {"a": 1, "b": 0}, "modulo by zero"),
        ("sqrt", {"value": -1}, "negative"),
        ("inverse_sqrt", {"value": 0}, "greater than 0"),
        ("logarithm", {"value": 0}, "greater than 0"),
        ("logarithm", {"value": 2, "base": 1}, "base"),
        ("power", {"base": -8, "exponent": 1 / 3}, "whole-number exponent"),
        ("power", {"base": 0, "exponent": -1}, "negative power"),
        ("power", {"base": 10, "exponent": 400}, "too large"),
        ("exp", {"value": 1000}, "too large"),
        ("cosh", {"value": 1000}, "too large"),
        ("asin", {"value": 2}, "between -1 and 1"),
        ("acos", {"value": -1.5}, "between -1 and 1"),
        ("add", {"a": "abc", "b": 1}, "'a' must be a number"),
        ("add", {"a": True, "b": 1}, "'a' must be a number, got a boolean"),
        ("add", {"a": [1], "b": 1}, "'a' must be a number"),
        ("add", {"a": "inf", "b": 1}, "finite"),
        ("add", {"b": 1}, "'a' is required"),
        ("add", {"a": 1, "b": 2, "clamp": "maybe"}, "'clamp' must be a boolean"),
    ],
)
async def test_bad_inputs_fail_clearly(
    core: dict[str, Any], run_node: Any, mode: str, inputs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await run_node(core["MathOperation"], inputs, config_values={"operationMode": mode})


async def test_unknown_mode_is_an_error(core: dict[str, Any], run_node: Any) -> None:
    with pytest.raises(ValueError, match="unknown operationMode 'cube'"):
        await run_node(core["MathOperation"], {"a": 1, "b": 2}, mode_id="cube")
