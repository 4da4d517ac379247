"""Interrupting a run cancels an in-flight HTTP stream for real: the upstream server sees the
client go away (a real loopback server, a real httpx client inside a streaming node)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from comfytavern import Input, Output, hookimpl, node
from comfytavern_testing import client_for


class Upstream:
    """A slow streaming server: one line every 50 ms, forever, until the client disconnects."""

    def __init__(self) -> None:
        self.requests = threading.Event()
        self.disconnected = threading.Event()

        async def slow(request: Request) -> StreamingResponse:
            self.requests.set()

            async def body() -> AsyncIterator[bytes]:
                try:
                    i = 0
                    while True:
                        yield f"line {i}\n".encode()
                        i += 1
                        await anyio.sleep(0.05)
                finally:
                    self.disconnected.set()

            return StreamingResponse(body(), media_type="text/plain")

        self.app = Starlette(routes=[Route("/slow", slow)])


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, str]]:
    state = Upstream()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(state.app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    try:
        yield state, f"http://127.0.0.1:{port}/slow"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@node(type="HttpStream", category="test", display_name="Stream lines over HTTP", namespace="x",
      inputs={"url": Input(data_flow_type="STRING", required=True)},
      outputs={"stream": Output(data_flow_type="STREAM", is_stream=True)})
async def http_stream(inputs: dict[str, Any], ctx: Any) -> AsyncIterator[Any]:
    async with httpx.AsyncClient(timeout=30) as client, client.stream("GET", inputs["url"]) as response:
        async for line in response.aiter_lines():
            yield {"type": "text_chunk", "content": line}


class HttpPack:
    name = "x-http-nodes"
    NAMESPACE = "x"

    @hookimpl
    def register_nodes(self) -> list[Any]:
        return [http_stream]


def test_interrupt_closes_the_upstream_connection(kernel_factory: Any, upstream: tuple[Upstream, str]) -> None:
    state, url = upstream
    payload = {"nodes": [{"id": "h", "fullType": "x:HttpStream", "inputs": {"url": url}}]}
    with client_for(kernel_factory(node_packs=[HttpPack()])) as client, client.websocket_connect("/ws?user=alice") as ws:
        ws.send_json({"type": "PROMPT_REQUEST", "payload": payload})
        prompt_id = ws.receive_json()["payload"]["promptId"]
        chunks = 0
        while chunks < 3:
            message = ws.receive_json()
            if message["type"] == "NODE_YIELD":
                chunks += 1
        assert state.requests.is_set() and not state.disconnected.is_set()
        start = time.perf_counter()
        ws.send_json({"type": "INTERRUPT_REQUEST", "payload": {"promptId": prompt_id}})
        while True:
            message = ws.receive_json()
            if message["type"] == "EXECUTION_STATUS_UPDATE":
                break
        assert message["payload"] == {"promptId": prompt_id, "status": "interrupted"}
        assert time.perf_counter() - start < 1.0
        assert state.disconnected.wait(5), "the upstream server never saw the client disconnect"
        record = client.get(f"/api/prompt/{prompt_id}", headers={"X-User": "alice"}).json()
        assert record["status"] == "interrupted" and record["nodeStatus"]["h"]["status"] == "interrupted"
