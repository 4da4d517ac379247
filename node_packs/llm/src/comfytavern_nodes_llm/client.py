"""The OpenAI-compatible chat client: httpx for HTTP, httpx-sse for the event stream.

Client lifetime (connection pooling)
    One ``httpx.AsyncClient`` is shared per event loop (an ``anyio.lowlevel.RunVar``) by every
    LLM request in flight: concurrent nodes of one run, and of all runs, share one pool bounded
    by ``max_connections``. It is reference counted and closed when the last request finishes,
    because a node pack has no lifespan to close it in, and a client left open on a loop that
    ends (every test, every TestClient portal) leaks sockets. The TLS context, the costly part,
    is built once per process, so a new client costs microseconds.

Retries
    Only before the first token: connection failures, timeouts before any data, 408/409/429
    and 5xx answers are retried ``max_retries`` times with exponential backoff (a server's
    ``Retry-After`` is honoured up to ``max_retry_delay_seconds``). Once a token has been handed
    to the node, any failure is final (retrying would duplicate text the user already saw).
    The delay is computed here (``_retry_delay``, ten lines) rather than by a retry library
    (tenacity, stamina): the decision depends on whether a token was already handed to the node
    and on the answer's ``Retry-After``, and the retry loop must stay inside the streaming
    ``async with`` so an interrupt closes the socket at once; a decorator-based retry wraps the
    whole call and can express neither.

Interrupt
    Everything runs inside ``async with client.stream(...)``: when the engine cancels the node's
    task, the cancellation unwinds through it and the response (and its socket) is closed at
    once, so the upstream server sees the disconnect and stops generating.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import json
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from anyio.lowlevel import RunVar

from comfytavern_nodes_llm.endpoint import Endpoint
from comfytavern_nodes_llm.errors import (
    LlmConnectionError,
    LlmError,
    LlmHttpError,
    LlmStreamError,
    LlmTimeoutError,
    http_error,
    redact,
)
from comfytavern_nodes_llm.lazy import lazy_import
from comfytavern_nodes_llm.settings import LlmSettings
from comfytavern_nodes_llm.ssrf import RequestTarget, guard_url, parse_allowlist

if TYPE_CHECKING:
    import httpx
    import httpx_sse
else:  # loaded when a request is made, not at server start (see .lazy)
    httpx = lazy_import("httpx")
    httpx_sse = lazy_import("httpx_sse")

__all__ = [
    "ChatRequest",
    "ChatResult",
    "Finished",
    "LlmEvent",
    "ReasoningDelta",
    "TextDelta",
    "UsageInfo",
    "complete_chat",
    "lease_client",
    "stream_chat",
]

USER_AGENT = "ComfyTavern-Server/0.1 (+llm nodes)"
MAX_ERROR_BODY_BYTES = 64 * 1024


# -- events --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """Reasoning text (``reasoning_content`` of DeepSeek/vLLM, ``reasoning`` of OpenRouter)."""

    text: str


@dataclass(frozen=True, slots=True)
class UsageInfo:
    usage: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Finished:
    finish_reason: str | None
    model: str | None = None
    response_id: str | None = None


LlmEvent = TextDelta | ReasoningDelta | UsageInfo | Finished


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]
    #: Extra body fields (temperature, max_tokens, top_p, seed, ...); they may override defaults.
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ChatResult:
    text: str
    finish_reason: str | None = None
    model: str | None = None
    response_id: str | None = None
    usage: dict[str, Any] | None = None
    reasoning: str = ""

    def as_response(self) -> dict[str, Any]:
        """The standardised response object (``GenericLlmRequest.response``)."""
        out: dict[str, Any] = {
            "text": self.text,
            "model": self.model,
            "finish_reason": self.finish_reason,
            "usage": self.usage,
            "response_id": self.response_id,
        }
        if self.reasoning:
            out["reasoning"] = self.reasoning
        return out


# -- shared client -------------------------------------------------------------------------


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


@dataclass
class _Shared:
    client: httpx.AsyncClient
    users: int = 0


_CLIENTS: RunVar[dict[tuple[bool, int], _Shared]] = RunVar("comfytavern_nodes_llm.clients")


def _new_client(settings: LlmSettings, tls: ssl.SSLContext) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        verify=tls,
        trust_env=settings.trust_env,
        follow_redirects=False,
        limits=httpx.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=min(20, settings.max_connections),
            keepalive_expiry=30.0,
        ),
        headers={"User-Agent": USER_AGENT},
    )


@contextlib.asynccontextmanager
async def lease_client(settings: LlmSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The event loop's shared client; closed when its last user leaves."""
    try:
        table = _CLIENTS.get()
    except LookupError:
        table = {}
        _CLIENTS.set(table)
    key = (settings.trust_env, settings.max_connections)
    shared = table.get(key)
    if shared is None:
        tls = await anyio.to_thread.run_sync(_tls_context)
        shared = table.get(key)  # another task may have created it meanwhile
        if shared is None:
            shared = _Shared(_new_client(settings, tls))
            table[key] = shared
    shared.users += 1
    try:
        yield shared.client
    finally:
        shared.users -= 1
        if shared.users == 0:
            if table.get(key) is shared:
                del table[key]
            with anyio.CancelScope(shield=True):
                await shared.client.aclose()


