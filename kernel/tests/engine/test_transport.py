"""The coalescing WebSocket protocol on a real uvicorn server: order, text, close code, the direct
data-frame path (``SEND_TEXT_FRAMES``)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
import websockets
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from comfytavern.engine.transport import SEND_TEXT_FRAMES

N = 2000


async def burst(websocket: WebSocket) -> None:
    await websocket.accept()
    count = int(await websocket.receive_text())
    for i in range(count):
        await websocket.send_text(f'{{"n": {i}, "text": "{"x" * (i % 50)}"}}')
    await websocket.send_bytes(b"\x00\x01")
    await websocket.close(4321, "done")


async def mixed(websocket: WebSocket) -> None:
    """Direct frames interleaved with ASGI ones, then a close: one ordered stream."""
    await websocket.accept()
    count = int(await websocket.receive_text())
    try_send_many = websocket.scope["extensions"][SEND_TEXT_FRAMES]
    direct = 0
    for i in range(count):
        text = f'{{"n": {i}}}'
        if i % 3 == 0:
            await websocket.send_text(text)
        elif try_send_many([text.encode()]):
            direct += 1
        else:
            await websocket.send_text(text)
    await websocket.send_text(f'{{"direct": {direct}}}')
    await websocket.close(4000, "bye")


async def batches(websocket: WebSocket) -> None:
    """Batches of direct frames (1, 2, 3... frames) between single ASGI sends."""
    await websocket.accept()
    try_send_many = websocket.scope["extensions"][SEND_TEXT_FRAMES]
    n, size = 0, 1
    while n < N:
        frames = [f'{{"n": {i}}}'.encode() for i in range(n, min(N, n + size))]
        if not try_send_many(frames):
            for frame in frames:
                await websocket.send_text(frame.decode())
        n += len(frames)
        if n < N:
            await websocket.send_text(f'{{"n": {n}}}')
            n += 1
        size += 1
    await websocket.close(4001)


SIZES = (0, 1, 125, 126, 127, 65535, 65536, 70000)


async def sizes(websocket: WebSocket) -> None:
    """Direct frames across the three header lengths (7-bit, 16-bit, 64-bit payload length)."""
    await websocket.accept()
    try_send_many = websocket.scope["extensions"][SEND_TEXT_FRAMES]
    for n in SIZES:
        text = "é" * (n // 2) + "x" * (n % 2)  # n UTF-8 bytes
        if not try_send_many([text.encode()]):
            await websocket.send_text(text)
    await websocket.close()


@pytest.fixture(params=[False, True], ids=["plain", "deflate"])
def server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = Starlette(routes=[WebSocketRoute("/ws", burst), WebSocketRoute("/mixed", mixed), WebSocketRoute("/sizes", sizes),
                          WebSocketRoute("/batches", batches)])
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", ws="comfytavern.engine.transport:CoalescingWebSocketProtocol",
        ws_per_message_deflate=request.param,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    try:
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_frames_arrive_in_order_and_the_close_handshake_works(server_url: str) -> None:
    async def client() -> tuple[list[str], bytes, int | None]:
        async with websockets.connect(server_url) as ws:
            await ws.send(str(N))
            texts = [await ws.recv() for _ in range(N)]
            data = await ws.recv()
            with pytest.raises(websockets.ConnectionClosed) as info:
                await ws.recv()
            return texts, data, info.value.rcvd.code if info.value.rcvd else None  # type: ignore[return-value]

    texts, data, code = asyncio.run(client())
    assert texts == [f'{{"n": {i}, "text": "{"x" * (i % 50)}"}}' for i in range(N)]
    assert data == b"\x00\x01"
    assert code == 4321


def test_direct_frames_keep_their_order_among_asgi_sends(server_url: str) -> None:
    async def client() -> tuple[list[str], str, int | None, bool]:
        async with websockets.connect(server_url.replace("/ws", "/mixed")) as ws:
            compressed = bool(ws.response.headers.get("Sec-WebSocket-Extensions"))
            await ws.send(str(N))
            texts = [await ws.recv() for _ in range(N)]
            summary = await ws.recv()
            with pytest.raises(websockets.ConnectionClosed) as info:
                await ws.recv()
            return texts, summary, info.value.rcvd.code if info.value.rcvd else None, compressed  # type: ignore[return-value]

    texts, summary, code, compressed = asyncio.run(client())
    assert texts == [f'{{"n": {i}}}' for i in range(N)]
    # Without compression every frame not sent through ASGI went direct; with it none may.
    expected = 0 if compressed else N - (N + 2) // 3
    assert summary == f'{{"direct": {expected}}}'
    assert code == 4000


def test_direct_frames_of_every_header_length(server_url: str) -> None:
    async def client() -> list[str]:
        async with websockets.connect(server_url.replace("/ws", "/sizes"), max_size=None) as ws:
            return [await ws.recv() for _ in SIZES]  # type: ignore[misc]

    texts = asyncio.run(client())
    assert [len(t.encode()) for t in texts] == list(SIZES)
    assert texts[-1] == "é" * 35000


def test_batches_of_direct_frames_keep_their_order(server_url: str) -> None:
    async def client() -> list[str]:
        async with websockets.connect(server_url.replace("/ws", "/batches")) as ws:
            return [await ws.recv() for _ in range(N)]  # type: ignore[misc]

    assert asyncio.run(client()) == [f'{{"n": {i}}}' for i in range(N)]
