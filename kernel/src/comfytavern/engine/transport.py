"""An optional uvicorn WebSocket protocol that coalesces outgoing frames.

uvicorn's ``websockets-sansio`` protocol writes every frame to the socket at once: one system
call per message. A run streams three small messages per node, so the system calls dominate
(~5–8 µs each). This subclass queues the frames of one event-loop iteration and writes them
in one call at the end of it; order, back-pressure (``writable``) and the close handshake are
unchanged (a close or any other message first flushes what is pending).

Use it with ``uvicorn.Config(app, ws="comfytavern.engine.transport:CoalescingWebSocketProtocol")``.
It is what carries run events to the editor, so it lives beside the engine.

It also offers the app a direct path for data frames, the ASGI scope extension
:data:`SEND_TEXT_FRAMES`: ``try_send(frames: Sequence[bytes]) -> bool`` queues each frame of
already encoded UTF-8 JSON as one text message and returns ``True``, without a coroutine, a
message dict, a decode and re-encode, or the middleware's ``send`` wrappers (none of which looks
at data frames); it returns ``False`` (nothing sent) whenever the general path must decide
(socket not writable, closing, closed), and the caller then sends through ASGI as usual. A run sends three frames per
node, so this is the per-node cost of a watched run: the frame header is written here (a
server's frames are unmasked: two to ten bytes before the payload) instead of by the
``websockets`` frame objects, only for complete, uncompressed text messages on an open
connection (no extension negotiated), and in order with everything the protocol queues.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

__all__ = ["SEND_TEXT_FRAMES", "CoalescingWebSocketProtocol"]

#: Scope extension key of the direct data-frame path (see the module docstring).
SEND_TEXT_FRAMES = "comfytavern.websocket.try_send_text_frames"

#: Headers of final, unmasked text frames with payloads of 0..125 bytes (RFC 6455, 5.2).
_SHORT_HEADERS = tuple(bytes((0x81, n)) for n in range(126))


def _text_header(n: int) -> bytes:
    if n < 126:
        return _SHORT_HEADERS[n]
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big")
    return b"\x81\x7f" + n.to_bytes(8, "big")


class CoalescingWebSocketProtocol(WebSocketsSansIOProtocol):
    _flush_pending = False
    #: Direct frames (header, payload, ...) and protocol output taken before them, in order.
    _out: list[bytes] | None = None

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None:
            scope["extensions"][SEND_TEXT_FRAMES] = self.try_send_text_frames

    def try_send_text_frames(self, frames: Sequence[bytes]) -> bool:
        """Queue each of ``frames`` as one text message, all or none (``False``: none was sent).

        All or none holds: whether the socket is writable only changes when the buffer is
        written, which happens after this returns.
        """
        conn = self.conn
        if (
            not self.handshake_complete
            or self.close_sent
            or self.initial_response is not None
            or self.disconnected
            or not self.writable.is_set()
            or conn.state is not State.OPEN
            or conn.extensions
            or conn.expect_continuation_frame
        ):
            return False
        out = self._out
        if out is None:
            out = self._out = []
        if conn.writes:  # queued by the protocol before these frames: written before them
            out.extend(conn.data_to_send())
        append = out.append
        for frame in frames:
            n = len(frame)
            append(_SHORT_HEADERS[n] if n < 126 else _text_header(n))
            append(frame)
        if not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self._flush)
        return True

    def _flush(self) -> None:
        self._flush_pending = False
        output = self.conn.data_to_send()
        out = self._out
        if out:
            self._out = []
            if output:
                out.extend(output)
            output = out
        if output and not self.transport.is_closing():
            self.transport.write(b"".join(output))

    async def send(self, message: Any) -> None:
        if (
            message.get("type") == "websocket.send"
            and self.handshake_complete
            and not self.close_sent
            and self.initial_response is None
        ):
            if not self.writable.is_set():  # no coroutine per frame while the socket keeps up
                await self.writable.wait()
            if self.disconnected:
                return await super().send(message)  # raises ClientDisconnected
            text = message.get("text")
            data = message.get("bytes")
            try:
                if data is not None:
                    self.conn.send_binary(data)
                elif text is not None:
                    self.conn.send_text(text.encode())
            except Exception:  # noqa: BLE001 - let the base class report the state error
                self._flush()
                return await super().send(message)
            if not self._flush_pending:
                self._flush_pending = True
                self.loop.call_soon(self._flush)
            return None
        if self._flush_pending:
            self._flush()
        return await super().send(message)
