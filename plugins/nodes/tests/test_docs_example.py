"""The examples of docs/node-packs.md, loaded as real folder packs and run (the guide stays true)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from comfytavern import NodeContext, Outputs, Principal
from comfytavern.kernel import Kernel
from comfytavern_testing import client_for

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "node-packs.md"
CTX = NodeContext(prompt_id="p", node_id="n", user=Principal(id="u", username="u"), config_values={"how": "title"})


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.DOTALL)


@pytest.fixture
def example_kernel(build: Callable[..., Kernel], custom: Path, write_file: Any) -> Kernel:
    python = _blocks("python")
    write_file(custom / "demo.py", python[0])
    package = custom / "comfytavern_nodes_textkit"
    write_file(package / "__init__.py", python[1])
    write_file(package / "client-scripts" / "dice.js", _blocks("js")[0])
    return build()


def test_first_node_and_example_pack_load(example_kernel: Kernel) -> None:
    registry = example_kernel.registry.current
    assert registry.get("demo:Shout").execute({"text": "hi"}, CTX) == {"loud": "HI!!!"}
    for name in ("WordCount", "SlowJoin", "Typewriter", "ChangeCase", "Dice"):
        assert f"textkit:{name}" in registry, name


def test_example_nodes_behave_as_described(example_kernel: Kernel) -> None:
    registry = example_kernel.registry.current

    async def scenario() -> None:
        assert registry.get("textkit:WordCount").execute({"text": "a b c"}, CTX) == {"count": 3}
        assert await registry.get("textkit:SlowJoin").execute({"parts": ["a", None, "b"]}, CTX) == {"joined": "a b"}
        items = [c async for c in registry.get("textkit:Typewriter").execute({"text": "a b", "delay": 0}, CTX)]
        assert items == [{"type": "text_chunk", "content": "a "}, {"type": "text_chunk", "content": "b"}, Outputs(text="a b")]
        assert await registry.get("textkit:ChangeCase").execute({"text": "hello world"}, CTX) == {"result": "Hello World"}
        assert await registry.get("textkit:Dice").execute({"value": 4}, CTX) == {"value": 4}

    anyio.run(scenario)


def test_example_client_script_is_served(example_kernel: Kernel) -> None:
    with client_for(example_kernel) as client:
        response = client.get("/api/nodes/textkit/Dice/client-script/client-scripts/dice.js")
    assert response.status_code == 200
    assert b"export function setupClientNode" in response.content
