"""Utilities: merge texts, and the random number whose logic runs in the browser."""

from __future__ import annotations

from typing import Any

from comfytavern import Input, NodeContext, Output, node
from comfytavern_nodes_core.values import as_int, as_text, parse_escapes, pick

__all__ = ["NODES", "random_number", "text_merge"]

#: Literally backslash + ``n``: the widget shows what the user types, escapes are parsed here.
DEFAULT_SEPARATOR = "\\n"
RANDOM_MAX = 4294967295


@node(
    type="TextMerge",
    category="实用工具",
    display_name="📝文本合并",
    description="将多个文本输入合并成一个完整的文本",
    inputs={
        "separator": Input(
            data_flow_type="STRING",
            display_name="分隔符",
            description="用于分隔文本的字符串",
            config={"default": DEFAULT_SEPARATOR, "multiline": False, "placeholder": "输入分隔符", "label": "分隔符"},
        ),
        "text_inputs": Input(
            data_flow_type="STRING",
            display_name="文本输入",
            description="要合并的文本输入",
            required=True,
            multi=True,
            match_categories=["UiBlock"],
        ),
    },
    outputs={
        "merged_text": Output(data_flow_type="STRING", display_name="合并文本", description="合并后的文本输出"),
    },
)
async def text_merge(inputs: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Join the texts in connection order; numbers print as in JavaScript, objects as JSON."""
    texts = inputs.get("text_inputs")
    if texts is None:
        raise ValueError("input 'text_inputs' is required: connect at least one text")
    items = list(texts) if isinstance(texts, (list, tuple)) else [texts]
    separator = parse_escapes(as_text(pick(inputs, "separator", DEFAULT_SEPARATOR)))
    return {"merged_text": separator.join(as_text(item) for item in items)}


@node(
    type="RandomNumber",
    category="实用工具",
    display_name="🎲随机数生成器",
    description="生成和操作一个32位随机整数 (前端执行)",
    width=260,
    client_script_url="client-scripts/RandomNumberNode.js",
    inputs={
        "mode": Input(
            data_flow_type="STRING",
            display_name="模式",
            description="控制数字如何变化",
            match_categories=["ComboOption"],
            config={
                "suggestions": [
                    {"value": "固定", "label": "固定"},
                    {"value": "增加", "label": "增加"},
                    {"value": "减少", "label": "减少"},
                    {"value": "随机", "label": "随机"},
                ],
                "default": "固定",
            },
        ),
        "value": Input(
            data_flow_type="INTEGER",
            display_name="当前值",
            description="当前内部存储的数值",
            config={"default": 0, "min": 0, "max": RANDOM_MAX},
        ),
        "reroll": Input(
            data_flow_type="WILDCARD",
            display_name="重新随机",
            description="点击以生成一个新的随机数",
            match_categories=["Trigger"],
            config={"label": "重新随机"},
        ),
    },
    outputs={
        "number": Output(data_flow_type="INTEGER", display_name="数值", description="生成的随机数"),
    },
)
async def random_number(inputs: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Output the stored value; the client script changes it before each run, never the server.

    Applying the mode here too would step the number twice per run from the editor.
    """
    value = as_int(pick(inputs, "value", 0), "value", minimum=0, maximum=RANDOM_MAX)
    return {"number": value}


NODES = (text_merge, random_number)