# -- helpers -------------------------------------------------------------------------------


def _timeout(settings: LlmSettings) -> httpx.Timeout:
    return httpx.Timeout(
        connect=settings.connect_timeout_seconds,
        read=settings.read_timeout_seconds,
        write=settings.write_timeout_seconds,
        pool=settings.pool_timeout_seconds,
    )


def _headers(endpoint: Endpoint, target: RequestTarget, accept: str) -> dict[str, str]:
    headers = {"Accept": accept, **target.headers}
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    return headers


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, parsed.timestamp() - time.time())


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    data = bytearray()
    async for piece in response.aiter_bytes():
        data.extend(piece)
        if len(data) > limit:
            break
    return bytes(data[:limit])


def _redirect_error(response: httpx.Response, endpoint: Endpoint) -> LlmStreamError:
    location = redact(response.headers.get("location", "(no location)"), [endpoint.api_key])
    return LlmStreamError(
        f"LLM endpoint {endpoint.display} redirected (HTTP {response.status_code}) to {location}; "
        "redirects are not followed, put the final URL in base_url"
    )


async def _error_from_response(
    response: httpx.Response, endpoint: Endpoint, attempts: int
) -> LlmHttpError:
    raw = await _read_capped(response, MAX_ERROR_BODY_BYTES)
    text = raw.decode("utf-8", "replace")
    body: Any = text
    with contextlib.suppress(ValueError):
        body = json.loads(text)
    return http_error(
        response.status_code,
        body,
        where=endpoint.display,
        secrets=[endpoint.api_key],
        retry_after=_retry_after(response),
        attempts=attempts,
    )


def _map_transport_error(exc: Exception, endpoint: Endpoint, settings: LlmSettings, *, streamed: int) -> LlmError:
    """An httpx exception as a clear :class:`LlmError` (retryable only before any token)."""
    where = endpoint.display
    detail = redact(str(exc) or type(exc).__name__, [endpoint.api_key])
    if isinstance(exc, httpx.ConnectTimeout):
        return LlmConnectionError(
            f"could not connect to LLM endpoint {where} within {settings.connect_timeout_seconds:g} s"
        )
    if isinstance(exc, httpx.PoolTimeout):
        return LlmTimeoutError(
            f"no free connection to LLM endpoint {where} within {settings.pool_timeout_seconds:g} s "
            "(too many LLM requests in flight; raise plugins.settings.llm.max_connections)"
        )
    if isinstance(exc, httpx.ReadTimeout):
        return LlmTimeoutError(
            f"LLM endpoint {where} sent nothing for {settings.read_timeout_seconds:g} s "
            + (f"after {streamed} characters of output " if streamed else "")
            + "(read timeout; plugins.settings.llm.read_timeout_seconds)"
        )
    if isinstance(exc, httpx.WriteTimeout):
        return LlmTimeoutError(f"sending the request to LLM endpoint {where} timed out")
    if isinstance(exc, httpx.ConnectError):
        return LlmConnectionError(f"could not connect to LLM endpoint {where}: {detail}")
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        if streamed:
            return LlmStreamError(
                f"the connection to LLM endpoint {where} broke after {streamed} characters of "
                f"output ({detail}); the reply is incomplete"
            )
        return LlmConnectionError(f"the connection to LLM endpoint {where} broke: {detail}")
    if isinstance(exc, httpx.TooManyRedirects | httpx.UnsupportedProtocol | httpx.InvalidURL):
        return LlmStreamError(f"LLM endpoint {where}: {detail}")
    return LlmConnectionError(f"request to LLM endpoint {where} failed: {detail}")


