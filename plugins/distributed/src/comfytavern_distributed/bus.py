"""Run events and interrupts between instances over Redis pub/sub.

Outbound: every event of a run published on this process's hub (by the engine running it here, or
by the scheduler that queued it) is coalesced and published on ``<prefix>:events`` in batches.
Inbound: batches from other processes are republished into the local hub, so the WebSocket and the
observers of this instance see them exactly as local events. Events this bridge republishes are
never sent back (the hub subscription ignores them while they are being published).

Interrupts travel on ``<prefix>:cancel`` as plain run ids; every process receives them and the
one executing the run cancels it.

The final status event of a run executing here is held back (:meth:`EventBridge.hold`) until
the run's final record is stored and its shared state is final (:meth:`EventBridge.release`):
a client that reads the run on another instance the moment it sees ``complete`` gets the final
record, never ``running``.

Ended credentials (``kernel.revocations``) travel on ``<prefix>:revocations``, so a key revoked or
a logout on one instance closes the sockets opened with it on every instance (and the CLI, which
runs in its own process, reaches the servers too).

Pub/sub is at-most-once: a client that reconnects resyncs from the REST status, which is backed by
the shared state (Redis) and the shared run store.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskStatus
from redis.asyncio import Redis
from redis.exceptions import RedisError

from comfytavern import EventHub, HubEvent
from comfytavern.engine.encoding import safe_encoder
from comfytavern.revocation import Revocation
from comfytavern_distributed.coalesce import Coalescer
from comfytavern_distributed.keys import Keys

__all__ = ["BusMessage", "EventBridge", "RevocationMessage"]

log = logging.getLogger("comfytavern.distributed.bus")

#: Events buffered between the hub and the publisher; past this the bridge drops and logs.
OUTBOUND_BUFFER = 100_000
#: Run statuses after which a run emits nothing more.
FINAL_STATUSES = frozenset({"complete", "error", "interrupted"})


class BusMessage(msgspec.Struct, array_like=True):
    """One batch on the events channel: origin process id and ``[type, payload, prompt_id, owner_id]`` rows."""

    origin: str
    events: list[tuple[str, Any, str | None, str | None]]


class RevocationMessage(msgspec.Struct, array_like=True):
    """One ended credential on the revocations channel, with the id of the process that sent it."""

    origin: str
    revocation: Revocation


#: Node outputs inside events may hold any object: encode them like the engine does.
_encoder = safe_encoder
_decoder = msgspec.json.Decoder(BusMessage)
_revocation_decoder = msgspec.json.Decoder(RevocationMessage)

CancelHandler = Callable[[str], Awaitable[None] | None]
EventHandler = Callable[[HubEvent], None]
RevocationHandler = Callable[[Revocation, str], Awaitable[None]]


class EventBridge:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        hub: EventHub,
        instance_id: str,
        *,
        window: float,
        max_chars: int,
        on_cancel: CancelHandler | None = None,
        on_remote_event: EventHandler | None = None,
        receive_events: bool = True,
        on_revocation: RevocationHandler | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.hub = hub
        self.instance_id = instance_id
        self.coalescer = Coalescer(window, max_chars)
        self.on_cancel = on_cancel
        self.on_remote_event = on_remote_event
        #: A worker serves no clients: it needs interrupts, not other processes' events.
        self.receive_events = receive_events
        self.on_revocation = on_revocation
        #: Unique per process (``instance_id`` may be shared by a server and the CLI run with
        #: its configuration), so a process skips only its own revocation messages.
        self.process_id = f"{instance_id}:{uuid.uuid4().hex[:12]}"
        self._republishing = False
        #: Counters for tests and ``system_stats``.
        self.sent_events = 0
        self.received_events = 0
        #: Runs executing here whose final status event waits for :meth:`release`.
        self._holding: set[str] = set()
        #: Final status events held back, by run id.
        self._held: dict[str, HubEvent] = {}
        #: One publisher at a time, in arrival order, so a released final event never
        #: overtakes the run's earlier events that the forward loop is publishing.
        self._send_lock = anyio.Lock()

    # -- public ----------------------------------------------------------------------------
    async def run(
        self, *, stop: anyio.Event | None = None, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Forward and receive; ``started`` once both directions are live.

        Without ``stop`` it runs until cancelled. With ``stop`` it ignores outside cancellation
        (the engine's shutdown still publishes the final events of interrupted runs) and ends,
        after forwarding everything still pending, once ``stop`` is set.
        """
        with anyio.CancelScope(shield=stop is not None):
            async with anyio.create_task_group() as tg:
                await tg.start(self._receive)
                await tg.start(self._forward)
                task_status.started()
                if stop is not None:
                    await stop.wait()
                    tg.cancel_scope.cancel()

    async def request_cancel(self, run_id: str) -> None:
        """Ask every process to interrupt ``run_id`` (the one executing it does)."""
        await self.redis.publish(self.keys.cancel, run_id)

    async def publish_revocation(self, revocation: Revocation) -> None:
        """Tell every other process that a credential ended (it closes the sockets opened with it)."""
        try:
            await self.redis.publish(self.keys.revocations, _encoder.encode(RevocationMessage(self.process_id, revocation)))
        except (RedisError, OSError) as exc:
            log.warning("could not relay a revocation to Redis (other instances re-check at the next message): %s", exc)

    async def publish_now(self, events: Iterable[HubEvent], *, local: bool = True) -> None:
        """Publish events directly (not from this process's engine), e.g. a ``worker_lost`` status.

        With ``local`` they are also published on this process's hub, like remote events.
        """
        batch = list(events)
        if not batch:
            return
        if local:
            self._republish(batch)
        await self._send(batch)

    def hold(self, run_id: str) -> None:
        """Keep the final status event of ``run_id`` (executing here) off the bus until :meth:`release`."""
        self._holding.add(run_id)

    async def release(self, run_id: str) -> None:
        """The run's final record and shared state are written: publish its final event now (or,
        if the hub has not handed it to the bridge yet, as soon as it does)."""
        self._holding.discard(run_id)
        event = self._held.pop(run_id, None)
        if event is not None:
            await self._send([event])

    # -- outbound --------------------------------------------------------------------------
    def _accept(self, event: HubEvent) -> bool:
        return event.prompt_id is not None and not self._republishing

    def _add(self, event: HubEvent, now: float) -> list[HubEvent]:
        """What to publish now for ``event``: the coalescer's answer, minus a held final event
        (the run's earlier events still go now, ahead of it)."""
        out = self.coalescer.add(event, now)
        run_id = event.prompt_id
        if (
            run_id is not None
            and run_id in self._holding
            and event.type == "EXECUTION_STATUS_UPDATE"
            and isinstance(event.payload, dict)
            and event.payload.get("status") in FINAL_STATUSES
            and out
            and out[-1] is event  # a status event is never merged: it comes back last
        ):
            self._held[run_id] = out.pop()
        return out

    async def _forward(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        subscription = self.hub.subscribe(max_buffer=OUTBOUND_BUFFER, accept=self._accept)
        task_status.started()
        with subscription:
            try:
                while True:
                    deadline = self.coalescer.next_deadline()
                    timeout = math.inf if deadline is None else max(0.0, deadline - time.monotonic())
                    event: HubEvent | None = None
                    with anyio.move_on_after(timeout):
                        event = await subscription.receive()
                    now = time.monotonic()
                    ready = self.coalescer.due(now)
                    if event is not None:
                        ready += self._add(event, now)
                    while (extra := subscription.get_nowait()) is not None:
                        ready += self._add(extra, now)
                    if ready:
                        await self._send(ready)
            except anyio.EndOfStream:
                log.error("event bridge fell more than %d events behind; cross-instance events were dropped", OUTBOUND_BUFFER)
            finally:
                now = time.monotonic()
                rest: list[HubEvent] = []
                while (extra := subscription.get_nowait()) is not None:
                    rest += self.coalescer.add(extra, now)
                rest += self.coalescer.drain()
                # Stopping: nothing is left to wait for.
                rest += self._held.values()
                self._held.clear()
                self._holding.clear()
                if rest:
                    with anyio.move_on_after(2, shield=True):
                        await self._send(rest)

    async def _send(self, events: list[HubEvent]) -> None:
        message = BusMessage(self.instance_id, [(e.type, e.payload, e.prompt_id, e.owner_id) for e in events])
        data = _encoder.encode(message)
        async with self._send_lock:
            try:
                await self.redis.publish(self.keys.events, data)
                self.sent_events += len(events)
            except RedisError as exc:
                log.warning("could not publish %d run event(s) to Redis: %s", len(events), exc)

    # -- inbound ---------------------------------------------------------------------------
    async def _receive(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        delay = 0.2
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                channels = [self.keys.events, self.keys.cancel] if self.receive_events else [self.keys.cancel]
                if self.receive_events and self.on_revocation is not None:
                    channels.append(self.keys.revocations)
                await pubsub.subscribe(*channels)
                task_status.started()
                task_status = anyio.TASK_STATUS_IGNORED
                delay = 0.2
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None:
                        await self._dispatch(message)
            except (RedisError, OSError) as exc:
                log.warning("Redis pub/sub connection lost (%s); reconnecting in %.1f s", exc, delay)
            finally:
                with anyio.move_on_after(2, shield=True):
                    await pubsub.aclose()
            await anyio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _dispatch(self, message: dict[str, Any]) -> None:
        channel = message.get("channel")
        if isinstance(channel, bytes):
            channel = channel.decode()
        data = message.get("data")
        if channel == self.keys.cancel:
            run_id = data.decode() if isinstance(data, bytes) else str(data)
            await self._cancel(run_id)
            return
        if channel == self.keys.revocations:
            await self._revoked(data)
            return
        try:
            batch = _decoder.decode(data if isinstance(data, (bytes, str)) else b"")
        except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
            log.warning("ignored a malformed message on %s: %s", self.keys.events, exc)
            return
        if batch.origin == self.instance_id:
            return
        events = [HubEvent(t, p, r, o) for t, p, r, o in batch.events]
        self.received_events += len(events)
        self._republish(events)

    def _republish(self, events: list[HubEvent]) -> None:
        self._republishing = True
        try:
            for event in events:
                self.hub.publish(event)
        finally:
            self._republishing = False
        if self.on_remote_event is not None:
            for event in events:
                try:
                    self.on_remote_event(event)
                except Exception:  # noqa: BLE001 - a bad listener must not stop the bridge
                    log.exception("remote event listener failed")

    async def _revoked(self, data: Any) -> None:
        try:
            message = _revocation_decoder.decode(data if isinstance(data, (bytes, str)) else b"")
        except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
            log.warning("ignored a malformed message on %s: %s", self.keys.revocations, exc)
            return
        if message.origin == self.process_id or self.on_revocation is None:
            return
        try:
            await self.on_revocation(message.revocation, message.origin)
        except Exception:  # noqa: BLE001 - a bad listener must not stop the bridge
            log.exception("revocation from %s failed", message.origin)

    async def _cancel(self, run_id: str) -> None:
        if self.on_cancel is None:
            return
        try:
            result = self.on_cancel(run_id)
            if inspect.isawaitable(result):
                await result
        except Exception:  # noqa: BLE001
            log.exception("interrupt of run %s failed", run_id)
