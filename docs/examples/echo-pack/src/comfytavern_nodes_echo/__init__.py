"""Example node pack: ``echo:Echo`` repeats its text a configurable number of times."""

from __future__ import annotations

from typing import Any

from comfytavern import Input, NodeContext, Output, hookimpl, node

NAMESPACE = "echo"


@node(
    type="Echo",
    category="示例",
    display_name="🔁回声",
    description="Repeat the text `times` times.",
    inputs={
        "text": Input("STRING", display_name="文本", config={"default": "hello", "multiline": True}),
        "times": Input("INTEGER", display_name="次数", config={"default": 2, "min": 1, "max": 10}),
    },
    outputs={"text": Output("STRING", display_name="结果")},
)
def echo(inputs: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    times = int(inputs["times"])
    if not 1 <= times <= 10:
        raise ValueError("times must be between 1 and 10")
    return {"text": " ".join([str(inputs["text"])] * times)}


@hookimpl
def register_nodes() -> list[Any]:
    return [echo]
