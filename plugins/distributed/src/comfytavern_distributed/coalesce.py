"""Merging of LLM stream chunks before they cross the bus.

Publishing every token is the main load of a run on the bus; consecutive text chunks of the same
stream are merged into one event instead, for at most ``window`` seconds or ``max_chars``
characters. Order is kept where the editor can see it:

- within one stream (same run, same node or interface key), chunks stay in order;
- any other event of a run (``NODE_COMPLETE``, a non-text chunk, the final status) first flushes
  that run's pending chunks, so nothing is overtaken;
- the last chunk of a stream (``isLastChunk``) flushes at once.

Pure logic with the clock passed in, so it is tested without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from comfytavern import HubEvent

__all__ = ["MERGEABLE_TYPES", "Coalescer"]

#: Event types whose text chunks are merged.
MERGEABLE_TYPES = frozenset({"NODE_YIELD", "WORKFLOW_INTERFACE_YIELD"})

_encoder = msgspec.json.Encoder(order="sorted")


def _merge_key(event: HubEvent) -> tuple[Any, ...] | None:
    """Events with equal keys are chunks of one text stream; ``None`` = not mergeable."""
    if event.type not in MERGEABLE_TYPES or not isinstance(event.payload, dict):
        return None
    content = event.payload.get("yieldedContent")
    if isinstance(content, str):
        shape: Any = "str"
    elif (
        isinstance(content, dict)
        and content.get("type") == "text_chunk"
        and isinstance(content.get("content"), str)
    ):
        # Any extra chunk fields must match too (they are kept from the first chunk).
        shape = _encoder.encode({k: v for k, v in content.items() if k != "content"})
    else:
        return None
    rest = {k: v for k, v in event.payload.items() if k not in ("yieldedContent", "isLastChunk")}
    return (event.type, event.prompt_id, event.owner_id, shape, _encoder.encode(rest))


def _text(event: HubEvent) -> str:
    content = event.payload["yieldedContent"]
    return content if isinstance(content, str) else content["content"]


@dataclass
class _Pending:
    first: HubEvent
    parts: list[str]
    chars: int
    last: bool

    def build(self) -> HubEvent:
        if len(self.parts) == 1:
            return self.first
        text = "".join(self.parts)
        payload = dict(self.first.payload)
        content = payload["yieldedContent"]
        payload["yieldedContent"] = text if isinstance(content, str) else {**content, "content": text}
        if "isLastChunk" in payload or self.last:
            payload["isLastChunk"] = self.last
        return HubEvent(self.first.type, payload, self.first.prompt_id, self.first.owner_id)


@dataclass
class _RunBuffer:
    deadline: float
    entries: dict[tuple[Any, ...], _Pending] = field(default_factory=dict)
    chars: int = 0


class Coalescer:
    """Feed events with :meth:`add`; publish what it returns, then :meth:`due` at :meth:`next_deadline`."""

    def __init__(self, window: float, max_chars: int) -> None:
        self.window = window
        self.max_chars = max_chars
        self._runs: dict[str | None, _RunBuffer] = {}
        #: Events merged away (for tests and statistics).
        self.merged = 0

    def add(self, event: HubEvent, now: float) -> list[HubEvent]:
        """The events to publish now, in order (possibly none while chunks are being merged)."""
        key = _merge_key(event) if self.window > 0 else None
        run = event.prompt_id
        if key is None:
            return [*self._flush(run), event]
        buffer = self._runs.get(run)
        if buffer is None:
            buffer = self._runs[run] = _RunBuffer(deadline=now + self.window)
        text = _text(event)
        last = bool(event.payload.get("isLastChunk"))
        pending = buffer.entries.get(key)
        if pending is None:
            buffer.entries[key] = _Pending(event, [text], len(text), last)
        else:
            pending.parts.append(text)
            pending.chars += len(text)
            pending.last = pending.last or last
            self.merged += 1
        buffer.chars += len(text)
        if last or buffer.chars >= self.max_chars:
            return self._flush(run)
        return []

    def due(self, now: float) -> list[HubEvent]:
        """Events whose merge window has closed."""
        out: list[HubEvent] = []
        for run in [r for r, b in self._runs.items() if b.deadline <= now]:
            out += self._flush(run)
        return out

    def next_deadline(self) -> float | None:
        return min((b.deadline for b in self._runs.values()), default=None)

    def drain(self) -> list[HubEvent]:
        """Everything pending (at shutdown)."""
        out: list[HubEvent] = []
        for run in list(self._runs):
            out += self._flush(run)
        return out

    def _flush(self, run: str | None) -> list[HubEvent]:
        buffer = self._runs.pop(run, None)
        if buffer is None:
            return []
        return [pending.build() for pending in buffer.entries.values()]
