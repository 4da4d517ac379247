"""An optional uvicorn WebSocket protocol that coalesces outgoing frames.

uvicorn's ``websockets-sansio`` protocol writes every frame to the socket at once: one system
call per message. A run streams three small messages per node, so the system calls dominate
(~5–8 µs each). This subclass queues the frames of one event-loop iteration and writes them
in one call at the end of it; order, back-pressure (``writable``) and the close handshake are
unchanged (a close or any other message first flushes what is pending).

Use it with ``uvicorn.Config(app, ws="comfytavern.engine.transport:CoalescingWebSocketProtocol")``.
It is what carries run events to the editor, so it lives beside the engine.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = ["CoalescingWebSocketProtocol"]


class CoalescingWebSocketProtocol(WebSocketsSansIOProtocol):
    _flush_pending = False

    def _flush(self) -> None:
        self._flush_pending = False
        output = self.conn.data_to_send()
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
