"""``core:History`` and ``core:MergeHistory``: build chat histories as JSON text.

Unlike the original, an invalid history is an error naming the slot (it was silently skipped,
so a typo quietly removed context from the conversation).
"""

from __future__ import annotations

from typing import Any

from comfytavern import Input, NodeContext, Output, node
from comfytavern_nodes_llm.errors import LlmConfigError
from comfytavern_nodes_llm.messages import dump_messages, parse_messages
from comfytavern_nodes_llm.runtime import as_text

__all__ = ["history", "merge_history"]

_ROLE_SUGGESTIONS = [
    {"value": "user", "label": "user"},
    {"value": "assistant", "label": "assistant"},
    {"value": "system", "label": "system"},
]
_ROLES = ("user", "assistant", "system")
_ORDINALS = ("一", "二", "三", "四")
_HISTORY_SLOTS = 4


def _history(inputs: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    messages: list[dict[str, str]] = []
    for i in range(1, _HISTORY_SLOTS + 1):
        content = as_text(inputs, f"content{i}").strip()
        if not content:
            continue
        role = as_text(inputs, f"role{i}").strip() or "user"
        if role not in _ROLES:
            raise LlmConfigError(f"role{i} must be one of {', '.join(_ROLES)}, got {role!r}")
        messages.append({"role": role, "content": content})
    return {"history": dump_messages(messages)}


def _merge_history(inputs: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    merged: list[dict[str, Any]] = []
    for i in range(1, _HISTORY_SLOTS + 1):
        merged.extend(parse_messages(inputs.get(f"history{i}"), slot=f"history{i}"))
    return {"history": dump_messages(merged)}


def _role_input(i: int) -> Input:
    return Input(
        data_flow_type="STRING",
        display_name=f"角色 {i}",
        description=f"第{_ORDINALS[i - 1]}个消息的角色",
        required=False,
        match_categories=["ComboOption"],
        config={"suggestions": _ROLE_SUGGESTIONS},
    )


def _content_input(i: int) -> Input:
    return Input(
        data_flow_type="STRING",
        display_name=f"内容 {i}",
        description=f"第{_ORDINALS[i - 1]}个消息的内容",
        required=False,
        config={"multiline": True},
    )


_history_inputs: dict[str, Input] = {}
for _i in range(1, _HISTORY_SLOTS + 1):
    _history_inputs[f"role{_i}"] = _role_input(_i)
    _history_inputs[f"content{_i}"] = _content_input(_i)

history = node(
    type="History",
    category="TEST-LLM",
    display_name="🦉历史记录",
    description="创建聊天历史记录",
    inputs=_history_inputs,
    outputs={
        "history": Output(
            data_flow_type="STRING",
            display_name="历史记录",
            description="生成的聊天历史记录 (JSON字符串)",
            match_categories=["ChatHistory", "Json"],
        ),
    },
)(_history)

merge_history = node(
    type="MergeHistory",
    category="TEST-LLM",
    display_name="🦉合并历史记录",
    description="合并多个聊天历史记录",
    inputs={
        f"history{i}": Input(
            data_flow_type="STRING",
            display_name=f"历史记录 {i}",
            description=f"第{_ORDINALS[i - 1]}个历史记录 (JSON字符串)",
            required=False,
            match_categories=["ChatHistory", "Json"],
        )
        for i in range(1, _HISTORY_SLOTS + 1)
    },
    outputs={
        "history": Output(
            data_flow_type="STRING",
            display_name="合并历史记录",
            description="合并后的聊天历史记录 (JSON字符串)",
            match_categories=["ChatHistory", "Json"],
        ),
    },
)(_merge_history)
