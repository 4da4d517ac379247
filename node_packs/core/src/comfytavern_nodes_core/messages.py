"""Chat messages as JSON text: build one message, merge several lists into one history.

The wire format is the original's: a JSON array of ``{"role", "content"}`` objects, encoded
compactly (as JavaScript's ``JSON.stringify``) so LLM nodes and saved workflows read it unchanged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from comfytavern import Input, NodeContext, Output, node
from comfytavern_nodes_core.values import as_text, pick, to_json_text

__all__ = ["NODES", "create_message", "merge_messages"]

log = logging.getLogger("comfytavern.nodes.core.messages")

ROLES = ("system", "user", "assistant")


@node(
    type="CreateMessage",
    category="LLM",
    display_name="💬创建消息",
    description="创建一条单独的对话消息",
    width=300,
    inputs={
        "role": Input(
            data_flow_type="STRING",
            display_name="角色",
            description="消息发送者的角色",
            required=True,
            match_categories=["ComboOption"],
            config={
                "default": "user",
                "suggestions": [{"value": role, "label": role} for role in ROLES],
            },
        ),
        "content": Input(
            data_flow_type="STRING",
            display_name="内容",
            description="消息的具体内容",
            required=True,
            match_categories=["UiBlock", "CanPreview"],
            config={"default": "", "multiline": True, "placeholder": "请输入消息内容..."},
        ),
    },
    outputs={
        "messages": Output(
            data_flow_type="STRING",
            display_name="消息",
            description="包含单条消息的JSON字符串",
            match_categories=["Json", "ChatHistory"],
        )
    },
)
async def create_message(inputs: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    role = pick(inputs, "role", "user")
    if not isinstance(role, str) or not role.strip():
        raise ValueError(f"input 'role' must be a non-empty text such as {', '.join(ROLES)}")
    content = as_text(pick(inputs, "content", ""))
    if content == "":
        return {"messages": "[]"}
    return {"messages": to_json_text([{"role": role.strip(), "content": content}])}


def _is_message(item: Any) -> bool:
    return isinstance(item, Mapping) and isinstance(item.get("role"), str) and item.get("content") is not None


def _messages_of(item: Any, position: int) -> list[Any]:
    """The messages in one input: a message, a list of messages, or the JSON text of either."""
    if item is None:
        return []
    if isinstance(item, str):
        if not item.strip():
            return []
        try:
            item = json.loads(item)
        except ValueError:
            log.warning("merge messages: input #%d is not valid JSON; skipped", position)
            return []
    if isinstance(item, list):
        kept = [dict(m) for m in item if _is_message(m)]
        if len(kept) != len(item):
            log.warning("merge messages: input #%d had %d entries without role/content; skipped", position, len(item) - len(kept))
        return kept
    if _is_message(item):
        return [dict(item)]
    log.warning("merge messages: input #%d is not a message or a list of messages; skipped", position)
    return []


@node(
    type="MergeMessages",
    category="LLM",
    display_name="🤝合并消息",
    description="将多条消息或消息列表合并成一个完整的消息历史",
    width=200,
    inputs={
        "message_inputs": Input(
            data_flow_type="STRING",
            display_name="消息输入",
            description="要合并的消息或消息列表 (JSON字符串)",
            required=True,
            multi=True,
            match_categories=["Json", "ChatMessage", "ChatHistory"],
        )
    },
    outputs={
        "messages": Output(
            data_flow_type="STRING",
            display_name="消息列表",
            description="合并后的消息列表 (JSON字符串)",
            match_categories=["Json", "ChatHistory"],
        )
    },
)
async def merge_messages(inputs: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    items = inputs.get("message_inputs")
    if items is None:
        raise ValueError("input 'message_inputs' is required: connect at least one message")
    if not isinstance(items, (list, tuple)):
        items = [items]
    merged: list[Any] = []
    for position, item in enumerate(items):
        merged.extend(_messages_of(item, position))
    return {"messages": to_json_text(merged)}


NODES = (create_message, merge_messages)
