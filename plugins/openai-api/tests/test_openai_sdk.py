"""The official ``openai`` Python package as the client of a real server, with the loopback fake
OpenAI server as the LLM upstream of the workflow's ``GenericLlmRequest`` node."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

Server = Any


@pytest.fixture
def client(server: Server) -> Iterator[Callable[..., OpenAI]]:
    """``client(key=None)``: an SDK client of the server (a new ``runs:write`` key by default)."""
    made: list[OpenAI] = []

    def make(key: str | None = None) -> OpenAI:
        made.append(OpenAI(base_url=server.v1, api_key=key or server.key(), max_retries=0, timeout=30))
        return made[-1]

    yield make
    for sdk in made:
        sdk.close()


def prompt_of(completion_id: str) -> str:
    assert completion_id.startswith("chatcmpl-")
    return completion_id.removeprefix("chatcmpl-")


def test_list_models_shows_the_chat_workflows_only(server: Server, fake: Any, model_factory: Any, chat_doc: Any, client: Any) -> None:
    first = model_factory()
    second = server.save(chat_doc(fake.base_url, "echo", name="Other chat"), project="second")
    plain = chat_doc(fake.base_url, "echo", name="Not a model")
    plain["interfaceOutputs"] = {"answer": plain["interfaceOutputs"]["reply"]}
    server.save(plain)
    models = client().models.list()
    assert sorted(m.id for m in models.data) == sorted([first, second])
    card = next(m for m in models.data if m.id == first)
    assert card.object == "model" and card.owned_by == "default_user" and card.created > 1_700_000_000


def test_plain_completion_through_the_llm_node(server: Server, fake: Any, model_factory: Any, client: Any) -> None:
    model = model_factory("echo")
    reply = client().chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me about tea"}],
        temperature=0.3,
        max_tokens=50,
        top_p=0.9,
        seed=7,
    )
    assert reply.object == "chat.completion" and reply.model == model
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == "Tell me about tea"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.prompt_tokens == 7 and reply.usage.total_tokens == 7 + 4
    upstream = fake.requests[-1].body
    assert upstream["messages"] == [
        {"role": "system", "content": "You are a helpful assistant served by a ComfyTavern workflow."},
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Tell me about tea"},
    ]
    assert (upstream["temperature"], upstream["max_tokens"], upstream["top_p"], upstream["seed"]) == (0.3, 50, 0.9, 7)
    record = server.run(prompt_of(reply.id))
    assert record["status"] == "complete" and record["workflowName"] == "Chat model"


def test_defaults_apply_when_the_request_omits_a_field(server: Server, fake: Any, model_factory: Any, client: Any) -> None:
    model = model_factory("echo")
    client().chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    upstream = fake.requests[-1].body
    assert upstream["temperature"] == 0.7 and upstream["max_tokens"] == 1024 and "seed" not in upstream


def test_streamed_completion_arrives_chunk_by_chunk(server: Server, fake: Any, model_factory: Any, client: Any, request: Any) -> None:
    fake.reply = "one two three four five six seven eight nine ten"
    model = model_factory("slow-150")
    stream = client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": "count"}], stream=True, stream_options={"include_usage": True}
    )
    request.addfinalizer(stream.close)
    pieces: list[str] = []
    finish: list[str] = []
    usage: list[Any] = []
    upstream_done_at_first_piece: bool | None = None
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk" and chunk.model == model
        if chunk.usage is not None:
            assert chunk.choices == []
            usage.append(chunk.usage)
            continue
        delta = chunk.choices[0].delta
        if delta.content:
            if not pieces:
                # The first word is relayed while the upstream is still producing the rest.
                upstream_done_at_first_piece = fake.requests[-1].completed_at is not None
            pieces.append(delta.content)
        if chunk.choices[0].finish_reason:
            finish.append(chunk.choices[0].finish_reason)
    assert "".join(pieces) == fake.reply
    assert len(pieces) == 10
    assert upstream_done_at_first_piece is False
    assert finish == ["stop"]
    assert len(usage) == 1 and usage[0].completion_tokens == 10


def test_content_as_a_list_of_text_parts(server: Server, fake: Any, model_factory: Any, client: Any) -> None:
    model = model_factory("echo")
    reply = client().chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": [{"type": "text", "text": "first part"}, {"type": "text", "text": "second"}]}],
    )
    assert fake.requests[-1].body["messages"][-1] == {"role": "user", "content": "first part\nsecond"}
    assert reply.choices[0].message.content == "first part\nsecond"


def test_async_client_parallel_streams(server: Server, fake: Any, model_factory: Any) -> None:
    """More parallel completions than max_concurrent_workflows (5): each gets its own reply."""
    model = model_factory("echo")
    key = server.key()

    async def one(client: AsyncOpenAI, i: int) -> str:
        stream = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": f"message number {i} here"}], stream=True
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    async def main() -> list[str]:
        async with AsyncOpenAI(base_url=server.v1, api_key=key, max_retries=0, timeout=60) as client:
            return await asyncio.gather(*(one(client, i) for i in range(12)))

    assert asyncio.run(main()) == [f"message number {i} here" for i in range(12)]


def test_disconnect_mid_stream_interrupts_the_run_and_the_upstream(server: Server, fake: Any, model_factory: Any, client: Any) -> None:
    fake.reply = " ".join(f"w{i}" for i in range(60))
    model = model_factory("slow-100")
    stream = client().chat.completions.create(model=model, messages=[{"role": "user", "content": "go"}], stream=True)
    seen = 0
    completion_id = ""
    for chunk in stream:
        completion_id = chunk.id
        if chunk.choices and chunk.choices[0].delta.content:
            seen += 1
            if seen == 3:
                break
    stream.close()
    assert fake.wait_disconnect(timeout=10) is not None, "the upstream LLM request was not closed"
    assert fake.requests[-1].completed_at is None
    record = server.run(prompt_of(completion_id))
    assert record["status"] == "interrupted"
    assert record["nodeStatus"]["llm"]["status"] == "interrupted"


def test_errors_reach_the_sdk_as_its_exceptions(server: Server, fake: Any, model_factory: Any, client: Any) -> None:
    model = model_factory("echo")
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.NotFoundError) as missing:
        client().chat.completions.create(model="chat/nope", messages=messages)
    assert missing.value.code == "model_not_found" and missing.value.status_code == 404
    with pytest.raises(openai.AuthenticationError) as bad_key:
        client(key="ctsk_" + "x" * 56).chat.completions.create(model=model, messages=messages)
    assert bad_key.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client(key="undefined").models.list()
    read_only = server.key(["runs:read"])
    assert [m.id for m in client(read_only).models.list().data] == [model]
    with pytest.raises(openai.PermissionDeniedError) as scope:
        client(read_only).chat.completions.create(model=model, messages=messages)
    assert scope.value.code == "insufficient_scope" and "runs:write" in scope.value.message
    with pytest.raises(openai.PermissionDeniedError):
        client(server.key(["projects:*"])).models.list()
    with pytest.raises(openai.BadRequestError) as bad:
        client().chat.completions.create(model=model, messages=messages, temperature=7)
    assert bad.value.param == "temperature"


def test_a_failing_node_is_a_500_with_its_message(server: Server, fake: Any, model_factory: Any, client: Any) -> None:
    model = model_factory("error-404")
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as failed:
            client().chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}], stream=stream)
        assert failed.value.status_code == 500 and failed.value.code == "workflow_error"
        assert "workflow node llm failed" in failed.value.message and "HTTP 404" in failed.value.message


def test_a_failure_mid_stream_is_an_error_event(server: Server, fake: Any, model_factory: Any, client: Any, request: Any) -> None:
    model = model_factory("midstream-error")
    messages = [{"role": "user", "content": "Hello world"}]
    stream = client().chat.completions.create(model=model, messages=messages, stream=True)
    request.addfinalizer(stream.close)
    got: list[str] = []
    with pytest.raises(openai.APIError) as failed:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                got.append(chunk.choices[0].delta.content)
    assert got == ["Hello "]
    assert "workflow node llm failed" in failed.value.message
    assert "sk-abc123456789" not in failed.value.message


def test_upstream_secrets_are_redacted_from_errors(server: Server, fake: Any, chat_doc: Any, client: Any) -> None:
    """The fake echoes the presented key in its 401 message, as OpenAI does."""
    doc = chat_doc(fake.base_url, "error-401")
    next(n for n in doc["nodes"] if n["id"] == "api")["inputValues"]["api_key"] = "sk-live-supersecret-123456"
    model = server.save(doc)
    with pytest.raises(openai.InternalServerError) as failed:
        client().chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    assert "supersecret" not in failed.value.message and "HTTP 401" in failed.value.message
    raw = httpx.post(f"{server.v1}/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "x"}]}, timeout=30)
    assert "supersecret" not in raw.text
