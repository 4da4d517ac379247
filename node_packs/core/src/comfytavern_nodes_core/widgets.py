"""``TestWidgets``: one input per widget kind, echoed to outputs (a fixture for the editor)."""

from __future__ import annotations

import copy
import json
from typing import Any

from comfytavern import Input, NodeContext, Output, node
from comfytavern_nodes_core.values import as_bool, as_int, as_number, pick

__all__ = ["NODES", "test_widgets"]

_MARKDOWN_DEFAULT = "# 标题\n\n这是一段*Markdown*文本，包含一个[链接](https://example.com)。\n\n```python\nprint(\"Hello\")\n```"
_JS_DEFAULT = 'function greet(name) {\n  console.log(`Hello, ${name}!`);\n}\ngreet("World");'
_JSON_DEFAULT = {"name": "咕咕", "type": "猫头鹰娘", "skill": "智慧"}

INPUTS: dict[str, Input] = {
    "string_input": Input(
        data_flow_type="STRING",
        display_name="单行文本",
        description="单行文本输入测试",
        required=True,
        config={"default": "这是默认文本", "multiline": False, "placeholder": "请输入单行文本"},
    ),
    "text_input": Input(
        data_flow_type="STRING",
        display_name="多行文本",
        description="多行文本输入测试",
        required=True,
        match_categories=["UiBlock", "CanPreview"],
        config={"default": "这是默认的\n多行文本", "multiline": True, "placeholder": "请输入多行文本"},
    ),
    "markdown_input": Input(
        data_flow_type="STRING",
        display_name="Markdown文本",
        description="Markdown 内容输入测试",
        match_categories=["Markdown", "CanPreview", "UiBlock"],
        config={"default": _MARKDOWN_DEFAULT, "multiline": True, "languageHint": "markdown"},
    ),
    "int_input": Input(
        data_flow_type="INTEGER",
        display_name="整数",
        description="整数输入测试",
        required=True,
        config={"default": 10, "min": 0, "max": 100, "step": 1},
    ),
    "float_input": Input(
        data_flow_type="FLOAT",
        display_name="浮点数",
        description="浮点数输入测试",
        required=True,
        config={"default": 0.5, "min": 0, "max": 1, "step": 0.01},
    ),
    "boolean_toggle": Input(
        data_flow_type="BOOLEAN",
        display_name="布尔值",
        description="布尔值开关测试",
        required=True,
        config={"default": True},
    ),
    "combo_select": Input(
        data_flow_type="STRING",
        display_name="下拉选择",
        description="下拉选择测试",
        required=True,
        match_categories=["ComboOption"],
        config={
            "default": "选项A",
            "suggestions": [
                {"value": "选项A", "label": "选项A"},
                {"value": "选项B", "label": "选项B"},
                {"value": "选项C", "label": "选项C"},
            ],
        },
    ),
    "json_input": Input(
        data_flow_type="OBJECT",
        display_name="JSON对象",
        description="JSON对象输入测试 (内联查看器)",
        match_categories=["Json", "CanPreview", "UiBlock"],
        config={"default": _JSON_DEFAULT, "placeholder": "请输入或编辑JSON对象"},
    ),
    "javascript_code_input": Input(
        data_flow_type="STRING",
        display_name="JS代码片段",
        description="JavaScript代码片段输入测试 (按钮触发编辑器)。\n\n例如：\n```javascript\n"
        "function greet(name) {\n  console.log(`Hello, ${name}!`);\n}\ngreet(\"Test Node\");\n```",
        match_categories=["Code", "JavaScript", "CanPreview"],
        config={"default": _JS_DEFAULT, "languageHint": "javascript"},
    ),
    "string_with_suggestions": Input(
        data_flow_type="STRING",
        display_name="带建议的文本",
        description="测试带建议列表的文本输入",
        config={
            "default": "默认值",
            "placeholder": "输入或选择建议",
            "suggestions": [
                {"value": "预设A", "label": "预设A"},
                {"value": "预设B", "label": "预设B"},
                {"value": "另一个预设", "label": "另一个预设"},
            ],
        },
    ),
    "int_with_suggestions": Input(
        data_flow_type="INTEGER",
        display_name="带建议的整数",
        description="测试带建议列表的整数输入",
        config={
            "default": 512,
            "min": 64,
            "max": 4096,
            "step": 64,
            "suggestions": [
                {"value": 256, "label": "256"},
                {"value": 512, "label": "512"},
                {"value": 1024, "label": "1024"},
                {"value": 2048, "label": "2048"},
            ],
        },
    ),
    "float_with_suggestions": Input(
        data_flow_type="FLOAT",
        display_name="带建议的浮点数",
        description="测试带建议列表的浮点数输入",
        config={
            "default": 7.5,
            "min": 0,
            "max": 15,
            "step": 0.5,
            "suggestions": [
                {"value": 1, "label": "1.0"},
                {"value": 5, "label": "5.0"},
                {"value": 7.5, "label": "7.5"},
                {"value": 10, "label": "10.0"},
                {"value": 12.5, "label": "12.5"},
            ],
        },
    ),
    "button_trigger": Input(
        data_flow_type="WILDCARD",
        display_name="触发按钮",
        description="测试按钮组件",
        match_categories=["Trigger"],
        config={"label": "点我执行操作"},
    ),
}

