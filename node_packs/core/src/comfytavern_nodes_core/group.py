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
    "这是一个**可转换**的插槽，初始类型为 `CONVERTIBLE_ANY`。\n"
    "\n"
    "- 连接后，其类型和名称将根据连接自动更新。\n"
    "- 会生成一个新的**空心插槽**。\n"
    "- 可在**侧边栏**编辑接口属性。"
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
        "定义节点组的输入接口。\n"
        "\n"
        "- 当一个**空心插槽**被连接时，它的类型和名称会根据连接自动更新。\n"
        "- 会生成一个新的**空心插槽**以供后续连接。\n"
        "- 可在**侧边栏**编辑接口属性。"
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
        "定义节点组的输出接口。\n"
        "\n"
        "- 当一个**空心插槽**被连接时，它的类型和名称会根据连接自动更新。\n"
        "- 会生成一个新的**空心插槽**以供后续连接。\n"
        "- 可在**侧边栏**编辑接口属性。"
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
    description="实例化一个可复用的节点组",
    width=250,
    config_schema={
        "referencedWorkflowId": Input(
            data_flow_type="STRING",
            display_name="引用的工作流",
            description="选择一个保存的工作流作为节点组定义",
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
