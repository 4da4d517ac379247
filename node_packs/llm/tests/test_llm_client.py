"""The chat client against the real loopback fake server: streaming, batch, errors, retries,
timeouts and interrupt."""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

import anyio
import httpx
import msgspec
import pytest

from comfytavern_nodes_llm.client import (
    ChatRequest,
    Finished,
    ReasoningDelta,
    TextDelta,
    UsageInfo,
    complete_chat,
    lease_client,
    stream_chat,
)
from comfytavern_nodes_llm.endpoint import Endpoint, normalise_base_url
from comfytavern_nodes_llm.errors import (
    LlmConnectionError,
    LlmHttpError,
    LlmStreamError,
    LlmTimeoutError,
)
from comfytavern_nodes_llm.settings import LlmSettings

pytestmark = pytest.mark.anyio

KEY = "sk-test-0123456789abcdef"


def endpoint_for(fake: Any, key: str | None = KEY) -> Endpoint:
    return Endpoint(normalise_base_url(fake.base_url), key, "input" if key else "none")


def request(model: str, text: str = "hi there") -> ChatRequest:
    return ChatRequest(model, [{"role": "user", "content": text}], {"temperature": 0.5})


async def collect(fake: Any, model: str, settings: LlmSettings, **kw: Any) -> list[Any]:
    events = []
    async with contextlib.aclosing(stream_chat(endpoint_for(fake), request(model, **kw), settings=settings)) as it:
        async for event in it:
            events.append(event)
    return events


async def test_stream_yields_chunks_in_order_with_usage_and_finish(fake: Any, fast_settings: LlmSettings) -> None:
    fake.reply = "one two three four five"
    events = await collect(fake, "fake-chat", fast_settings)
    texts = [e.text for e in events if isinstance(e, TextDelta)]
    assert texts == ["one ", "two ", "three ", "four ", "five"]
    assert "".join(texts) == fake.reply
    usage = [e for e in events if isinstance(e, UsageInfo)]
    assert usage and usage[0].usage["completion_tokens"] == 5
    assert isinstance(events[-1], Finished)
    assert events[-1].finish_reason == "stop" and events[-1].model == "fake-chat"
    sent = fake.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    assert sent.body["temperature"] == 0.5
    assert sent.completed_at is not None


async def test_usage_request_can_be_turned_off(fake: Any) -> None:
    settings = LlmSettings(request_usage=False)
    events = await collect(fake, "fake-chat", settings)
    assert not any(isinstance(e, UsageInfo) for e in events)
    assert "stream_options" not in fake.requests[0].body


async def test_reasoning_deltas_are_separate(fake: Any, fast_settings: LlmSettings) -> None:
    fake.reply = "Answer."
    events = await collect(fake, "reasoning", fast_settings)
    assert [e.text for e in events if isinstance(e, ReasoningDelta)] == ["Let me ", "think."]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Answer."


async def test_stream_without_done_but_with_finish_is_accepted(fake: Any, fast_settings: LlmSettings) -> None:
    events = await collect(fake, "no-done", fast_settings)
    assert isinstance(events[-1], Finished) and events[-1].finish_reason == "stop"


async def test_stream_ending_without_finish_or_done_is_an_error(fake: Any, fast_settings: LlmSettings) -> None:
    with pytest.raises(LlmStreamError, match="ended without a finish reason"):
        await collect(fake, "no-finish", fast_settings)


async def test_batch_completion(fake: Any, fast_settings: LlmSettings) -> None:
    result = await complete_chat(endpoint_for(fake), request("echo", "repeat me"), settings=fast_settings)
    assert result.text == "repeat me"
    assert result.finish_reason == "stop"
    assert result.usage is not None and result.usage["total_tokens"] == 9
    body = fake.requests[0].body
    assert body["stream"] is False and "stream_options" not in body
    assert result.as_response()["text"] == "repeat me"


