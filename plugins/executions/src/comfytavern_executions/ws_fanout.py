"""One event-hub subscriber for all ``/ws`` sockets of a kernel: run events go only to the
sockets watching that run, and ``SYSTEM_QUEUE_UPDATE`` is coalesced.

With one hub subscriber per socket, every event of every run was offered to every socket (1000
idle sockets made each node of each run cost 3000 calls), and every queue change was a message
to every socket. Here a run's events are looked up by ``promptId`` in one index, and queue
updates are sent to each socket at most once per ``QUEUE_UPDATE_INTERVAL`` with the latest
counts (the first one after a quiet period at once, after the event that caused it).
"""

from __future__ import annotations

import weakref
from typing import Any, Protocol

import anyio

from comfytavern.engine.retained import encode_message
from comfytavern.events import EventHub, HubEvent, Subscription

__all__ = ["QUEUE_UPDATE", "QUEUE_UPDATE_INTERVAL", "Fanout", "fanout_for"]

QUEUE_UPDATE = "SYSTEM_QUEUE_UPDATE"
#: Shortest time between two ``SYSTEM_QUEUE_UPDATE`` messages to one socket (seconds).
QUEUE_UPDATE_INTERVAL = 0.25


class _Socket(Protocol):
    def _push(self, item: HubEvent | str) -> None: ...

    def _offer(self, event: HubEvent) -> bool: ...


class Fanout:
    """The sockets of one kernel, the runs each watches, and the queue-update coalescer."""

    def __init__(self, hub: EventHub, interval: float = QUEUE_UPDATE_INTERVAL) -> None:
        self.hub = hub
        self.interval = interval
        self.sockets: set[_Socket] = set()
        self.watchers: dict[str, set[_Socket]] = {}
        self._subscription: Subscription | None = None
        self._queue_latest: HubEvent | None = None
        self._last_sent = float("-inf")
        self._wakeup: anyio.Event | None = None
        self._flushing = False

    # -- membership -------------------------------------------------------------------------
    def add(self, socket: _Socket) -> None:
        self.sockets.add(socket)
        if self._subscription is None:
            self._subscription = self.hub.subscribe(max_buffer=1, accept=self._accept)

    def remove(self, socket: _Socket) -> None:
        self.sockets.discard(socket)
        if not self.sockets and self._subscription is not None:
            self._subscription.close()
            self._subscription = None

    def watch(self, prompt_id: str, socket: _Socket) -> None:
        self.watchers.setdefault(prompt_id, set()).add(socket)

    def unwatch(self, prompt_id: str, socket: _Socket) -> None:
        found = self.watchers.get(prompt_id)
        if found is not None:
            found.discard(socket)
            if not found:
                del self.watchers[prompt_id]

    # -- delivery ---------------------------------------------------------------------------
    def _accept(self, event: HubEvent) -> bool:
        prompt_id = event.prompt_id
        if prompt_id is not None:
            watchers = self.watchers.get(prompt_id)
            if watchers:
                for socket in watchers:  # ``_push`` only queues: it never changes this index
                    socket._push(event)
        elif event.type == QUEUE_UPDATE and self._flushing:
            self._queue_latest = event  # latest state wins
            if self._wakeup is not None:
                self._wakeup.set()
        else:
            for socket in tuple(self.sockets):
                socket._offer(event)
        return False  # nothing is kept in the subscription's own buffer

    async def run(self) -> None:
        """Send coalesced queue updates until cancelled (the plugin's lifespan runs it; without
        it, queue updates are delivered one by one)."""
        self._flushing = True
        try:
            while True:
                if self._queue_latest is None:
                    self._wakeup = anyio.Event()
                    await self._wakeup.wait()
                    self._wakeup = None
                    await anyio.sleep(0)  # after the events of the same moment (a final status)
                    continue
                delay = self._last_sent + self.interval - anyio.current_time()
                if delay > 0:
                    await anyio.sleep(delay)
                event, self._queue_latest = self._queue_latest, None
                if event is None:
                    continue
                self._last_sent = anyio.current_time()
                if event.frame is None:  # encoded once for every socket
                    event = HubEvent(event.type, event.payload, None, event.owner_id, encode_message(event.type, event.payload))
                for socket in tuple(self.sockets):
                    socket._offer(event)
        finally:
            self._flushing = False
            self._wakeup = None
            pending, self._queue_latest = self._queue_latest, None
            if pending is not None:
                for socket in tuple(self.sockets):
                    socket._offer(pending)


_by_kernel: weakref.WeakKeyDictionary[Any, Fanout] = weakref.WeakKeyDictionary()


def fanout_for(kernel: Any) -> Fanout:
    """The kernel's one :class:`Fanout` (created on first use)."""
    found = _by_kernel.get(kernel)
    if found is None:
        found = _by_kernel[kernel] = Fanout(kernel.hub)
    return found