OUTPUTS: dict[str, Output] = {
    "string_output": Output(data_flow_type="STRING", display_name="单行文本", description="单行文本输出"),
    "text_output": Output(data_flow_type="STRING", display_name="多行文本", description="多行文本输出"),
    "markdown_output": Output(
        data_flow_type="STRING", display_name="Markdown文本", description="Markdown 内容输出", match_categories=["Markdown"]
    ),
    "int_output": Output(data_flow_type="INTEGER", display_name="整数", description="整数输出"),
    "float_output": Output(data_flow_type="FLOAT", display_name="浮点数", description="浮点数输出"),
    "boolean_output": Output(data_flow_type="BOOLEAN", display_name="布尔值", description="布尔值输出"),
    "combo_output": Output(data_flow_type="STRING", display_name="选择项", description="选择项输出"),
    "json_output": Output(
        data_flow_type="OBJECT", display_name="JSON对象", description="JSON对象输出", match_categories=["Json"]
    ),
    "javascript_code_output": Output(
        data_flow_type="STRING",
        display_name="JS代码片段",
        description="JavaScript代码片段输出。",
        match_categories=["Code", "JavaScript"],
    ),
    "string_with_suggestions_output": Output(
        data_flow_type="STRING", display_name="带建议文本输出", description="带建议文本的输出值"
    ),
    "int_with_suggestions_output": Output(
        data_flow_type="INTEGER", display_name="带建议整数输出", description="带建议整数的输出值"
    ),
    "float_with_suggestions_output": Output(
        data_flow_type="FLOAT", display_name="带建议浮点数输出", description="带建议浮点数的输出值"
    ),
}

_TEXT_KEYS = ("string_input", "text_input", "markdown_input", "combo_select", "javascript_code_input", "string_with_suggestions")
_OUTPUT_FOR = {
    "string_input": "string_output",
    "text_input": "text_output",
    "markdown_input": "markdown_output",
    "int_input": "int_output",
    "float_input": "float_output",
    "boolean_toggle": "boolean_output",
    "combo_select": "combo_output",
    "json_input": "json_output",
    "javascript_code_input": "javascript_code_output",
    "string_with_suggestions": "string_with_suggestions_output",
    "int_with_suggestions": "int_with_suggestions_output",
    "float_with_suggestions": "float_with_suggestions_output",
}


def _json_object(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"input 'json_input' is not valid JSON: {exc}") from None
    if not isinstance(value, (dict, list)):
        raise ValueError(f"input 'json_input' must be a JSON object or array, got {type(value).__name__}")
    return copy.deepcopy(value)  # never hand out the definition's default object itself


def _echo(key: str, value: Any) -> Any:
    slot = INPUTS[key]
    if key in _TEXT_KEYS:
        if not isinstance(value, str):
            raise ValueError(f"input {key!r} must be text, got {type(value).__name__}")
        return value
    if slot.data_flow_type == "INTEGER":
        return as_int(value, key)
    if slot.data_flow_type == "FLOAT":
        return as_number(value, key)
    if slot.data_flow_type == "BOOLEAN":
        return as_bool(value, key)
    return _json_object(value)


@node(
    type="TestWidgets",
    category="实用工具",
    display_name="🧪测试组件节点",
    description="用于测试各种输入组件的节点",
    inputs=INPUTS,
    outputs=OUTPUTS,
)
async def test_widgets(inputs: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Echo each widget's value (its default when absent), type-checked, to its output."""
    return {out: _echo(key, pick(inputs, key, INPUTS[key].default)) for key, out in _OUTPUT_FOR.items()}


NODES = (test_widgets,)