async def test_no_key_means_no_authorization_header(fake: Any, fast_settings: LlmSettings) -> None:
    await complete_chat(endpoint_for(fake, key=None), request("echo"), settings=fast_settings)
    assert "authorization" not in fake.requests[0].headers


@pytest.mark.parametrize(
    ("status", "needle"),
    [
        (400, "refused the request"),
        (401, "rejected the API key"),
        (403, "not allowed"),
        (404, "model or endpoint not found"),
        (429, "rate limit or quota"),
        (500, "server error"),
        (503, "server error"),
    ],
)
@pytest.mark.parametrize("streaming", [True, False])
async def test_http_errors_become_clear_messages(
    fake: Any, fast_settings: LlmSettings, status: int, needle: str, streaming: bool
) -> None:
    with pytest.raises(LlmHttpError) as info:
        if streaming:
            await collect(fake, f"error-{status}", fast_settings)
        else:
            await complete_chat(endpoint_for(fake), request(f"error-{status}"), settings=fast_settings)
    message = str(info.value)
    assert info.value.status == status
    assert f"HTTP {status}" in message and needle in message
    assert fake.base_url in message
    assert KEY not in message
    retried = status in (429, 500, 503)
    assert len(fake.requests) == (1 + fast_settings.max_retries if retried else 1)
    if retried:
        assert f"after {1 + fast_settings.max_retries} attempts" in message


async def test_401_echoing_the_key_is_redacted(fake: Any, fast_settings: LlmSettings) -> None:
    with pytest.raises(LlmHttpError) as info:
        await collect(fake, "error-401", fast_settings)
    assert "Incorrect API key provided: [redacted]" in str(info.value)
    assert KEY not in str(info.value) and "0123456789" not in str(info.value)


async def test_retry_before_first_token_then_success(fake: Any, fast_settings: LlmSettings) -> None:
    events = await collect(fake, "flaky-503-2", fast_settings, text="recovered")
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "recovered"
    assert len(fake.requests) == 3


async def test_batch_retries_429_honouring_retry_after(fake: Any, fast_settings: LlmSettings) -> None:
    result = await complete_chat(endpoint_for(fake), request("flaky-429-1", "ok"), settings=fast_settings)
    assert result.text == "ok"
    assert len(fake.requests) == 2


async def test_no_retry_when_disabled(fake: Any) -> None:
    settings = LlmSettings(max_retries=0)
    with pytest.raises(LlmHttpError):
        await collect(fake, "flaky-500-1", settings)
    assert len(fake.requests) == 1


async def test_connection_drop_after_tokens_is_not_retried(fake: Any, fast_settings: LlmSettings) -> None:
    fake.reply = "a b c d e f"
    seen: list[str] = []
    with pytest.raises(LlmStreamError, match="broke after 6 characters") as info:
        async with contextlib.aclosing(stream_chat(endpoint_for(fake), request("drop-after-3"), settings=fast_settings)) as it:
            async for event in it:
                if isinstance(event, TextDelta):
                    seen.append(event.text)
    assert seen == ["a ", "b ", "c "]
    assert "incomplete" in str(info.value)
    assert len(fake.requests) == 1


async def test_stall_before_first_token_times_out_and_is_retried(fake: Any) -> None:
    settings = LlmSettings(read_timeout_seconds=0.3, max_retries=1, retry_backoff_seconds=0.01)
    started = time.monotonic()
    with pytest.raises(LlmTimeoutError, match="sent nothing for 0.3 s"):
        await collect(fake, "stall-before-first", settings)
    assert len(fake.requests) == 2
    assert time.monotonic() - started < 3
    # Each timed-out attempt closed its connection.
    assert fake.wait_disconnect(0) is not None and fake.wait_disconnect(1) is not None


async def test_stall_mid_stream_times_out_without_retry(fake: Any) -> None:
    settings = LlmSettings(read_timeout_seconds=0.3, max_retries=2, retry_backoff_seconds=0.01)
    fake.reply = "x y z w"
    with pytest.raises(LlmTimeoutError, match="after 4 characters") as info:
        await collect(fake, "stall-after-2", settings)
    assert "read timeout" in str(info.value)
    assert len(fake.requests) == 1
    assert fake.wait_disconnect() is not None


