from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.anyio


async def test_create_message_is_compact_json(core: dict[str, Any], run_node: Any) -> None:
    result = await run_node(core["CreateMessage"], {"role": "system", "content": "你好"})
    # Byte-identical to JavaScript's JSON.stringify, which the original produced.
    assert result.outputs == {"messages": '[{"role":"system","content":"你好"}]'}


async def test_create_message_defaults_to_user_and_empty_content_gives_empty_list(
    core: dict[str, Any], run_node: Any
) -> None:
    assert (await run_node(core["CreateMessage"], {})).outputs == {"messages": "[]"}
    result = await run_node(core["CreateMessage"], {"content": "hi"})
    assert json.loads(result.outputs["messages"]) == [{"role": "user", "content": "hi"}]


async def test_create_message_turns_numbers_into_text(core: dict[str, Any], run_node: Any) -> None:
    result = await run_node(core["CreateMessage"], {"role": "assistant", "content": 42})
    assert json.loads(result.outputs["messages"]) == [{"role": "assistant", "content": "42"}]


@pytest.mark.parametrize("role", ["", "   ", 3, ["user"]])
async def test_create_message_rejects_a_bad_role(core: dict[str, Any], run_node: Any, role: Any) -> None:
    with pytest.raises(ValueError, match="'role' must be a non-empty text"):
        await run_node(core["CreateMessage"], {"role": role, "content": "x"})


async def test_merge_messages_in_connection_order(core: dict[str, Any], run_node: Any) -> None:
    inputs = {
        "message_inputs": [
            '[{"role":"system","content":"s"}]',
            {"role": "user", "content": "u"},
            [{"role": "assistant", "content": "a"}, {"role": "user", "content": "u2"}],
            '{"role":"user","content":"single"}',
        ]
    }
    result = await run_node(core["MergeMessages"], inputs)
    assert json.loads(result.outputs["messages"]) == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "u2"},
        {"role": "user", "content": "single"},
    ]


async def test_merge_messages_skips_what_is_not_a_message(
    core: dict[str, Any], run_node: Any, caplog: pytest.LogCaptureFixture
) -> None:
    inputs = {
        "message_inputs": [
            "not json",
            None,
            "",
            42,
            '[{"role":"user"}, {"content":"no role"}, {"role":"user","content":"kept"}]',
            '"just text"',
        ]
    }
    result = await run_node(core["MergeMessages"], inputs)
    assert result.outputs == {"messages": '[{"role":"user","content":"kept"}]'}
    assert "not valid JSON" in caplog.text


async def test_merge_messages_accepts_a_single_value_and_requires_input(core: dict[str, Any], run_node: Any) -> None:
    single = await run_node(core["MergeMessages"], {"message_inputs": '[{"role":"user","content":"x"}]'})
    assert json.loads(single.outputs["messages"]) == [{"role": "user", "content": "x"}]
    with pytest.raises(ValueError, match="message_inputs"):
        await run_node(core["MergeMessages"], {})


async def test_create_then_merge_round_trip(core: dict[str, Any], run_node: Any) -> None:
    first = await run_node(core["CreateMessage"], {"role": "system", "content": "rules"})
    second = await run_node(core["CreateMessage"], {"content": "question"})
    merged = await run_node(
        core["MergeMessages"], {"message_inputs": [first.outputs["messages"], second.outputs["messages"]]}
    )
    assert json.loads(merged.outputs["messages"]) == [
        {"role": "system", "content": "rules"},
        {"role": "user", "content": "question"},
    ]
