"""A fake OpenAI-compatible upstream that streams as fast as it can (the streaming benchmark's
source). Run as ``python -m benchmarks.sustained.upstream --port P``.

Every ``POST`` answers a chat-completion stream of ``n`` content chunks, ``n`` taken from the
request's ``model`` (``chunks-<n>``), written in one go and then the connection is closed: the
upstream costs next to nothing, so what is measured is the reader. Hand-written on asyncio
streams for that reason (a framework would be the bottleneck).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re

_MODEL = re.compile(rb'"model"\s*:\s*"chunks-(\d+)"')
_BODIES: dict[int, bytes] = {}


def _body(n: int) -> bytes:
    found = _BODIES.get(n)
    if found is None:
        def chunk(delta: dict[str, str], finish: str | None) -> bytes:
            obj = {"id": "bench", "object": "chat.completion.chunk", "created": 0, "model": "bench",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"

        parts = [chunk({"role": "assistant", "content": ""}, None)]
        parts += [chunk({"content": f"t{i} "}, None) for i in range(n)]
        parts += [chunk({}, "stop"), b"data: [DONE]\n\n"]
        found = _BODIES[n] = b"".join(parts)
    return found


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await reader.readexactly(length) if length else b""
        match = _MODEL.search(body)
        data = _body(int(match.group(1)) if match else 10)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                     b"Connection: close\r\nContent-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _main(port: int) -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(_main(parser.parse_args().port))
