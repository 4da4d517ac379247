"""The ``/ws`` fanout: a run's events reach only its watchers, queue updates are coalesced.

Before, every socket was its own hub subscriber (every event of every run was offered to every
socket) and every queue change was a message to every socket: with 1000 idle sockets, 2000
small runs took ~6× longer.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from comfytavern.events import EventHub, HubEvent
from comfytavern_executions.ws_fanout import QUEUE_UPDATE, QUEUE_UPDATE_INTERVAL, Fanout

pytestmark = pytest.mark.anyio


class _Socket:
    def __init__(self) -> None:
        self.pushed: list[Any] = []
        self.offered: list[HubEvent] = []

    def _push(self, item: Any) -> None:
        self.pushed.append(item)

    def _offer(self, event: HubEvent) -> bool:
        self.offered.append(event)
        return False


def _queue(running: int) -> HubEvent:
    return HubEvent(QUEUE_UPDATE, {"runningExecutions": running, "pendingExecutions": 0})


async def test_run_events_reach_only_the_sockets_watching_the_run() -> None:
    hub = EventHub()
    fanout = Fanout(hub)
    sockets = [_Socket() for _ in range(1000)]
    for s in sockets:
        fanout.add(s)
    assert hub.subscriber_count == 1  # one subscriber whatever the number of sockets
    fanout.watch("p", sockets[7])
    for i in range(100):
        hub.publish(HubEvent("NODE_EXECUTING", {"promptId": "p", "nodeId": str(i)}, "p", "alice"))
    assert len(sockets[7].pushed) == 100
    assert all(not s.pushed and not s.offered for i, s in enumerate(sockets) if i != 7)
    fanout.unwatch("p", sockets[7])
    hub.publish(HubEvent("NODE_EXECUTING", {"promptId": "p", "nodeId": "x"}, "p", "alice"))
    assert len(sockets[7].pushed) == 100 and fanout.watchers == {}
    # Other run-less events still go to every socket (which checks owner and scope).
    hub.publish(HubEvent("NODES_RELOADED", {"success": True}))
    assert all(len(s.offered) == 1 for s in sockets)
    for s in sockets:
        fanout.remove(s)
    assert hub.subscriber_count == 0


async def test_queue_updates_are_coalesced_latest_state_wins() -> None:
    hub = EventHub()
    fanout = Fanout(hub)
    socket = _Socket()
    fanout.add(socket)
    async with anyio.create_task_group() as tg:
        tg.start_soon(fanout.run)
        await anyio.sleep(0.01)
        hub.publish(_queue(1))  # after a quiet period: delivered at once (next loop turn)
        with anyio.fail_after(2):
            while not socket.offered:
                await anyio.sleep(0.001)
        for running in range(2, 500):  # a burst of queue changes
            hub.publish(_queue(running))
        with anyio.fail_after(5):
            while socket.offered[-1].payload["runningExecutions"] != 499:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    counts = [e.payload["runningExecutions"] for e in socket.offered]
    assert counts[0] == 1 and counts[-1] == 499
    assert len(counts) <= 3  # 499 changes, at most one message per interval
    assert QUEUE_UPDATE_INTERVAL <= 0.5


async def test_without_the_coalescer_queue_updates_are_delivered_one_by_one() -> None:
    hub = EventHub()
    fanout = Fanout(hub)
    socket = _Socket()
    fanout.add(socket)
    for running in range(3):
        hub.publish(_queue(running))
    assert [e.payload["runningExecutions"] for e in socket.offered] == [0, 1, 2]


async def test_a_pending_update_is_delivered_when_the_coalescer_stops() -> None:
    hub = EventHub()
    fanout = Fanout(hub, interval=60)
    socket = _Socket()
    fanout.add(socket)
    async with anyio.create_task_group() as tg:
        tg.start_soon(fanout.run)
        await anyio.sleep(0.01)
        hub.publish(_queue(1))
        with anyio.fail_after(2):
            while not socket.offered:
                await anyio.sleep(0.001)
        hub.publish(_queue(2))  # waits for the interval
        await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert [e.payload["runningExecutions"] for e in socket.offered] == [1, 2]
