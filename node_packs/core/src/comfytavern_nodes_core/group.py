"""Group I/O: the interface nodes of a workflow and the node-group instance.

``GroupInput``/``GroupOutput`` have dynamic slots: the editor names their real handles after the
workflow's interface keys (``input_0``, ``output_1``...), so their definitions only carry the
initial convertible slot. The engine collects interface outputs itself (from
``outputInterfaceMappings``); ``GroupOutput`` only has to let its streams finish.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Mapping
from typing import Any

import anyio

from comfytavern import Input, NodeContext, Output, node

__all__ = ["NODES", "group_input", "group_output", "node_group"]

log = logging.getLogger("comfytavern.nodes.core.group")

_CONVERTIBLE_HELP = (
    "可转换插槽，初始类型为 `CONVERTIBLE_ANY`。\n\n"
    "- 连上线后，类型与名称会跟随对端自动确定。\n"
    "- 同时会再出现一个新的空心插槽，供下一次连接使用。\n"
    "- 接口属性可在**侧边栏**中修改。"
)


def _slot_default(key: str, slot: Any) -> tuple[bool, Any]:
    """``(has_default, value)`` of one interface slot (a GroupSlotInfo dict)."""
    config = slot.get("config") if isinstance(slot, Mapping) else getattr(slot, "config", None)
    if config is None:
        return False, None
    if not isinstance(config, Mapping):
        raise ValueError(f"interface input {key!r} has a malformed config (expected an object)")
    return ("default" in config), config.get("default")


@node(
    type="GroupInput",
    category="Group",
    display_name="🧬组输入",
    description=(
        "工作流（或节点组）的输入接口。\n\n"
        "- 把**空心插槽**连到其他节点时，它会按对端自动确定类型和名称。\n"
        "- 每连上一个，就会补出一个新的空心插槽。\n"
        "- 接口的名称、类型和默认值可在**侧边栏**中编辑。\n\n"
        "运行时每个接口输出它在接口定义里的默认值。"
    ),
    dynamic_slots=True,
    outputs={
        "output_0": Output(
            data_flow_type="CONVERTIBLE_ANY",
            display_name="*",
            description=_CONVERTIBLE_HELP,
            match_categories=["BehaviorConvertible"],
            allow_dynamic_type=True,
        )
    },
)
async def group_input(inputs: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Every interface input's ``config.default``; inputs without a default produce no value.

    Leaving them out (rather than sending ``None``) lets a downstream input fall back to its own
    preset or default, exactly as the original's ``undefined`` did.
    """
    out: dict[str, Any] = {}
    for key, slot in ctx.interface_inputs.items():
        has_default, value = _slot_default(key, slot)
        if has_default:
            out[key] = value
    return out


async def _drain(stream: AsyncIterable[Any], key: str) -> None:
    try:
        async for _ in stream:
            pass
    except Exception as exc:  # noqa: BLE001 - the producer reports its own failure
        log.debug("stream into group output %r ended with %s", key, exc)


def _streams(value: Any) -> list[AsyncIterable[Any]]:
    if isinstance(value, AsyncIterable):
        return [value]
    if isinstance(value, (list, tuple)):
        return [item for item in value if isinstance(item, AsyncIterable)]
    return []


@node(
    type="GroupOutput",
    category="Group",
    display_name="🧬组输出",
    description=(
        "工作流（或节点组）的输出接口。\n\n"
        "- 把其他节点连到**空心插槽**时，它会按对端自动确定类型和名称。\n"
        "- 每连上一个，就会补出一个新的空心插槽。\n"
        "- 接口属性可在**侧边栏**中编辑。"
    ),
    dynamic_slots=True,
    inputs={
        "input_0": Input(
            data_flow_type="CONVERTIBLE_ANY",
            display_name="*",
            description=_CONVERTIBLE_HELP,
            match_categories=["BehaviorConvertible"],
            allow_dynamic_type=True,
        )
    },
)
async def group_output(inputs: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Let every incoming stream run to its end (all at once, so no producer waits on another)."""
    async with anyio.create_task_group() as tg:
        for key, value in inputs.items():
            for stream in _streams(value):
                tg.start_soon(_drain, stream, key)
    return {}


@node(
    type="NodeGroup",
    category="Group",
    display_name="📦节点组",
    description="把另一个已保存的工作流当作一个节点使用（可复用的节点组）。",
    width=250,
    config_schema={
        "referencedWorkflowId": Input(
            data_flow_type="STRING",
            display_name="引用的工作流",
            description="作为本节点组内容的工作流",
            required=True,
            match_categories=["ResourceId"],
            config={
                "acceptedTypes": [{"value": "workflow", "label": "工作流"}],
                "placeholder": "选择一个工作流...",
            },
        )
    },
)
def node_group(inputs: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Never runs: the engine replaces a group by the nodes of the workflow it references."""
    referenced = ctx.config_values.get("referencedWorkflowId")
    raise RuntimeError(
        f"node group {ctx.node_id!r} (workflow {referenced!r}) was not expanded before running; "
        "node groups are expanded into their inner nodes by the engine"
    )


NODES = (group_input, group_output, node_group)
