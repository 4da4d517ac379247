"""``core:ApplyRegex`` and ``core:ContextBuilder`` (category ``Processors``)."""

from __future__ import annotations

from typing import Any

from comfytavern import Input, InputAction, NodeContext, Output, node
from comfytavern_nodes_tavern.errors import TavernError
from comfytavern_nodes_tavern.prompt import build_messages
from comfytavern_nodes_tavern.regex_rules import apply_rules, merge_rules, parse_rule_list

__all__ = ["apply_regex", "context_builder"]


def _apply_regex(inputs: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    text = inputs.get("inputText")
    if not isinstance(text, str):
        raise TavernError("inputText must be a string")
    inline = parse_rule_list(inputs.get("inlineRegexRules"), "inlineRegexRules")
    loaded = parse_rule_list(inputs.get("regexRules"), "regexRules")
    return {"outputText": apply_rules(text, merge_rules(inline, loaded))}


def _context_builder(inputs: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    messages = build_messages(
        inputs.get("presetData"),
        inputs.get("worldBookData"),
        inputs.get("characterData"),
        inputs.get("historyMessages"),
        user_name=ctx.user.username,
    )
    return {"finalMessages": messages}


apply_regex = node(
    type="ApplyRegex",
    category="Processors",
    display_name="🔄应用正则",
    description="将正则表达式规则应用于输入文本",
    width=300,
    inputs={
        "inputText": Input(
            data_flow_type="STRING",
            display_name="输入文本",
            description="需要应用正则表达式的文本",
            required=True,
        ),
        "inlineRegexRules": Input(
            data_flow_type="ARRAY",
            display_name="内联正则规则",
            match_categories=["RegexRuleArray"],
            description=(
                "直接在节点上编辑的正则表达式规则列表。如果此输入槽连接了数据，则使用连接的值；如果未连接，"
                "则可以使用下方按钮编辑并使用此处存储的值。规则将按顺序应用，并与 `加载的正则规则` "
                "输入槽加载的规则合并（内联规则优先，同名去重）。"
            ),
            required=False,
            config={"defaultValue": []},
            actions=[
                InputAction(
                    id="edit_inline_rules",
                    icon="ListBulletIcon",
                    tooltip="编辑内联正则规则",
                    handler_type="open_panel",
                    handler_args={"panelId": "RegexEditorModal", "panelTitle": "编辑内联正则规则"},
                )
            ],
        ),
        "regexRules": Input(
            data_flow_type="ARRAY",
            display_name="正则规则输入",
            match_categories=["RegexRuleArray"],
            description="通过连接加载的正则表达式规则列表。将与内联规则合并（内联规则优先，同名去重）。",
            required=False,
        ),
    },
    outputs={
        "outputText": Output(data_flow_type="STRING", display_name="输出文本", description="应用正则表达式后的文本"),
    },
)(_apply_regex)

context_builder = node(
    type="ContextBuilder",
    category="Processors",
    display_name="🧱上下文构建器",
    description="将预设、世界书、角色卡和历史组合成最终的 LLM 输入消息",
    width=350,
    inputs={
        "presetData": Input(
            data_flow_type="OBJECT", display_name="预设数据", description="来自 PresetLoader 的数据", required=False
        ),
        "worldBookData": Input(
            data_flow_type="OBJECT", display_name="世界书数据", description="来自 WorldBookLoader 的数据", required=False
        ),
        "characterData": Input(
            data_flow_type="OBJECT",
            display_name="角色数据",
            description="来自 CharacterCardLoader 的数据",
            required=False,
            match_categories=["CharacterProfile"],
        ),
        "historyMessages": Input(
            data_flow_type="ARRAY",
            display_name="历史消息",
            description="来自 HistoryLoader 的数据",
            required=False,
            match_categories=["ChatHistory"],
        ),
    },
    outputs={
        "finalMessages": Output(
            data_flow_type="ARRAY",
            display_name="最终消息",
            description="组合后的最终消息列表 (CustomMessage[])",
            match_categories=["ChatHistory"],
        ),
    },
)(_context_builder)
