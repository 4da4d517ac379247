"""Answering a completion: one ``chat.completion`` body, or ``chat.completion.chunk`` SSE events.

Both ways watch the client: if it goes away before the reply is complete, the run is
interrupted at once, which cancels the LLM node and so closes its upstream request (generation
and billing stop). Starlette's ``StreamingResponse`` only notices a disconnect by itself on
servers that speak ASGI HTTP < 2.4, and only between chunks on the others; a silent stream (the
LLM still thinking) must be cut at once too, hence :class:`RelayResponse`, which listens for
``http.disconnect`` during the whole response.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from comfytavern_openai_api.errors import OpenAIError, error_event, error_response
from comfytavern_openai_api.relay import End, Item, Reasoning, RunFollower, Text, failure, final_text, final_usage
from comfytavern_openai_api.wire import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChunkChoice,
    Delta,
    ReplyMessage,
)

__all__ = ["Completion", "RelayResponse", "until_disconnect"]

T = TypeVar("T")
_encoder = msgspec.json.Encoder()
DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"


async def until_disconnect(receive: Receive, work: Callable[[], Awaitable[T]]) -> tuple[bool, T | None]:
    """Run ``work``; if the client disconnects first, cancel it. ``(client_gone, result)``."""
    gone = False
    result: T | None = None
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            nonlocal gone
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone = True
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(watch)
        result = await work()
        tg.cancel_scope.cancel()
    return gone, result


class RelayResponse(Response):
    """An SSE response written by ``produce(write)``, cancelled the moment the client leaves;
    ``on_close`` always runs afterwards (shielded), whatever ended the response."""

    media_type = "text/event-stream"

    def __init__(
        self,
        produce: Callable[[Callable[[bytes], Awaitable[None]]], Awaitable[None]],
        on_close: Callable[[], Awaitable[None]],
    ) -> None:
        # No Content-Length (Response.__init__ would set one for the empty body).
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        self.produce = produce
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})

        async def write(data: bytes) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": True})

        async def work() -> bool:
            try:
                await self.produce(write)
            except OSError:  # the client went away while we wrote (ASGI HTTP 2.4 servers)
                return False
            return True

        try:
            gone, finished = await until_disconnect(receive, work)
        finally:
            with anyio.CancelScope(shield=True):
                await self.on_close()
        if not gone and finished:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


@dataclass
class Completion:
    """One accepted completion request whose run has been queued."""

    follower: RunFollower
    model: str
    include_usage: bool
    max_run_seconds: float
    keepalive_seconds: float

    def __post_init__(self) -> None:
        self.id = f"chatcmpl-{self.follower.prompt_id}"
        self.created = int(time.time())
        self.deadline = anyio.current_time() + self.max_run_seconds

    def _remaining(self) -> float:
        return self.deadline - anyio.current_time()

    def _timeout(self) -> OpenAIError:
        return OpenAIError.server(
            f"the workflow did not finish within {self.max_run_seconds:g} s; the run was interrupted", "timeout", 504
        )

    # -- one body ------------------------------------------------------------------------------
    async def whole(self, request: Request) -> Response:
        """Wait for the end of the run and answer one ``chat.completion``."""
        texts: list[str] = []
        reasoning: list[str] = []

        async def collect() -> End | None:
            while True:
                item = await self.follower.next(max(self._remaining(), 0))
                if item is None:
                    return None
                if isinstance(item, End):
                    return item
                (texts if isinstance(item, Text) else reasoning).append(item.text)

        try:
            gone, end = await until_disconnect(request.receive, collect)
        finally:
            if not self.follower.finished:
                await self.follower.interrupt()
            self.follower.close()
        if gone:
            return Response(status_code=499)  # nobody is listening any more
        if end is None:
            return error_response(self._timeout())
        problem = failure(end.record)
        if problem is not None:
            return error_response(problem)
        assert end.record is not None
        text = final_text(end.record) or "".join(texts)
        message = ReplyMessage("assistant", text, "".join(reasoning) or None)
        body = ChatCompletion(
            id=self.id,
            object="chat.completion",
            created=self.created,
            model=self.model,
            choices=[ChatChoice(0, message, self.follower.finish_reason or "stop")],
            usage=final_usage(end.record, self.follower.usage),
        )
        return Response(_encoder.encode(body), media_type="application/json")

    # -- a stream ------------------------------------------------------------------------------
    async def stream(self, request: Request) -> Response:
        """Stream the reply. The first byte waits (up to the keep-alive interval, watching the
        client) for the first piece of the reply, so a run that fails at once still gets an
        error status; after that, errors come as an error event."""

        async def first() -> Item | None:
            return await self.follower.next(min(self.keepalive_seconds, max(self._remaining(), 0)))

        try:
            gone, item = await until_disconnect(request.receive, first)
        except BaseException:
            await self._close()
            raise
        if gone:
            await self._close()
            return Response(status_code=499)
        if isinstance(item, End):
            problem = failure(item.record)
            if problem is not None:
                await self._close()
                return error_response(problem)

        async def produce(write: Callable[[bytes], Awaitable[None]]) -> None:
            await self._relay(item, write)

        return RelayResponse(produce, self._close)

    async def _close(self) -> None:
        if not self.follower.finished:
            await self.follower.interrupt()
        self.follower.close()

    def _chunk(self, delta: Delta, finish: str | None = None, usage: dict[str, Any] | None = None) -> bytes:
        chunk = ChatCompletionChunk(
            self.id, "chat.completion.chunk", self.created, self.model, [ChunkChoice(0, delta, finish)], usage
        )
        return b"data: " + _encoder.encode(chunk) + b"\n\n"

    async def _relay(self, item: Item | None, write: Callable[[bytes], Awaitable[None]]) -> None:
        await write(self._chunk(Delta(role="assistant", content="")))
        sent: list[str] = []
        while True:
            if item is None:
                if self._remaining() <= 0:
                    await self.follower.interrupt()
                    await write(error_event(self._timeout()))
                    return
                await write(KEEPALIVE)
            elif isinstance(item, Text):
                sent.append(item.text)
                await write(self._chunk(Delta(content=item.text)))
            elif isinstance(item, Reasoning):
                await write(self._chunk(Delta(reasoning_content=item.text)))
            else:
                await self._finish(item, "".join(sent), write)
                return
            item = await self.follower.next(max(min(self.keepalive_seconds, self._remaining()), 0))

    async def _finish(self, end: End, sent: str, write: Callable[[bytes], Awaitable[None]]) -> None:
        problem = failure(end.record)
        if problem is not None:
            await write(error_event(problem))
            return
        assert end.record is not None
        text = final_text(end.record)
        rest = text[len(sent):] if text.startswith(sent) else ("" if sent else text)
        if rest:
            await write(self._chunk(Delta(content=rest)))
        usage = final_usage(end.record, self.follower.usage)
        reason = self.follower.finish_reason or "stop"
        await write(self._chunk(Delta(), reason, None if self.include_usage else usage))
        if self.include_usage and usage is not None:
            chunk = ChatCompletionChunk(self.id, "chat.completion.chunk", self.created, self.model, [], usage)
            await write(b"data: " + _encoder.encode(chunk) + b"\n\n")
        await write(DONE)

