from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.anyio

CASES: list[tuple[str, dict[str, Any], Any]] = [
    ("add", {}, [[2, 0], [0, 2]]),  # both default to the JSON text of the identity
    ("add", {"a": [[1, 2], [3, 4]], "b": "[[10, 20], [30, 40]]"}, [[11, 22], [33, 44]]),
    ("add", {"a": 1, "b": [[1, 2], [3, 4]]}, [[2, 3], [4, 5]]),
    ("add", {"a": "2", "b": 3}, 5),
    ("add", {"a": [1, 2], "b": [3, 4.5]}, [4, 6.5]),
    ("subtract", {"a": [[5, 5], [5, 5]], "b": [[1, 2], [3, 4]]}, [[4, 3], [2, 1]]),
    ("subtract", {"a": [[5, 5]], "b": 1}, [[4, 4]]),
    ("multiply", {"a": [[1, 2], [3, 4]], "b": [[5, 6], [7, 8]]}, [[19, 22], [43, 50]]),
    ("multiply", {"a": [[1, 2, 3]], "b": [[1], [2], [3]]}, [[14]]),
    ("multiply", {"a": [1, 2, 3], "b": [4, 5, 6]}, 32),  # vector dot product
    ("multiply", {"a": [[1, 2], [3, 4]], "b": [1, 1]}, [3, 7]),
    ("multiply", {"a": [1, 1], "b": [[1, 2], [3, 4]]}, [4, 6]),
    ("multiply", {"a": 2, "b": [[1, 2], [3, 4]]}, [[2, 4], [6, 8]]),
    ("transpose", {"matrix": [[1, 2, 3], [4, 5, 6]]}, [[1, 4], [2, 5], [3, 6]]),
    ("transpose", {"matrix": [1, 2]}, [1, 2]),
    ("invert", {"matrix": [[1, 2], [3, 4]]}, [[-2, 1], [1.5, -0.5]]),
    ("invert", {"matrix": [[2.0, 0.0], [0.0, 4.0]]}, [[0.5, 0.0], [0.0, 0.25]]),
    ("invert", {"matrix": [[0, 1], [1, 0]]}, [[0, 1], [1, 0]]),
    ("invert", {"matrix": 4}, 0.25),
    ("det", {"matrix": [[1, 2], [3, 4]]}, -2.0),
    ("det", {"matrix": [[2, 0, 0], [0, 3, 0], [0, 0, 4]]}, 24.0),
    ("det", {"matrix": [[1, 2], [2, 4]]}, 0.0),
    ("det", {"matrix": [[0.5, 1.5], [1.0, 2.0]]}, -0.5),
    ("det", {"matrix": "[[7]]"}, 7.0),
]


@pytest.mark.parametrize(("mode", "inputs", "expected"), CASES)
async def test_matrix_modes(core: dict[str, Any], run_node: Any, mode: str, inputs: dict[str, Any], expected: Any) -> None:
    result = await run_node(core["MatrixOperation"], inputs, config_values={"operationMode": mode})
    assert result.outputs == {"result": expected}


def test_every_mode_is_tested(core: dict[str, Any]) -> None:
    assert set(core["MatrixOperation"].definition.modes) == {mode for mode, _, _ in CASES}


async def test_det_is_a_float(core: dict[str, Any], run_node: Any) -> None:
    result = await run_node(core["MatrixOperation"], {"matrix": [[1, 2], [3, 4]]}, config_values={"operationMode": "det"})
    assert isinstance(result.outputs["result"], float)


@pytest.mark.parametrize(
    ("mode", "inputs", "message"),
    [
        ("add", {"a": [[1, 2]], "b": [[1], [2]]}, "shapes differ"),
        ("add", {"a": [1, 2], "b": [[1, 2]]}, "shapes differ"),
        ("multiply", {"a": [[1, 2]], "b": [[1, 2]]}, "inner dimensions 2 and 1 differ"),
        ("multiply", {"a": [1, 2], "b": [1, 2, 3]}, "inner dimensions"),
        ("invert", {"matrix": [[1, 2], [2, 4]]}, "singular"),
        ("invert", {"matrix": [[1, 2, 3]]}, "square matrix"),
        ("invert", {"matrix": 0}, "cannot invert 0"),
        ("det", {"matrix": [1, 2]}, "square matrix"),
        ("add", {"a": "[[1, 2], [3]]", "b": 1}, "same, non-zero length"),
        ("add", {"a": "not json", "b": 1}, "not a number, vector or matrix"),
        ("add", {"a": [], "b": 1}, "non-empty"),
        ("add", {"a": {"x": 1}, "b": 1}, "must be a number"),
        ("add", {"a": [[1, "2"]], "b": 1}, "entries must be numbers"),
        ("add", {"a": [[True]], "b": 1}, "entries must be numbers"),
        ("transpose", {}, "'matrix' is required"),
        ("det", {"matrix": [[0] * 201] * 201}, "limited to"),
    ],
)
async def test_bad_operands_fail_clearly(
    core: dict[str, Any], run_node: Any, mode: str, inputs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await run_node(core["MatrixOperation"], inputs, config_values={"operationMode": mode})


def test_matrix_node_runs_in_a_worker_thread(core: dict[str, Any]) -> None:
    """CPU-bound: a plain function, which the engine runs off the event loop."""
    import inspect

    execute = core["MatrixOperation"].execute
    assert not inspect.iscoroutinefunction(execute) and not inspect.isasyncgenfunction(execute)
