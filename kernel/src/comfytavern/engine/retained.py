"""What the scheduler keeps in memory about runs, bounded in bytes and kept as encoded JSON.

Two kinds of data outlive the moment they are produced:

- the event log of an active run, replayed to a late watcher (``SUBSCRIBE_PROMPT``, SSE);
- the records of recently finished runs, answered before the history writer has stored them.

Both used to be kept as Python objects: one dict tree per event and per node status. A busy
server then held hundreds of thousands of small containers that the cyclic GC traverses on every
full collection (long event-loop stalls), and memory grew with every run up to a count limit.
Here each item is one ``bytes`` object (the JSON the client receives), which the GC does not
track, and each container is bounded by the bytes it holds, so memory has a ceiling whatever the
size of the runs.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

import msgspec

from comfytavern.engine.encoding import safe_encoder
from comfytavern.events import HubEvent
from comfytavern.storage.runs import RunRecord

__all__ = ["REPLAY_TRUNCATED", "Message", "RecentRuns", "ReplayLog", "encode_message"]

#: The event a late watcher gets first when the start of a run's replay was dropped.
REPLAY_TRUNCATED = "REPLAY_TRUNCATED"


class Message(msgspec.Struct, gc=False):
    """``{"type", "payload"}``: the WebSocket message of one event (not GC-tracked)."""

    type: str
    payload: Any


_message_decoder = msgspec.json.Decoder(Message)
_record_decoder = msgspec.json.Decoder(RunRecord)


def encode_message(type_: str, payload: Any) -> bytes:
    """The event's message as JSON, with the fallback for values JSON cannot hold."""
    return safe_encoder.encode(Message(type_, payload))


class ReplayLog:
    """The encoded events of one active run, the oldest dropped once ``max_bytes`` is exceeded
    (the newest event is always kept)."""

    __slots__ = ("dropped", "frames", "max_bytes", "size")

    def __init__(self, max_bytes: int) -> None:
        self.frames: deque[bytes] = deque()
        self.size = 0
        self.max_bytes = max_bytes
        #: Events dropped from the start so far.
        self.dropped = 0

    def append(self, frame: bytes) -> None:
        frames = self.frames
        frames.append(frame)
        self.size += len(frame)
        if self.size > self.max_bytes:
            while self.size > self.max_bytes and len(frames) > 1:
                self.size -= len(frames.popleft())
                self.dropped += 1

    def __len__(self) -> int:
        return len(self.frames)

    def events(self, prompt_id: str, owner_id: str | None) -> list[HubEvent]:
        """The log as events (decoded again; ``frame`` keeps the bytes), after a
        ``REPLAY_TRUNCATED`` notice when the start was dropped."""
        out: list[HubEvent] = []
        if self.dropped:
            payload = {"promptId": prompt_id, "droppedEvents": self.dropped}
            out.append(HubEvent(REPLAY_TRUNCATED, payload, prompt_id, owner_id, encode_message(REPLAY_TRUNCATED, payload)))
        decode = _message_decoder.decode
        for frame in self.frames:
            message = decode(frame)
            out.append(HubEvent(message.type, message.payload, prompt_id, owner_id, frame))
        return out


class RecentRuns:
    """Records of recently finished (or rejected) runs, newest last, as encoded JSON, bounded by
    ``max_bytes`` (the newest record is always kept) and by ``max_count``."""

    __slots__ = ("_items", "max_bytes", "max_count", "size")

    def __init__(self, max_bytes: int, max_count: int) -> None:
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self.size = 0
        self.max_bytes = max_bytes
        self.max_count = max_count

    def put(self, record: RunRecord) -> None:
        data = safe_encoder.encode(record)
        items = self._items
        old = items.pop(record.prompt_id, None)
        if old is not None:
            self.size -= len(old)
        items[record.prompt_id] = data
        self.size += len(data)
        while len(items) > 1 and (self.size > self.max_bytes or len(items) > self.max_count):
            _, dropped = items.popitem(last=False)
            self.size -= len(dropped)

    def get(self, prompt_id: str) -> RunRecord | None:
        data = self._items.get(prompt_id)
        return None if data is None else _record_decoder.decode(data)

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self._items

    def __len__(self) -> int:
        return len(self._items)