async def test_malformed_stream(fake: Any, fast_settings: LlmSettings) -> None:
    with pytest.raises(LlmStreamError, match="malformed stream event"):
        await collect(fake, "malformed", fast_settings)
    assert len(fake.requests) == 1


async def test_error_inside_stream_is_reported_and_redacted(fake: Any, fast_settings: LlmSettings) -> None:
    with pytest.raises(LlmStreamError, match="reported an error during the stream") as info:
        await collect(fake, "midstream-error", fast_settings)
    assert "sk-abc123456789" not in str(info.value)


async def test_not_an_event_stream(fake: Any, fast_settings: LlmSettings) -> None:
    with pytest.raises(LlmStreamError, match="did not answer with an event stream"):
        await collect(fake, "html", fast_settings)
    with pytest.raises(LlmStreamError, match="not JSON"):
        await complete_chat(endpoint_for(fake), request("html"), settings=fast_settings)


async def test_connection_refused_is_retried_then_reported(fast_settings: LlmSettings) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = Endpoint(normalise_base_url(f"http://127.0.0.1:{port}/v1"), None)
    with pytest.raises(LlmConnectionError, match="could not connect to LLM endpoint"):
        await complete_chat(endpoint, request("echo"), settings=fast_settings)


async def test_interrupt_closes_the_upstream_connection_at_once(fake: Any, fast_settings: LlmSettings) -> None:
    fake.reply = " ".join(f"w{i}" for i in range(200))
    received: list[str] = []
    got_three = anyio.Event()

    async def consume() -> None:
        async with contextlib.aclosing(stream_chat(endpoint_for(fake), request("slow-50"), settings=fast_settings)) as it:
            async for event in it:
                if isinstance(event, TextDelta):
                    received.append(event.text)
                    if len(received) == 3:
                        got_three.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        with anyio.fail_after(5):
            await got_three.wait()
        cancelled_at = time.monotonic()
        tg.cancel_scope.cancel()

    disconnected_at = await anyio.to_thread.run_sync(fake.wait_disconnect)
    assert disconnected_at is not None, "the fake server never saw the client leave"
    assert disconnected_at - cancelled_at < 0.5
    assert fake.requests[0].completed_at is None
    assert fake.requests[0].chunks_sent < 50
    assert 3 <= len(received) < 50


async def test_interrupt_while_upstream_is_silent(fake: Any) -> None:
    settings = LlmSettings(read_timeout_seconds=30)
    async with anyio.create_task_group() as tg:
        tg.start_soon(collect, fake, "stall-after-2", settings)
        assert await anyio.to_thread.run_sync(fake.wait_chunks, 3)
        await anyio.sleep(0.05)
        cancelled_at = time.monotonic()
        tg.cancel_scope.cancel()
    disconnected_at = await anyio.to_thread.run_sync(fake.wait_disconnect)
    assert disconnected_at is not None and disconnected_at - cancelled_at < 0.5


async def test_concurrent_requests_share_one_pooled_client_which_is_then_closed(
    fake: Any, fast_settings: LlmSettings
) -> None:
    clients: list[httpx.AsyncClient] = []

    async def one(text: str) -> None:
        async with lease_client(fast_settings) as client:
            clients.append(client)
            result = await complete_chat(endpoint_for(fake), request("echo", text), settings=fast_settings)
            assert result.text == text

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(one, f"message {i}")
    assert len({id(c) for c in clients}) == 1
    assert clients[0].is_closed
    async with lease_client(fast_settings) as fresh:
        assert fresh is not clients[0] and not fresh.is_closed


async def test_events_are_plain_values() -> None:
    assert msgspec.to_builtins(TextDelta("x")) == {"text": "x"}
