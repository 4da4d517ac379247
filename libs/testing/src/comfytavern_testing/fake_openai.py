"""A real, scripted OpenAI-compatible server on loopback, for tests (and manual editor runs).

It is a small Starlette app served by uvicorn in a background thread on ``127.0.0.1`` with a
random port, so clients talk to it over real sockets (chunk boundaries, disconnects and
timeouts behave as in production; httpx's ASGI transport would buffer streams).

What it does is chosen by the request's ``model``:

===========================  ==========================================================
``echo`` / any other name    replies with the last user message (or :attr:`reply`)
``fake-chat``                replies with :attr:`reply`
``reasoning``                reasoning deltas, then the reply
``slow-<ms>``                the reply, one word every ``<ms>`` milliseconds
``stall-after-<n>``          ``n`` chunks, then silence (until the client leaves, max 30 s)
``stall-before-first``       headers, then silence
``drop-after-<n>``           ``n`` chunks, then the connection is cut mid-response
``malformed``                one chunk, then ``data: {not json``
``midstream-error``          one chunk, then ``data: {"error": {...}}``
``no-done``                  finish_reason but no ``[DONE]`` (valid)
``no-finish``                content only, then a clean end without finish or ``[DONE]``
``html``                     ``200 text/html`` instead of a stream
(path ``/moved/...``)          ``307`` redirect to the same path without ``/moved``
``error-<status>``           an OpenAI-style JSON error with that status
``flaky-<status>-<n>``       ``<status>`` for the first ``n`` calls of the test, then the reply
===========================  ==========================================================

Streaming answers send ``: keep-alive`` comment lines, ``data:`` chunks, a usage chunk when
``stream_options.include_usage`` is set, and ``data: [DONE]``; ``stream: false`` gets one
``chat.completion`` JSON body. Every request is recorded (headers, body), and so is every
client disconnect before the response finished, with its time, so tests can assert that an
interrupt really closed the upstream connection.

Run it by hand for the editor: ``python -m comfytavern_testing.fake_openai --port 3299``, then
point an ``APISettings`` node at ``http://127.0.0.1:3299/v1`` (local single-user mode).

Test folders get the server through the pytest fixtures :func:`fake_server` (one per session)
and :func:`fake` (records cleared around each test): import both into the folder's conftest.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

__all__ = ["FakeOpenAI", "RecordedRequest", "fake", "fake_server"]

MAX_STALL_SECONDS = 30.0


@dataclass
class RecordedRequest:
    index: int
    path: str
    headers: dict[str, str]
    body: Any
    at: float
    disconnected_at: float | None = None
    completed_at: float | None = None
    chunks_sent: int = 0


@dataclass
class FakeOpenAI:
    """State and control of the fake server. Thread-safe: the server runs in its own thread."""

    reply: str = "Hello from the fake LLM, streaming word by word."
    requests: list[RecordedRequest] = field(default_factory=list)
    _flaky_calls: dict[str, int] = field(default_factory=dict)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    port: int = 0

    # -- control ---------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, port: int = 0) -> FakeOpenAI:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app(),
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="fake-openai", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake OpenAI server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def reset(self) -> None:
        with self._cond:
            self.requests.clear()
            self._flaky_calls.clear()
            self.reply = FakeOpenAI.reply

    # -- observations ----------------------------------------------------------------------
    def wait_for(self, predicate: Any, timeout: float = 5.0) -> bool:
        """Block until ``predicate(self)`` is true (or the timeout passes)."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout=timeout)

    def wait_disconnect(self, index: int = -1, timeout: float = 5.0) -> float | None:
        """Time (``time.monotonic``) at which request ``index``'s client went away, or None."""

        def seen(fake: FakeOpenAI) -> bool:
            return bool(fake.requests) and fake.requests[index].disconnected_at is not None

        if not self.wait_for(seen, timeout):
            return None
        return self.requests[index].disconnected_at

    def wait_chunks(self, count: int, index: int = -1, timeout: float = 5.0) -> bool:
        return self.wait_for(lambda f: bool(f.requests) and f.requests[index].chunks_sent >= count, timeout)

    def _record(self, request: Request, body: Any) -> RecordedRequest:
        with self._cond:
            rec = RecordedRequest(
                index=len(self.requests),
                path=request.url.path,
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                at=time.monotonic(),
            )
            self.requests.append(rec)
            self._cond.notify_all()
            return rec

    def _update(self, rec: RecordedRequest, **changes: Any) -> None:
        with self._cond:
            for key, value in changes.items():
                setattr(rec, key, value)
            self._cond.notify_all()

    def _flaky(self, model: str) -> int:
        with self._cond:
            self._flaky_calls[model] = self._flaky_calls.get(model, 0) + 1
            return self._flaky_calls[model]

    # -- the app ---------------------------------------------------------------------------
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/moved/{rest:path}", self._moved, methods=["POST", "GET"]),
            ]
        )

    async def _moved(self, request: Request) -> Response:
        """Redirects to the real API (clients must not follow it)."""
        self._record(request, None)
        return RedirectResponse(f"/{request.path_params['rest']}", status_code=307)

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "echo", "object": "model"}]})

    async def _chat(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "invalid JSON body", "invalid_request_error")
        rec = self._record(request, body)
        model = str(body.get("model", ""))
        stream = bool(body.get("stream"))

        match = re.fullmatch(r"error-(\d{3})", model)
        if match:
            status = int(match.group(1))
            message = f"scripted error for {model}"
            if status == 401:
                # Like the real API: the error echoes the key that was presented.
                presented = request.headers.get("authorization", "").removeprefix("Bearer ")
                message = f"Incorrect API key provided: {presented}"
            return _error(status, message, _error_type(status))
        match = re.fullmatch(r"flaky-(\d{3})-(\d+)", model)
        if match and self._flaky(model) <= int(match.group(2)):
            status = int(match.group(1))
            headers = {"retry-after": "0"} if status == 429 else None
            return _error(status, f"scripted flaky failure for {model}", _error_type(status), headers)
        if model == "html":
            return Response("<html><body>not an API</body></html>", media_type="text/html")

        text = self._reply_text(body, model)
        if not stream:
            return JSONResponse(_completion(model, text, reasoning="Thinking..." if model == "reasoning" else ""))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return _Scripted(self, rec, self._script(model, text, include_usage), drop=model.startswith("drop-after-"))

    def _reply_text(self, body: dict[str, Any], model: str) -> str:
        if model in ("fake-chat", "reasoning") or model.startswith(("slow-", "stall-", "drop-", "no-")):
            return self.reply
        for message in reversed(body.get("messages") or []):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, list):
                    content = " ".join(p["text"] for p in content if isinstance(p, dict) and p.get("type") == "text")
                if isinstance(content, str) and content:
                    return content
        return self.reply

    async def _script(self, model: str, text: str, include_usage: bool) -> AsyncIterator[bytes]:
        words = _words(text)
        delay = 0.0
        limit: int | None = None
        stall_first = model == "stall-before-first"
        if m := re.fullmatch(r"slow-(\d+)", model):
            delay = int(m.group(1)) / 1000
        if m := re.fullmatch(r"(?:stall|drop)-after-(\d+)", model):
            limit = int(m.group(1))

        yield b": keep-alive\n\n"
        if stall_first:
            await anyio.sleep(MAX_STALL_SECONDS)
            return
        yield _sse({**_chunk_base(model), "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
        if model == "reasoning":
            for piece in ("Let me ", "think."):
                yield _sse({**_chunk_base(model), "choices": [{"index": 0, "delta": {"reasoning_content": piece}, "finish_reason": None}]})
        if model in ("malformed", "midstream-error"):
            yield _sse({**_chunk_base(model), "choices": [{"index": 0, "delta": {"content": words[0]}, "finish_reason": None}]})
            if model == "malformed":
                yield b"data: {not json\n\n"
            else:
                yield _sse({"error": {"message": "scripted mid-stream failure (key sk-abc123456789)", "type": "server_error"}})
            return
        for i, word in enumerate(words):
            if limit is not None and i >= limit:
                if model.startswith("stall-"):
                    await anyio.sleep(MAX_STALL_SECONDS)
                return
            if delay:
                await anyio.sleep(delay)
            yield _sse({**_chunk_base(model), "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]})
        if model == "no-finish":
            return
        yield _sse({**_chunk_base(model), "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if model == "no-done":
            return
        if include_usage:
            yield _sse({**_chunk_base(model), "choices": [], "usage": _usage(text)})
        yield b"data: [DONE]\n\n"


class _Scripted(Response):
    """A streaming response that notices a client disconnect even while it is silent."""

    def __init__(self, fake: FakeOpenAI, rec: RecordedRequest, script: AsyncIterator[bytes], drop: bool) -> None:
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
        ]
        self.fake = fake
        self.rec = rec
        self.script = script
        self.drop = drop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        if self.rec.completed_at is None:
                            self.fake._update(self.rec, disconnected_at=time.monotonic())
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(watch)
            try:
                async for piece in self.script:
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
                    if piece.startswith(b"data:"):
                        self.fake._update(self.rec, chunks_sent=self.rec.chunks_sent + 1)
            except OSError:
                self.fake._update(self.rec, disconnected_at=time.monotonic())
                tg.cancel_scope.cancel()
                return
            if self.drop:
                # Returning without finishing the body makes uvicorn cut the connection.
                tg.cancel_scope.cancel()
                return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            self.fake._update(self.rec, completed_at=time.monotonic())
            tg.cancel_scope.cancel()


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> Response:
    code = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}.get(status)
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": None, "code": code}},
        status_code=status,
        headers=headers,
    )


def _error_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def _words(text: str) -> list[str]:
    """The reply split into chunks that join back to exactly ``text``."""
    parts = re.findall(r"\S+\s*|\s+", text)
    return parts or [""]


def _chunk_base(model: str) -> dict[str, Any]:
    return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000, "model": model}


def _usage(text: str) -> dict[str, int]:
    completion = len(_words(text))
    return {"prompt_tokens": 7, "completion_tokens": completion, "total_tokens": 7 + completion}


def _completion(model: str, text: str, reasoning: str = "") -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if reasoning:
        message["reasoning_content"] = reasoning
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": _usage(text),
    }


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeOpenAI]:
    """The fake server, started once per test session (per conftest that imports it)."""
    server = FakeOpenAI().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake(fake_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """The running fake OpenAI server, with its records cleared for this test."""
    fake_server.reset()
    yield fake_server
    fake_server.reset()

def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the fake OpenAI-compatible endpoint on loopback.")
    parser.add_argument("--port", type=int, default=3299)
    args = parser.parse_args()
    fake = FakeOpenAI().start(args.port)
    print(f"fake OpenAI endpoint: {fake.base_url} (Ctrl+C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
