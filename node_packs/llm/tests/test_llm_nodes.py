"""The six nodes: definitions match the reference, history building, chat in both modes."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from comfytavern import NodeContext
from comfytavern_nodes_llm import (
    NODES,
    api_settings,
    generic_llm_request,
    openai,
    openai_chat,
)
from comfytavern_nodes_llm import history as history_node
from comfytavern_nodes_llm import merge_history as merge_history_node
from comfytavern_nodes_llm.errors import LlmConfigError, LlmHttpError
from comfytavern_testing import make_kernel

pytestmark = pytest.mark.anyio

REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "reference-llm-nodes.json").read_text("utf-8"))
#: Inputs this server adds to the reference definitions (all optional).
ADDED_INPUTS = {"APISettings": {"credential_service"}, "GenericLlmRequest": {"api_settings"}}


# -- definitions ---------------------------------------------------------------------------


@pytest.mark.parametrize("reference", REFERENCE, ids=lambda r: r["type"])
def test_definition_matches_the_reference(reference: dict[str, Any]) -> None:
    ours = {n.definition.type: msgspec.to_builtins(n.definition) for n in NODES}[reference["type"]]
    for key in ("type", "category", "displayName", "description", "width"):
        assert ours.get(key) == reference.get(key), key
    assert list(ours["outputs"]) == list(reference["outputs"])
    for key, slot in reference["outputs"].items():
        assert ours["outputs"][key] == slot, key
    reference_inputs = list(reference["inputs"])
    assert [k for k in ours["inputs"] if k not in ADDED_INPUTS.get(reference["type"], ())] == reference_inputs
    for key, slot in reference["inputs"].items():
        mine = dict(ours["inputs"][key])
        theirs = dict(slot)
        theirs.setdefault("required", False)
        mine.setdefault("required", False)
        assert mine == theirs, key
    for key in ADDED_INPUTS.get(reference["type"], ()):
        assert not ours["inputs"][key].get("required", False)


def test_installed_pack_registers_six_core_nodes(tmp_path: Path) -> None:
    kernel = make_kernel(tmp_path, storage={"projects": None, "accounts": None, "runs": None})
    registry = kernel.registry.current
    types = {t for t, source in registry.sources.items() if source == "llm"}
    assert {
        "core:APISettings",
        "core:History",
        "core:MergeHistory",
        "core:OpenAIChat",
        "core:OpenAI",
        "core:GenericLlmRequest",
    } == types


# -- history -------------------------------------------------------------------------------


async def test_history_pairs_roles_and_trimmed_contents(ctx_factory: Callable[..., NodeContext], runner: Any) -> None:
    inputs = {
        "role1": "system",
        "content1": "  Be brief. ",
        "role2": "user",
        "content2": "Hi",
        "role3": "assistant",
        "content3": "   ",
        "role4": "assistant",
        "content4": "你好",
    }
    _chunks, out = await runner(history_node, inputs, ctx_factory())
    assert json.loads(out["history"]) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "你好"},
    ]
    assert "你好" in out["history"]  # readable, not \\u escapes


async def test_history_rejects_unknown_roles(ctx_factory: Callable[..., NodeContext], runner: Any) -> None:
    with pytest.raises(LlmConfigError, match="role2 must be one of"):
        await runner(history_node, {"role2": "wizard", "content2": "x"}, ctx_factory())


async def test_merge_history(ctx_factory: Callable[..., NodeContext], runner: Any) -> None:
    first = json.dumps([{"role": "user", "content": "a"}])
    second = [{"role": "assistant", "content": "b"}]
    _chunks, out = await runner(
        merge_history_node, {"history1": first, "history2": "", "history3": second}, ctx_factory()
    )
    assert json.loads(out["history"]) == [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("{broken", "history2 is not valid JSON"),
        ('{"role": "user"}', "history2 must be a JSON array"),
        ('[{"role": "user"}]', r"history2\[0\] has no 'content'"),
        ('[{"role": "bot", "content": "x"}]', r"history2\[0\] has role 'bot'"),
        ("[1]", r"history2\[0\] must be an object"),
    ],
)
async def test_merge_history_reports_bad_input(
    ctx_factory: Callable[..., NodeContext], runner: Any, value: str, needle: str
) -> None:
    with pytest.raises(LlmConfigError, match=needle):
        await runner(merge_history_node, {"history1": "[]", "history2": value}, ctx_factory())


# -- OpenAI --------------------------------------------------------------------------------


async def make_settings(runner: Any, ctx: NodeContext, base_url: str) -> Any:
    _chunks, out = await runner(api_settings, {"use_env_vars": False, "base_url": base_url, "api_key": "sk-t-1234"}, ctx)
    return out["api_settings"]


def openai_inputs(settings: Any, **extra: Any) -> dict[str, Any]:
    return {
        "api_settings": settings,
        "model": "fake-chat",
        "temperature": 0.3,
        "max_tokens": 64,
        "system_prompt": "You are terse.",
        "prompt": "Say hello",
        **extra,
    }


async def test_openai_streams_text_chunks_and_keeps_the_full_text(
    fake: Any, ctx_factory: Callable[..., NodeContext], runner: Any
) -> None:
    ctx = ctx_factory()
    fake.reply = "Hello there, friend."
    chunks, out = await runner(openai, openai_inputs(await make_settings(runner, ctx, fake.base_url), stream=True), ctx)
    texts = [c["content"] for c in chunks if c["type"] == "text_chunk"]
    assert texts == ["Hello ", "there, ", "friend."]
    assert chunks[-1] == {"type": "finish_reason_chunk", "content": "stop"}
    assert any(c["type"] == "usage_chunk" for c in chunks)
    assert out == {"response": "Hello there, friend."}
    body = fake.requests[0].body
    assert body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say hello"},
    ]
    assert body["temperature"] == 0.3 and body["max_tokens"] == 64 and body["stream"] is True


async def test_openai_batch_mode(fake: Any, ctx_factory: Callable[..., NodeContext], runner: Any) -> None:
    ctx = ctx_factory()
    fake.reply = "All at once."
    chunks, out = await runner(openai, openai_inputs(await make_settings(runner, ctx, fake.base_url), stream=False), ctx)
    assert out == {"response": "All at once."}
    assert chunks[0] == {"type": "text_chunk", "content": "All at once."}
    assert chunks[-1]["type"] == "finish_reason_chunk"
    assert fake.requests[0].body["stream"] is False


async def test_openai_with_history_and_image(fake: Any, ctx_factory: Callable[..., NodeContext], runner: Any) -> None:
    ctx = ctx_factory()
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32).decode()
    history = json.dumps([{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "reply"}])
    inputs = openai_inputs(await make_settings(runner, ctx, fake.base_url), history=history, image=png, model="echo")
    _chunks, out = await runner(openai, inputs, ctx)
    assert out["response"] == "Say hello"
    messages = fake.requests[0].body["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    parts = messages[-1]["content"]
    assert parts[0] == {"type": "text", "text": "Say hello"}
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,iVBORw0KGgo")


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"prompt": "", "history": ""}, "nothing to send"),
        ({"model": "  "}, "model is empty"),
        ({"temperature": 3}, "temperature must be at most 2"),
        ({"max_tokens": 0}, "max_tokens must be at least 1"),
        ({"max_tokens": 2.5}, "max_tokens must be a whole number"),
        ({"image": "not base64 !!"}, "image must be an http"),
        ({"stream": "maybe"}, "stream must be true or false"),
    ],
)
async def test_openai_input_errors(
    fake: Any, ctx_factory: Callable[..., NodeContext], runner: Any, extra: dict[str, Any], needle: str
) -> None:
    ctx = ctx_factory()
    with pytest.raises(LlmConfigError, match=needle):
        await runner(openai, openai_inputs(await make_settings(runner, ctx, fake.base_url), **extra), ctx)
    assert fake.requests == []


async def test_openai_upstream_error_is_raised_not_returned(
    fake: Any, ctx_factory: Callable[..., NodeContext], runner: Any
) -> None:
    ctx = ctx_factory()
    for stream in (True, False):
        with pytest.raises(LlmHttpError, match="HTTP 404"):
            await runner(openai, openai_inputs(await make_settings(runner, ctx, fake.base_url), model="error-404", stream=stream), ctx)


# -- OpenAIChat ----------------------------------------------------------------------------


def chat_inputs(settings: Any, **extra: Any) -> dict[str, Any]:
    return {
        "api_settings": settings,
        "model": "fake-chat",
        "temperature": 0.7,
        "max_tokens": 512,
        "system_prompt": "Be kind.",
        "clear_history": False,
        "user_input": "How are you?",
        **extra,
    }


async def test_openai_chat_extends_history(fake: Any, ctx_factory: Callable[..., NodeContext], runner: Any) -> None:
    ctx = ctx_factory()
    fake.reply = "Fine, thanks."
    past = json.dumps([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}])
    settings = await make_settings(runner, ctx, fake.base_url)
    _chunks, out = await runner(openai_chat, chat_inputs(settings, external_history=past), ctx)
    assert out["current_output"] == "Fine, thanks."
    assert json.loads(out["history"]) == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How are you?"},
        {"role": "assistant", "content": "Fine, thanks."},
    ]
    assert out["full_conversation"] == (
        "System: Be kind.\n\nUser: Hi\n\nAssistant: Hello!\n\nUser: How are you?\n\nAssistant: Fine, thanks."
    )
    assert [m["role"] for m in fake.requests[0].body["messages"]] == ["system", "user", "assistant", "user"]
    assert fake.requests[0].body["stream"] is False

    _chunks, cleared = await runner(openai_chat, chat_inputs(settings, external_history=past, clear_history=True), ctx)
    assert len(json.loads(cleared["history"])) == 2
    assert [m["role"] for m in fake.requests[1].body["messages"]] == ["system", "user"]


async def test_openai_chat_needs_user_input(fake: Any, ctx_factory: Callable[..., NodeContext], runner: Any) -> None:
    ctx = ctx_factory()
    with pytest.raises(LlmConfigError, match="user_input is empty"):
        await runner(openai_chat, chat_inputs(await make_settings(runner, ctx, fake.base_url), user_input=" "), ctx)


# -- GenericLlmRequest ---------------------------------------------------------------------


def generic_inputs(settings: Any, **extra: Any) -> dict[str, Any]:
    return {
        "messages": json.dumps([{"role": "system", "content": "sys"}, {"role": "user", "content": "Echo this"}]),
        "parameters": "{}",
        "activated_model_id": "echo",
        "temperature": 0.7,
        "max_tokens": 2048,
        "top_p": 1,
        "seed": 0,
        "stream": False,
        "api_settings": settings,
        **extra,
    }


@pytest.mark.parametrize("stream", [True, False])
async def test_generic_request_outputs_in_both_modes(
    fake: Any, ctx_factory: Callable[..., NodeContext], runner: Any, stream: bool
) -> None:
    ctx = ctx_factory()
    chunks, out = await runner(
        generic_llm_request, generic_inputs(await make_settings(runner, ctx, fake.base_url), stream=stream), ctx
    )
    assert out["responseText"] == "Echo this"
    assert out["response"]["text"] == "Echo this"
    assert out["response"]["model"] == "echo" and out["response"]["finish_reason"] == "stop"
    assert out["usage"]["completion_tokens"] == 2
    assert "".join(c["content"] for c in chunks if c["type"] == "text_chunk") == "Echo this"
    finish = chunks[-1]
    assert finish["type"] == "finish_reason_chunk"
    assert finish["content"]["accumulated_text"] == "Echo this" and finish["content"]["finish_reason"] == "stop"


async def test_generic_request_parameters(fake: Any, ctx_factory: Callable[..., NodeContext], runner: Any) -> None:
    ctx = ctx_factory()
    settings = await make_settings(runner, ctx, fake.base_url)
    await runner(
        generic_llm_request,
        generic_inputs(settings, seed=42, parameters='{"temperature": 0.1, "presence_penalty": 0.5}'),
        ctx,
    )
    body = fake.requests[0].body
    assert body["temperature"] == 0.1 and body["presence_penalty"] == 0.5
    assert body["seed"] == 42 and body["max_tokens"] == 2048 and body["top_p"] == 1
    await runner(generic_llm_request, generic_inputs(settings, seed=0), ctx)
    assert "seed" not in fake.requests[1].body


async def test_generic_request_uses_server_default_endpoint_and_stored_key(
    fake: Any, ctx_factory: Callable[..., NodeContext], runner: Any
) -> None:
    ctx = ctx_factory(
        credentials={"openai": "sk-stored-999999999"},
        llm={"default_base_url": fake.base_url, "read_timeout_seconds": 5},
    )
    _chunks, out = await runner(generic_llm_request, generic_inputs(None), ctx)
    assert out["responseText"] == "Echo this"
    assert fake.requests[0].headers["authorization"] == "Bearer sk-stored-999999999"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"messages": "[]"}, "messages is empty"),
        ({"messages": "not json"}, "messages is not valid JSON"),
        ({"activated_model_id": ""}, "activated_model_id is empty"),
        ({"parameters": "[1]"}, "parameters must be a JSON object"),
        ({"parameters": '{"stream": true}'}, "must not set 'stream'"),
        ({"top_p": 2}, "top_p must be at most 1"),
    ],
)
async def test_generic_request_input_errors(
    fake: Any, ctx_factory: Callable[..., NodeContext], runner: Any, extra: dict[str, Any], needle: str
) -> None:
    ctx = ctx_factory()
    with pytest.raises(LlmConfigError, match=needle):
        await runner(generic_llm_request, generic_inputs(await make_settings(runner, ctx, fake.base_url), **extra), ctx)
    assert fake.requests == []
