"""A minimal WebSocket client for the benchmark: asyncio streams, no compression, one small
msgspec decode per frame (``type`` and the run id) so that the client, not the server, is not
what gets measured. Masked client frames, unmasked server frames (RFC 6455)."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from typing import Any

import msgspec


class _Head(msgspec.Struct):
    type: str
    payload: dict[str, Any]


_decode_head = msgspec.json.Decoder(_Head).decode


class LeanWebSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int, path: str = "/ws") -> LeanWebSocket:
        reader, writer = await asyncio.open_connection(host, port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        status = await reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in status.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"handshake failed: {status[:200]!r}")
        return cls(reader, writer)

    async def send_text(self, text: str) -> None:
        await self._send(0x1, text.encode())

    async def _send(self, opcode: int, data: bytes) -> None:
        mask = os.urandom(4)
        n = len(data)
        first = 0x80 | opcode
        if n < 126:
            head = struct.pack("!BB", first, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", first, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", first, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data)) if n < 4096 else _mask_fast(data, mask)
        self.writer.write(head + mask + masked)
        await self.writer.drain()

    async def recv(self) -> bytes:
        """The next data frame's payload (pings are answered, other control frames skipped)."""
        read = self.reader.readexactly
        while True:
            b1, b2 = await read(2)
            n = b2 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await read(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await read(8))
            data = await read(n) if n else b""
            opcode = b1 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("server closed the WebSocket")
            if opcode == 0x9:  # answer keep-alive pings, or the server drops us
                await self._send(0xA, data)
                continue
            if opcode in (0x1, 0x2):
                return data

    async def recv_head(self) -> _Head:
        return _decode_head(await self.recv())

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


def _mask_fast(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")
