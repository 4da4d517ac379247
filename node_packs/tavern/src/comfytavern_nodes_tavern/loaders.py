"""The five loader nodes. Each reads the file its config value names (the original's loaders
never received their config values, so every one of them failed at run time).

Definitions match the reference catalogue exactly (keys, types, widget config).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from comfytavern import Input, NodeContext, Output, node
from comfytavern.services import CONFIG
from comfytavern_cards import CardError, PngLimits, card_library_settings, read_card_path
from comfytavern_nodes_tavern.errors import TavernError
from comfytavern_nodes_tavern.messages import parse_history
from comfytavern_nodes_tavern.regex_rules import parse_rule_list
from comfytavern_nodes_tavern.resources import read_structured, resolve_resource
from comfytavern_nodes_tavern.worldbook import parse_world_book

__all__ = [
    "character_card_loader",
    "history_loader",
    "preset_loader",
    "regex_rule_loader",
    "world_book_loader",
]

_CATEGORY = "Loaders"
_WIDTH = 300


def _resource_input(display: str, description: str, accepted: list[tuple[str, str]], placeholder: str) -> Input:
    return Input(
        data_flow_type="STRING",
        display_name=display,
        description=description,
        required=True,
        match_categories=["ResourceId", "FilePath"],
        config={
            "acceptedTypes": [{"value": value, "label": label} for value, label in accepted],
            "placeholder": placeholder,
        },
    )


def _config_value(ctx: NodeContext, key: str) -> Any:
    return ctx.config_values.get(key)


def _load_structured(ctx: NodeContext, key: str, check: Callable[[Any, str], Any]) -> Any:
    path = resolve_resource(ctx, _config_value(ctx, key), key=key)
    value = read_structured(path, key)
    check(value, f"{key} ({path.name})")
    return value


def _require_object(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise TavernError(f"{where} must contain a JSON object")


def _preset(inputs: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    return {"presetData": _load_structured(ctx, "presetResource", _require_object)}


def _world_book(inputs: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    return {"worldBookData": _load_structured(ctx, "worldBookResource", parse_world_book)}


def _character_card(inputs: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    key = "cardResource"
    path = resolve_resource(ctx, _config_value(ctx, key), key=key, card_library=True)
    settings = card_library_settings(ctx.service(CONFIG))
    limits = PngLimits(max_text_chunk_bytes=settings.max_card_bytes, max_text_bytes=settings.max_card_bytes)
    try:
        card, _ = read_card_path(path, limits=limits)
    except CardError as exc:
        raise TavernError(f"{key}: {path.name} is not a usable character card: {exc}") from None
    return {"characterData": card.to_v3()}


def _history(inputs: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    key = "historyResource"
    path = resolve_resource(ctx, _config_value(ctx, key), key=key)
    return {"historyMessages": parse_history(read_structured(path, key), f"{key} ({path.name})")}


def _regex_rules(inputs: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    key = "ruleResource"
    path = resolve_resource(ctx, _config_value(ctx, key), key=key)
    rules = parse_rule_list(read_structured(path, key), f"{key} ({path.name})")
    return {"regexRules": [rule.as_dict() for rule in rules]}


def _loader(
    node_type: str,
    display_name: str,
    description: str,
    output: tuple[str, Output],
    config: tuple[str, Input],
    execute: Callable[[dict[str, Any], NodeContext], dict[str, Any]],
) -> Any:
    """A loader node: no inputs, one output, one resource selector in ``configSchema``."""
    return node(
        type=node_type,
        category=_CATEGORY,
        display_name=display_name,
        description=description,
        width=_WIDTH,
        inputs={},
        outputs={output[0]: output[1]},
        config_schema={config[0]: config[1]},
    )(execute)


preset_loader = _loader(
    "PresetLoader",
    "💾加载预设",
    "从文件加载 LLM 提示词预设配置",
    ("presetData", Output(data_flow_type="OBJECT", display_name="预设数据", description="解析后的预设配置对象")),
    ("presetResource", _resource_input("预设文件", "选择一个预设配置文件 (JSON)", [("json", "预设 (JSON)")], "选择一个预设文件...")),
    _preset,
)

world_book_loader = _loader(
    "WorldBookLoader",
    "📚加载世界书",
    "从文件加载世界书配置",
    ("worldBookData", Output(data_flow_type="OBJECT", display_name="世界书数据", description="解析后的世界书配置对象")),
    (
        "worldBookResource",
        _resource_input(
            "世界书文件",
            "选择一个世界书配置文件 (JSON/YAML)",
            [("json", "世界书 (JSON)"), ("yaml", "世界书 (YAML)")],
            "选择一个世界书文件...",
        ),
    ),
    _world_book,
)

character_card_loader = _loader(
    "CharacterCardLoader",
    "👤加载角色卡",
    "从文件加载角色卡数据 (JSON/PNG)",
    (
        "characterData",
        Output(
            data_flow_type="OBJECT",
            display_name="角色数据",
            description="解析后的角色卡数据对象",
            match_categories=["CharacterProfile"],
        ),
    ),
    (
        "cardResource",
        _resource_input(
            "角色卡文件",
            "选择一个角色卡文件 (JSON 或 PNG)",
            [("json", "角色卡 (JSON)"), ("png", "角色卡 (PNG)")],
            "选择一个角色卡文件...",
        ),
    ),
    _character_card,
)

history_loader = _loader(
    "HistoryLoader",
    "📜加载历史",
    "从文件加载对话历史 (CustomMessage[] 格式)",
    (
        "historyMessages",
        Output(
            data_flow_type="ARRAY",
            display_name="历史消息",
            description="加载的对话历史消息数组 (CustomMessage[])",
            match_categories=["ChatHistory"],
        ),
    ),
    ("historyResource", _resource_input("历史文件", "选择一个对话历史文件 (JSON)", [("json", "历史 (JSON)")], "选择一个历史文件...")),
    _history,
)

regex_rule_loader = _loader(
    "RegexRuleLoader",
    "⚙️加载正则规则",
    "从文件加载正则表达式规则",
    ("regexRules", Output(data_flow_type="ARRAY", display_name="正则规则", description="加载的正则表达式规则数组")),
    (
        "ruleResource",
        _resource_input(
            "规则文件",
            "选择一个正则表达式规则文件 (JSON/YAML)",
            [("json", "规则 (JSON)"), ("yaml", "规则 (YAML)")],
            "选择一个规则文件...",
        ),
    ),
    _regex_rules,
)
