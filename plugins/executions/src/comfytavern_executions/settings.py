"""``plugins.settings.executions`` in config.json."""

from __future__ import annotations

import msgspec

__all__ = ["ExecutionsSettings"]


class ExecutionsSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: Events buffered per WebSocket before the socket is closed (1013) as too slow.
    ws_max_queue: int = 100_000
    #: Longest ``wait`` accepted by ``POST /api/prompt`` and ``GET /api/prompt/{id}`` (seconds).
    wait_max_seconds: float = 300.0
    #: Seconds between keep-alive comments on an idle server-sent-events stream.
    sse_keepalive_seconds: float = 15.0
