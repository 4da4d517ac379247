"""Broadcast of a streaming node's chunks: every consumer gets every chunk.

Each consumer (one per stream edge) has its own queue. Back-pressure policy:

- a consumer that has started reading is bounded by ``max_buffer`` chunks: the producer waits for
  it (so a fast producer never runs away from its readers) but at most ``stall_timeout`` seconds;
  a consumer that stays full for that long is detached and its next read raises
  :class:`StreamStalled` (its node then fails on its own; the other consumers continue);
- a consumer that has not started reading yet (it may be waiting for another input that depends
  on the producer finishing) never blocks the producer: its chunks are buffered up to
  ``hard_cap``, beyond which it is detached with :class:`StreamStalled` too;
- a consumer whose node finished without reading everything is detached silently.

So no consumer can block the others forever, and none loses a chunk while it keeps up.
"""

from __future__ import annotations

import collections
from typing import Any

import anyio

__all__ = ["ChunkQueue", "StreamStalled", "Tee", "UpstreamFailed"]


class StreamStalled(RuntimeError):
    """This consumer fell too far behind its producer and was detached."""


class UpstreamFailed(RuntimeError):
    """The producing node failed; the stream ends with its error."""


class ChunkQueue:
    """One consumer's queue, read with ``async for``."""

    __slots__ = ("buffer", "max_buffer", "hard_cap", "started", "detached", "closed", "error", "_data", "_space")

    def __init__(self, max_buffer: int, hard_cap: int) -> None:
        self.buffer: collections.deque[Any] = collections.deque()
        self.max_buffer = max_buffer
        self.hard_cap = hard_cap
        self.started = False
        self.detached = False
        self.closed = False
        self.error: BaseException | None = None
        self._data: anyio.Event | None = None
        self._space: anyio.Event | None = None

    # -- consumer side -----------------------------------------------------------------------
    def __aiter__(self) -> ChunkQueue:
        self.started = True
        return self

    async def __anext__(self) -> Any:
        self.started = True
        while True:
            if self.buffer:
                item = self.buffer.popleft()
                if self._space is not None:
                    self._space.set()
                    self._space = None
                return item
            if self.error is not None:
                raise self.error
            if self.closed or self.detached:
                raise StopAsyncIteration
            self._data = anyio.Event()
            await self._data.wait()

    async def drain(self) -> list[Any]:
        """Every remaining chunk as a list (for sync consumers)."""
        return [item async for item in self]

    # -- producer side -----------------------------------------------------------------------
    def _wake(self) -> None:
        if self._data is not None:
            self._data.set()
            self._data = None

    def full(self) -> bool:
        return len(self.buffer) >= (self.max_buffer if self.started else self.hard_cap)

    async def wait_for_space(self) -> None:
        while len(self.buffer) >= self.max_buffer and not self.detached:
            self._space = anyio.Event()
            await self._space.wait()

    def put(self, item: Any) -> None:
        self.buffer.append(item)
        self._wake()

    def close(self, error: BaseException | None = None) -> None:
        if error is not None and self.error is None:
            self.error = error
        self.closed = True
        self._wake()
        if self._space is not None:
            self._space.set()

    def detach(self, error: BaseException | None = None) -> None:
        """Stop delivering to this consumer (it finished, or it stalled when ``error`` is set)."""
        self.detached = True
        self.buffer.clear()
        if error is not None and self.error is None:
            self.error = error
        self._wake()
        if self._space is not None:
            self._space.set()
            self._space = None


class Tee:
    """Fan-out of one producer to many :class:`ChunkQueue` consumers (see the module policy)."""

    __slots__ = ("queues", "stall_timeout")

    def __init__(self, queues: list[ChunkQueue], stall_timeout: float) -> None:
        self.queues = queues
        self.stall_timeout = stall_timeout

    async def send(self, item: Any) -> None:
        for q in self.queues:
            if q.detached:
                continue
            if q.full():
                if not q.started:
                    q.detach(StreamStalled(f"stream consumer buffered {q.hard_cap} chunks without reading; detached"))
                    continue
                with anyio.move_on_after(self.stall_timeout):
                    await q.wait_for_space()
                if q.detached:
                    continue
                if len(q.buffer) >= q.max_buffer:
                    q.detach(
                        StreamStalled(
                            f"stream consumer did not read for {self.stall_timeout:g} s with "
                            f"{q.max_buffer} chunks waiting; detached"
                        )
                    )
                    continue
            q.put(item)

    def close(self, error: BaseException | None = None) -> None:
        for q in self.queues:
            q.close(error)
