"""Key resolution order, operator control of environment keys, and that keys never leak into
outputs, events, logs or error messages."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from comfytavern import NodeContext
from comfytavern_nodes_llm import api_settings, generic_llm_request, openai
from comfytavern_nodes_llm.endpoint import ApiSettingsValue, resolve_endpoint
from comfytavern_nodes_llm.errors import LlmConfigError, LlmHttpError
from comfytavern_nodes_llm.settings import LlmSettings, LlmSettingsError, parse_settings

pytestmark = pytest.mark.anyio

INPUT_KEY = "sk-input-1111111111111111"
STORED_KEY = "sk-stored-2222222222222222"
ENV_KEY = "sk-env-3333333333333333"


async def settings_node(runner: Any, ctx: NodeContext, **inputs: Any) -> ApiSettingsValue:
    _chunks, out = await runner(
        api_settings,
        {"use_env_vars": False, "base_url": "https://api.openai.com/v1", "api_key": "", **inputs},
        ctx,
    )
    value = out["api_settings"]
    assert isinstance(value, ApiSettingsValue)
    return value


async def test_input_key_wins_over_stored_and_env(
    ctx_factory: Callable[..., NodeContext], runner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    lookups: list[tuple[str, str]] = []
    ctx = ctx_factory(credentials={"openai": STORED_KEY}, llm={"allow_env_keys": True}, lookups=lookups)
    value = await settings_node(runner, ctx, api_key=INPUT_KEY, use_env_vars=True)
    assert value.endpoint is not None and value.endpoint.api_key == INPUT_KEY
    assert value["api_key_source"] == "input"
    assert lookups == []  # the store is not even asked


async def test_stored_credential_is_used_when_no_key_is_typed(
    ctx_factory: Callable[..., NodeContext], runner: Any
) -> None:
    lookups: list[tuple[str, str]] = []
    ctx = ctx_factory(credentials={"openai": STORED_KEY, "deepseek": "sk-deepseek-444444444"}, lookups=lookups)
    value = await settings_node(runner, ctx)
    assert value.endpoint is not None and value.endpoint.api_key == STORED_KEY
    assert value["api_key_source"] == "credential:openai"
    named = await settings_node(runner, ctx, credential_service="deepseek")
    assert named.endpoint is not None and named.endpoint.api_key == "sk-deepseek-444444444"
    assert lookups == [("alice", "openai"), ("alice", "deepseek")]


async def test_operator_default_service_name(ctx_factory: Callable[..., NodeContext], runner: Any) -> None:
    ctx = ctx_factory(credentials={"my-llm": STORED_KEY}, llm={"default_credential_service": "my-llm"})
    value = await settings_node(runner, ctx)
    assert value.endpoint is not None and value.endpoint.api_key == STORED_KEY


async def test_credentials_belong_to_the_run_owner(ctx_factory: Callable[..., NodeContext], runner: Any) -> None:
    lookups: list[tuple[str, str]] = []
    ctx = ctx_factory(credentials={"openai": STORED_KEY}, user_id="bob", lookups=lookups)
    value = await settings_node(runner, ctx)
    assert value.endpoint is not None and value.endpoint.api_key == STORED_KEY
    assert lookups == [("bob", "openai")]


async def test_env_key_only_when_requested_and_allowed(
    ctx_factory: Callable[..., NodeContext], runner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    monkeypatch.setenv("OPENAI_API_BASE", "https://llm.example.com/v1")
    allowed = ctx_factory(llm={"allow_env_keys": True})
    value = await settings_node(runner, allowed, use_env_vars=True)
    assert value.endpoint is not None and value.endpoint.api_key == ENV_KEY
    assert value["base_url"] == "https://llm.example.com/v1"
    assert value["api_key_source"] == "environment"
    # Not requested: no key, even though the operator allows it.
    plain = await settings_node(runner, allowed)
    assert plain.endpoint is not None and plain.endpoint.api_key is None
    assert plain["api_key_set"] is False and plain["base_url"] == "https://api.openai.com/v1"
    # Requested but not allowed: a clear error.
    with pytest.raises(LlmConfigError, match="allow_env_keys"):
        await settings_node(runner, ctx_factory(), use_env_vars=True)


async def test_stored_credential_beats_env(
    ctx_factory: Callable[..., NodeContext], runner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    ctx = ctx_factory(credentials={"openai": STORED_KEY}, llm={"allow_env_keys": True})
    value = await settings_node(runner, ctx, use_env_vars=True)
    assert value.endpoint is not None and value.endpoint.api_key == STORED_KEY


async def test_credential_store_failure_is_clear(ctx_factory: Callable[..., NodeContext], runner: Any) -> None:
    ctx = ctx_factory()

    async def broken(user_id: str, service: str) -> str | None:
        raise RuntimeError(f"cannot decrypt {STORED_KEY}")

    ctx._credentials = broken
    with pytest.raises(LlmConfigError, match="could not read the stored credential 'openai'") as info:
        await settings_node(runner, ctx)
    assert STORED_KEY not in str(info.value)


async def test_the_key_never_reaches_outputs_or_json(ctx_factory: Callable[..., NodeContext], runner: Any) -> None:
    value = await settings_node(runner, ctx_factory(), api_key=INPUT_KEY)
    encoded = msgspec.json.encode({"output": {"api_settings": value}}).decode()
    assert INPUT_KEY not in encoded
    assert INPUT_KEY not in repr(value) and INPUT_KEY not in repr(value.endpoint)
    assert msgspec.json.decode(encoded)["output"]["api_settings"] == {
        "use_env_vars": False,
        "base_url": "https://api.openai.com/v1",
        "credential_service": "openai",
        "api_key_set": True,
        "api_key_source": "input",
    }


async def test_plain_object_settings_are_resolved_by_the_consumer(
    fake: Any, ctx_factory: Callable[..., NodeContext], runner: Any
) -> None:
    ctx = ctx_factory(credentials={"openai": STORED_KEY})
    inputs = {
        "api_settings": {"base_url": fake.base_url},
        "model": "echo",
        "prompt": "hello",
        "temperature": 0.2,
        "max_tokens": 16,
    }
    _chunks, out = await runner(openai, inputs, ctx)
    assert out["response"] == "hello"
    assert fake.requests[0].headers["authorization"] == f"Bearer {STORED_KEY}"


async def test_api_settings_as_json_text_is_accepted(ctx_factory: Callable[..., NodeContext]) -> None:
    endpoint = await resolve_endpoint('{"base_url": "http://h:1", "api_key": "k-1"}', ctx_factory(), LlmSettings())
    assert str(endpoint.base_url) == "http://h:1/v1" and endpoint.api_key == "k-1"
    with pytest.raises(LlmConfigError, match="not valid JSON"):
        await resolve_endpoint("{nope", ctx_factory(), LlmSettings())
    with pytest.raises(LlmConfigError, match="must be an object"):
        await resolve_endpoint([1, 2], ctx_factory(), LlmSettings())


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.openai.com/v1", "https://api.openai.com/v1"),
        ("https://api.openai.com/v1/", "https://api.openai.com/v1"),
        ("http://127.0.0.1:11434", "http://127.0.0.1:11434/v1"),
        ("http://127.0.0.1:11434/", "http://127.0.0.1:11434/v1"),
        ("https://ark.example.com/api/v3", "https://ark.example.com/api/v3"),
        ("https://gateway.example.com/openai", "https://gateway.example.com/openai"),
    ],
)
async def test_base_url_normalisation(ctx_factory: Callable[..., NodeContext], url: str, expected: str) -> None:
    endpoint = await resolve_endpoint({"base_url": url}, ctx_factory(), LlmSettings())
    assert endpoint.display == expected


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("ftp://example.com/v1", "http:// or https://"),
        ("example.com/v1", "http:// or https://"),
        ("https://user:secret@example.com/v1", "must not contain a user name"),
        ("   ", "base_url is empty"),
    ],
)
async def test_bad_base_urls(ctx_factory: Callable[..., NodeContext], url: str, needle: str) -> None:
    with pytest.raises(LlmConfigError, match=needle):
        await resolve_endpoint({"base_url": url}, ctx_factory(), LlmSettings())


async def test_bad_service_name(ctx_factory: Callable[..., NodeContext]) -> None:
    with pytest.raises(LlmConfigError, match="credential_service"):
        await resolve_endpoint({"credential_service": "../etc"}, ctx_factory(), LlmSettings())


def test_invalid_operator_settings_name_the_key() -> None:
    with pytest.raises(LlmSettingsError, match=r"\$.plugins.settings.llm.*allow_env_key"):
        parse_settings({"allow_env_key": True})
    with pytest.raises(LlmSettingsError, match="read_timeout_seconds must be positive"):
        parse_settings({"read_timeout_seconds": 0})


async def test_keys_are_never_logged_nor_in_errors(
    fake: Any, ctx_factory: Callable[..., NodeContext], runner: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ctx = ctx_factory()
    value = await settings_node(runner, ctx, api_key=INPUT_KEY, base_url=fake.base_url)
    inputs = {"messages": '[{"role":"user","content":"hi"}]', "activated_model_id": "echo", "api_settings": value}
    chunks, out = await runner(generic_llm_request, {**inputs, "stream": True}, ctx)
    assert out["responseText"] == "hi"
    assert INPUT_KEY not in msgspec.json.encode([chunks, out]).decode()
    with pytest.raises(LlmHttpError) as info:
        await runner(generic_llm_request, {**inputs, "activated_model_id": "error-401"}, ctx)
    assert INPUT_KEY not in str(info.value)
    assert fake.requests[-1].headers["authorization"] == f"Bearer {INPUT_KEY}"
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "LLM request" in logged
    assert INPUT_KEY not in logged and "1111111111" not in logged
