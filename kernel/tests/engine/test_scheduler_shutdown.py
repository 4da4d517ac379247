"""Shutdown races and a hung history store: no run is accepted and then forgotten, and no store
can keep the server from stopping."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from comfytavern.auth import Principal
from comfytavern.engine import PreparedGraph, Scheduler, SchedulerClosed, convert_payload
from comfytavern.engine.payload import ExecutionPayload
from comfytavern.engine.testnodes import NODES
from comfytavern.events import EventHub, HubEvent
from comfytavern.nodes.registry import NodeRegistry, RegistryHolder
from comfytavern.storage.runs import MemoryRunStore

pytestmark = pytest.mark.anyio

ALICE = Principal(id="alice", username="alice")


class GatedScheduler(Scheduler):
    """``prepare`` waits at a gate, as it does for real while it reads node groups from storage or
    prepares a big payload in a thread: the window in which a shutdown can begin."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.entered = anyio.Event()
        self.gate = anyio.Event()
        self.gated = False

    async def prepare(self, payload: ExecutionPayload, user: Principal) -> PreparedGraph:
        if self.gated:
            self.entered.set()
            await self.gate.wait()
        return await super().prepare(payload, user)


def make(**kwargs: Any) -> tuple[GatedScheduler, MemoryRunStore, list[HubEvent]]:
    hub = EventHub()
    seen: list[HubEvent] = []
    hub.subscribe(max_buffer=1, accept=lambda e: seen.append(e) or False)
    store = MemoryRunStore()
    registry = RegistryHolder(NodeRegistry.build([("t", "t", NODES)]))
    return GatedScheduler(hub=hub, registry=registry, store=store, **kwargs), store, seen


def sleeper(seconds: float) -> Any:
    return convert_payload({"nodes": [{"id": "s", "fullType": "t:Sleep", "inputs": {"seconds": seconds}}]})


async def _submit(scheduler: Scheduler, results: list[Any]) -> None:
    try:
        results.append(await scheduler.submit(sleeper(0), ALICE))
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        results.append(exc)


@pytest.mark.parametrize("max_concurrent", [1, 5])
async def test_a_graceful_shutdown_during_prepare_refuses_the_run(max_concurrent: int) -> None:
    scheduler, store, seen = make(max_concurrent=max_concurrent, shutdown_timeout=2)
    results: list[Any] = []
    async with scheduler.running():
        busy = await scheduler.submit(sleeper(30), ALICE)
        scheduler.gated = True
        async with anyio.create_task_group() as tg:
            tg.start_soon(_submit, scheduler, results)
            with anyio.fail_after(5):
                await scheduler.entered.wait()
                cut = await scheduler.shutdown(mode="interrupt", timeout=2, reason="restart")
            scheduler.gate.set()
        assert cut == [busy]
        assert len(results) == 1 and isinstance(results[0], SchedulerClosed), results
        assert scheduler.stats()["pendingExecutions"] == 0 and scheduler.stats()["runningExecutions"] == 0
    # Nothing but the interrupted run was announced or recorded.
    assert {e.prompt_id for e in seen if e.prompt_id is not None} == {busy}
    assert await store.count(owner_id=None) == 1


async def test_a_server_stop_during_prepare_refuses_the_run() -> None:
    scheduler, store, seen = make(shutdown_timeout=2)
    results: list[Any] = []
    async with anyio.create_task_group() as tg:
        async with scheduler.running():
            scheduler.gated = True
            tg.start_soon(_submit, scheduler, results)
            with anyio.fail_after(5):
                await scheduler.entered.wait()
        # The scheduler has stopped (its task group is gone); the submission resumes now.
        scheduler.gate.set()
    assert len(results) == 1 and isinstance(results[0], SchedulerClosed), results
    assert not [e for e in seen if e.prompt_id is not None]
    assert await store.count(owner_id=None) == 0