def _content_text(value: Any) -> str:
    """A delta's ``content``: a string, or (some providers) a list of text parts."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts: list[str] = []
        for item in value:
            if isinstance(item, str):
                parts.append(item)
            elif isinstance(item, dict) and isinstance(item.get("text"), str):
                parts.append(item["text"])
        return "".join(parts)
    raise LlmStreamError(f"unexpected content type {type(value).__name__} in the LLM response")


def _stream_chunk_events(obj: Any, where: str, secrets: list[str | None]) -> tuple[list[LlmEvent], str | None]:
    """Events of one ``chat.completion.chunk``; second value: its finish reason, if any."""
    if not isinstance(obj, dict):
        raise LlmStreamError(f"LLM endpoint {where} sent a stream event that is not a JSON object")
    if obj.get("error") is not None:
        message = obj["error"].get("message") if isinstance(obj["error"], dict) else obj["error"]
        raise LlmStreamError(
            f"LLM endpoint {where} reported an error during the stream: {redact(str(message), secrets)}"
        )
    events: list[LlmEvent] = []
    finish: str | None = None
    choices = obj.get("choices")
    if choices is not None and not isinstance(choices, list):
        raise LlmStreamError(f"LLM endpoint {where} sent 'choices' that is not a list")
    for choice in choices or ():
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            continue
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            raise LlmStreamError(f"LLM endpoint {where} sent a 'delta' that is not an object")
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            events.append(ReasoningDelta(reasoning))
        text = _content_text(delta.get("content"))
        if text:
            events.append(TextDelta(text))
        if choice.get("finish_reason"):
            finish = str(choice["finish_reason"])
    usage = obj.get("usage")
    if isinstance(usage, dict) and usage:
        events.append(UsageInfo(usage))
    return events, finish


def _result_from_completion(obj: Any, where: str, secrets: list[str | None]) -> ChatResult:
    """A non-streaming ``chat.completion`` body as a :class:`ChatResult`."""
    if not isinstance(obj, dict):
        raise LlmStreamError(f"LLM endpoint {where} answered with JSON that is not an object")
    if obj.get("error") is not None:
        message = obj["error"].get("message") if isinstance(obj["error"], dict) else obj["error"]
        raise LlmStreamError(f"LLM endpoint {where} reported an error: {redact(str(message), secrets)}")
    choices = obj.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise LlmStreamError(f"LLM endpoint {where} answered without any choices")
    first = choices[0]
    message = first.get("message") or {}
    if not isinstance(message, dict):
        raise LlmStreamError(f"LLM endpoint {where} answered with a 'message' that is not an object")
    reasoning = message.get("reasoning_content") or message.get("reasoning") or ""
    usage = obj.get("usage")
    return ChatResult(
        text=_content_text(message.get("content")),
        finish_reason=str(first["finish_reason"]) if first.get("finish_reason") else None,
        model=str(obj["model"]) if obj.get("model") else None,
        response_id=str(obj["id"]) if obj.get("id") else None,
        usage=usage if isinstance(usage, dict) else None,
        reasoning=reasoning if isinstance(reasoning, str) else "",
    )


def _body(request: ChatRequest, *, stream: bool, settings: LlmSettings) -> dict[str, Any]:
    body: dict[str, Any] = {"model": request.model, "messages": request.messages}
    body.update(request.params)
    body["stream"] = stream
    if stream:
        if settings.request_usage and "stream_options" not in request.params:
            body["stream_options"] = {"include_usage": True}
    else:
        body.pop("stream_options", None)
    return body


def _retry_delay(error: LlmError, attempt: int, settings: LlmSettings) -> float | None:
    """Seconds to wait before the next attempt, or None when it must not be retried."""
    if not error.retryable or attempt > settings.max_retries:
        return None
    delay = settings.retry_backoff_seconds * (2 ** (attempt - 1))
    if isinstance(error, LlmHttpError) and error.retry_after is not None:
        if error.retry_after > settings.max_retry_delay_seconds:
            return None
        delay = max(delay, error.retry_after)
    return min(delay, settings.max_retry_delay_seconds)


@dataclass(frozen=True)
class _Call:
    """One logical request (retried as a whole): where it goes and what it sends."""

    endpoint: Endpoint
    target: RequestTarget
    body: dict[str, Any]
    headers: dict[str, str]
    settings: LlmSettings

    @property
    def where(self) -> str:
        return self.endpoint.display

    @property
    def secrets(self) -> list[str | None]:
        return [self.endpoint.api_key]


async def _prepare(
    endpoint: Endpoint, request: ChatRequest, *, stream: bool, settings: LlmSettings, multi_user: bool
) -> _Call:
    """Check the URL (SSRF guard in multi-user mode) and build the request."""
    enforce = multi_user and not settings.allow_private_base_urls
    allowlist = parse_allowlist(settings.private_base_url_allowlist) if enforce else ()
    target = await guard_url(endpoint.url("chat/completions"), enforce=enforce, allowlist=allowlist)
    headers = _headers(endpoint, target, "text/event-stream" if stream else "application/json")
    if stream:
        headers["Cache-Control"] = "no-store"
    return _Call(endpoint, target, _body(request, stream=stream, settings=settings), headers, settings)


@contextlib.asynccontextmanager
async def _open(client: httpx.AsyncClient, call: _Call, attempt: int) -> AsyncIterator[httpx.Response]:
    """The response of one attempt, once it is known to be a success (2xx)."""
    async with client.stream(
        "POST",
        call.target.url,
        json=call.body,
        headers=call.headers,
        timeout=_timeout(call.settings),
        extensions=call.target.extensions,
    ) as response:
        if response.status_code >= 400:
            raise await _error_from_response(response, call.endpoint, attempt)
        if 300 <= response.status_code < 400:
            raise _redirect_error(response, call.endpoint)
        yield response


async def _read_json(response: httpx.Response, call: _Call) -> Any:
    limit = call.settings.max_response_bytes
    raw = await _read_capped(response, limit + 1)
    if len(raw) > limit:
        raise LlmStreamError(f"LLM endpoint {call.where} sent more than {limit} bytes")
    try:
        return json.loads(raw)
    except ValueError:
        raise LlmStreamError(
            f"LLM endpoint {call.where} answered with something that is not JSON "
            f"(content type {response.headers.get('content-type', 'unknown')!r})"
        ) from None


def _next_delay(exc: Exception, call: _Call, attempt: int, *, streamed: int) -> float:
    """Seconds to wait before retrying after ``exc``; raises the clear error when it is final."""
    if isinstance(exc, httpx_sse.SSEError):
        raise LlmStreamError(
            f"LLM endpoint {call.where} did not answer with an event stream: {redact(str(exc), call.secrets)}"
        ) from None
    if isinstance(exc, httpx.HTTPError):
        error = _map_transport_error(exc, call.endpoint, call.settings, streamed=streamed)
    elif isinstance(exc, LlmError):
        error = exc
    else:
        raise exc
    delay = None if streamed else _retry_delay(error, attempt, call.settings)
    if delay is None:
        raise error from None
    return delay


def _completion_events(result: ChatResult) -> list[LlmEvent]:
    events: list[LlmEvent] = []
    if result.reasoning:
        events.append(ReasoningDelta(result.reasoning))
    if result.text:
        events.append(TextDelta(result.text))
    if result.usage:
        events.append(UsageInfo(result.usage))
    events.append(Finished(result.finish_reason, result.model, result.response_id))
    return events


# -- streaming -----------------------------------------------------------------------------


async def stream_chat(
    endpoint: Endpoint,
    request: ChatRequest,
    *,
    settings: LlmSettings,
    multi_user: bool = False,
) -> AsyncGenerator[LlmEvent, None]:
    """Stream one chat completion as events, ending with :class:`Finished`.

    Use it inside ``contextlib.aclosing`` so that leaving early closes the connection at once.
    """
    call = await _prepare(endpoint, request, stream=True, settings=settings, multi_user=multi_user)
    where, secrets = call.where, call.secrets
    async with lease_client(settings) as client:
        attempt = 0
        while True:
            attempt += 1
            streamed = 0
            try:
                async with _open(client, call, attempt) as response:
                    if response.status_code != 200:
                        raise LlmStreamError(
                            f"LLM endpoint {where} answered HTTP {response.status_code} instead of a stream"
                        )
                    content_type = response.headers.get("content-type", "").partition(";")[0].strip()
                    if content_type == "application/json":
                        # A server that ignores ``stream: true`` answers with one completion.
                        result = _result_from_completion(await _read_json(response, call), where, secrets)
                        for event in _completion_events(result):
                            yield event
                        return
                    finish: str | None = None
                    model: str | None = None
                    response_id: str | None = None
                    done = False
                    async with contextlib.aclosing(httpx_sse.EventSource(response).aiter_sse()) as sse_events:
                        async for sse in sse_events:
                            data = sse.data.strip()
                            if not data:
                                continue
                            if data.startswith("[DONE]"):
                                done = True
                                break
                            try:
                                obj = json.loads(data)
                            except ValueError:
                                raise LlmStreamError(
                                    f"LLM endpoint {where} sent a malformed stream event (not JSON): "
                                    f"{redact(data[:120], secrets)!r}"
                                ) from None
                            events, chunk_finish = _stream_chunk_events(obj, where, secrets)
                            model = model or (str(obj["model"]) if obj.get("model") else None)
                            response_id = response_id or (str(obj["id"]) if obj.get("id") else None)
                            finish = chunk_finish or finish
                            for event in events:
                                if isinstance(event, TextDelta | ReasoningDelta):
                                    streamed += len(event.text)
                                yield event
                    if not done and finish is None:
                        raise LlmStreamError(
                            f"the stream from LLM endpoint {where} ended without a finish reason or "
                            f"[DONE] after {streamed} characters; the reply may be incomplete"
                        )
                    yield Finished(finish, model, response_id)
                    return
            except (httpx.HTTPError, httpx_sse.SSEError, LlmError) as exc:
                delay = _next_delay(exc, call, attempt, streamed=streamed)
            await anyio.sleep(delay)


# -- batch ---------------------------------------------------------------------------------


async def complete_chat(
    endpoint: Endpoint,
    request: ChatRequest,
    *,
    settings: LlmSettings,
    multi_user: bool = False,
) -> ChatResult:
    """One non-streaming chat completion (``stream: false``), retried like :func:`stream_chat`."""
    call = await _prepare(endpoint, request, stream=False, settings=settings, multi_user=multi_user)
    async with lease_client(settings) as client:
        attempt = 0
        while True:
            attempt += 1
            try:
                async with _open(client, call, attempt) as response:
                    return _result_from_completion(await _read_json(response, call), call.where, call.secrets)
            except (httpx.HTTPError, LlmError) as exc:
                delay = _next_delay(exc, call, attempt, streamed=0)
            await anyio.sleep(delay)
