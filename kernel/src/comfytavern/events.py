"""The event hub: one publisher side (engine, scheduler, registry), many bounded subscribers.

Publishing never blocks and never awaits: each subscriber has its own bounded buffer, so a slow
WebSocket cannot slow the engine or other clients. A subscriber whose buffer overflows is marked
``overflowed`` and receives no further events; its owner decides what to do (the WebSocket closes
and the client resyncs from the REST status).

Publishing never raises either: ``publish`` is called from inside the engine (a node's events) and
the scheduler (a run's status), so a subscriber whose ``accept`` raises would otherwise fail that
node or the whole run. Its failure is logged (rate-limited), counted in :attr:`EventHub.failures`
and the event goes on to the other subscribers; the subscriber stays subscribed.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
import msgspec

__all__ = ["EventHub", "HubEvent", "Subscription"]

log = logging.getLogger("comfytavern.events")


class HubEvent(msgspec.Struct):
    """One event. ``type``/``payload`` are exactly the WebSocket message. Treat it as immutable.
    A Struct, not a dataclass: its constructor runs in C (about half the cost), and a run
    publishes three events per node.

    ``owner_id`` is the user the event belongs to (``None`` = broadcast to everyone);
    ``prompt_id`` ties it to a run. ``frame`` is the message already encoded as JSON, when the
    publisher encoded it once for everybody (the scheduler does for run events: it keeps the
    frames for replay, and every socket sends the same bytes instead of encoding again).

    ``node_timings`` is set on the final ``EXECUTION_STATUS_UPDATE`` of a run the scheduler
    executed (the run events with a ``frame``): called, it yields ``(node type, status, seconds)``
    for every node that ran, so observers need not time nodes from their events.
    """

    type: str
    payload: Any
    prompt_id: str | None = None
    owner_id: str | None = None
    frame: bytes | None = None
    node_timings: Callable[[], Iterable[tuple[str, str, float]]] | None = None

    def message(self) -> dict[str, Any]:
        return {"type": self.type, "payload": self.payload}

    def encode(self) -> bytes:
        frame = self.frame
        if frame is not None:
            return frame
        return _encoder.encode({"type": self.type, "payload": self.payload})


_encoder = msgspec.json.Encoder()


@dataclass(eq=False)
class Subscription:
    """A bounded, filtered view of the hub. Iterate it with ``async for``."""

    hub: EventHub
    max_buffer: int
    accept: Callable[[HubEvent], bool] | None = None
    _buffer: collections.deque[HubEvent] = field(default_factory=collections.deque)
    _wakeup: anyio.Event = field(default_factory=anyio.Event)
    overflowed: bool = False
    closed: bool = False
    #: How many events this subscriber failed on (its ``accept`` raised).
    failures: int = 0
    #: Only events of these types are offered (checked by the hub, before ``accept``).
    types: frozenset[str] | None = None
    #: Of these types, only events without a ``frame`` are offered: the scheduler's own runs
    #: encode their events, so this skips them (without a call) and keeps relayed or synthetic ones.
    unframed_types: frozenset[str] = frozenset()

    def _offer(self, event: HubEvent) -> None:
        if self.closed or self.overflowed:
            return
        if self.accept is not None and not self.accept(event):
            return
        if len(self._buffer) >= self.max_buffer:
            self.overflowed = True
            self._buffer.clear()
        else:
            self._buffer.append(event)
        self._wakeup.set()

    def pending(self) -> int:
        return len(self._buffer)

    def get_nowait(self) -> HubEvent | None:
        return self._buffer.popleft() if self._buffer else None

    async def receive(self) -> HubEvent:
        """Next event; raises ``anyio.EndOfStream`` once closed or overflowed."""
        while True:
            if self._buffer:
                return self._buffer.popleft()
            if self.closed or self.overflowed:
                raise anyio.EndOfStream
            self._wakeup = anyio.Event()
            await self._wakeup.wait()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> HubEvent:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    def close(self) -> None:
        self.closed = True
        self.hub._subscribers.discard(self)
        self.hub._snapshot = None
        self._wakeup.set()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventHub:
    """Fan-out of :class:`HubEvent` to subscribers. Safe to call ``publish`` from the event loop only."""

    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()
        #: ``tuple(_subscribers)``, rebuilt only when they change (not on every publish).
        self._snapshot: tuple[Subscription, ...] | None = None
        #: Failures of the hub's consumers since start, by name: ``subscriber:<accept callable>``
        #: for subscribers, ``observer:<plugin>`` for ``on_execution_event`` observers.
        self.failures: collections.Counter[str] = collections.Counter()

    def publish(self, event: HubEvent) -> None:
        """Offer ``event`` to every subscriber; never raises (see the module docstring)."""
        subscribers = self._snapshot
        if subscribers is None:
            subscribers = self._snapshot = tuple(self._subscribers)
        framed = event.frame is not None
        for sub in subscribers:
            types = sub.types
            if types is not None and event.type not in types:
                continue  # no call at all for the events a subscriber never wants
            if framed and event.type in sub.unframed_types:
                continue
            try:
                sub._offer(event)
            except Exception as exc:  # noqa: BLE001 - one subscriber must not break the publisher
                self._subscriber_failed(sub, event, exc)

    def _subscriber_failed(self, sub: Subscription, event: HubEvent, exc: Exception) -> None:
        sub.failures += 1
        name = "subscriber:" + getattr(sub.accept, "__qualname__", type(sub.accept).__name__)
        self.record_failure(name)
        # Powers of two only: a subscriber that fails on every event must not flood the log.
        if sub.failures & (sub.failures - 1) == 0:
            log.error(
                "event hub subscriber %s failed on %s (%d failure(s) so far); the event went on to the others",
                name, event.type, sub.failures, exc_info=exc,
            )

    def record_failure(self, name: str) -> int:
        """Count one failure of a consumer of this hub (subscribers, observers); returns its count."""
        self.failures[name] += 1
        return self.failures[name]

    def emit(
        self,
        type: str,
        payload: Any,
        *,
        prompt_id: str | None = None,
        owner_id: str | None = None,
    ) -> HubEvent:
        event = HubEvent(type, payload, prompt_id, owner_id)
        self.publish(event)
        return event

    def subscribe(
        self,
        *,
        max_buffer: int = 10_000,
        accept: Callable[[HubEvent], bool] | None = None,
        types: Collection[str] | None = None,
        unframed_types: Collection[str] = (),
    ) -> Subscription:
        """A new subscription; ``types`` limits it to those event types, ``unframed_types`` to the
        events of those types that carry no ``frame``; ``accept`` filters further."""
        sub = Subscription(
            self, max_buffer, accept, types=frozenset(types) if types is not None else None,
            unframed_types=frozenset(unframed_types),
        )
        self._subscribers.add(sub)
        self._snapshot = None
        return sub

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
