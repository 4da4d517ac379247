from __future__ import annotations

from typing import Any

import anyio
import pytest

pytestmark = pytest.mark.anyio


async def test_group_input_outputs_each_interface_default(core: dict[str, Any], run_node: Any) -> None:
    interface = {
        "input_0": {"key": "input_0", "dataFlowType": "STRING", "config": {"default": "hello"}},
        "input_1": {"key": "input_1", "dataFlowType": "INTEGER", "config": {"default": 0}},
        "input_2": {"key": "input_2", "dataFlowType": "CONVERTIBLE_ANY"},
        "input_3": {"key": "input_3", "dataFlowType": "STRING", "config": {"placeholder": "x"}},
    }
    result = await run_node(core["GroupInput"], interface_inputs=interface)
    # Slots without a default produce no value, so downstream inputs fall back to their own.
    assert result.outputs == {"input_0": "hello", "input_1": 0}


async def test_group_input_without_interface_outputs_nothing(core: dict[str, Any], run_node: Any) -> None:
    assert (await run_node(core["GroupInput"])).outputs == {}


async def test_group_input_rejects_a_malformed_slot_config(core: dict[str, Any], run_node: Any) -> None:
    with pytest.raises(ValueError, match="input_0.*malformed config"):
        await run_node(core["GroupInput"], interface_inputs={"input_0": {"config": "oops"}})


async def test_group_output_drains_every_stream_and_returns_nothing(
    core: dict[str, Any], run_node: Any, make_stream: Any
) -> None:
    seen: list[str] = []

    async def tracked(name: str, n: int) -> Any:
        for i in range(n):
            await anyio.sleep(0)
            seen.append(f"{name}{i}")
            yield {"type": "text_chunk", "content": str(i)}

    inputs = {
        "output_0": tracked("a", 3),
        "output_1": "plain value",
        "output_2": [tracked("b", 2), None],
        "output_3": None,
    }
    result = await run_node(core["GroupOutput"], inputs)
    assert result.outputs == {}
    assert sorted(seen) == ["a0", "a1", "a2", "b0", "b1"]


async def test_group_output_ignores_a_failing_stream(core: dict[str, Any], run_node: Any) -> None:
    async def broken() -> Any:
        yield {"type": "text_chunk", "content": "x"}
        raise RuntimeError("upstream failed")

    assert (await run_node(core["GroupOutput"], {"output_0": broken()})).outputs == {}


async def test_node_group_explains_that_it_was_not_expanded(core: dict[str, Any], run_node: Any) -> None:
    with pytest.raises(RuntimeError, match=r"node group 'node-1' \(workflow 'wf-7'\) was not expanded"):
        await run_node(core["NodeGroup"], config_values={"referencedWorkflowId": "wf-7"})
