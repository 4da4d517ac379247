"""Shutdown races and a hung history store: no run is accepted and then forgotten, and no store
can keep the server from stopping."""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from comfytavern.auth import Principal
from comfytavern.config import ExecutionConfig
from comfytavern.engine import PreparedGraph, Scheduler, SchedulerClosed, convert_payload
from comfytavern.engine.payload import ExecutionPayload
from comfytavern.events import EventHub, HubEvent
from comfytavern.nodes.registry import NodeRegistry, RegistryHolder
from comfytavern.storage.runs import MemoryRunStore, RunRecord
from comfytavern_testnodes import NODES

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


class HangingStore(MemoryRunStore):
    """A run store whose ``save`` never returns while ``hang`` is set (a dead database connection)."""

    def __init__(self) -> None:
        super().__init__()
        self.hang = False
        self.hung: list[str] = []

    async def save(self, record: RunRecord) -> None:
        if self.hang:
            self.hung.append(record.prompt_id)
            await anyio.sleep_forever()
        await super().save(record)


def finishes(seconds: float, body: Callable[[], Awaitable[None]]) -> bool:
    """Whether ``body`` returns within ``seconds`` (a hang guard, generous on purpose).

    It runs in its own event loop in a daemon thread because the wait it guards is shielded:
    nothing inside the loop could cut it short, so before the fix the test would hang too."""
    done = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            anyio.run(body)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)
        done.set()

    threading.Thread(target=target, daemon=True).start()
    finished = done.wait(seconds)
    if errors:
        raise errors[0]
    return finished


def _hung_shutdown(store: HangingStore, results: list[str], **kwargs: Any) -> Callable[[], Awaitable[None]]:
    async def body() -> None:
        hub = EventHub()
        registry = RegistryHolder(NodeRegistry.build([("t", "t", NODES)]))
        scheduler = Scheduler(hub=hub, registry=registry, store=store, **kwargs)
        async with scheduler.running():
            prompt_id = await scheduler.submit(sleeper(0.2), ALICE)
            await scheduler.flush()
            store.hang = True  # the database goes away while the run is running
            await scheduler.wait(prompt_id, ALICE, 10)
            results.append(prompt_id)

    return body


async def test_a_hung_history_store_cannot_hold_the_shutdown(caplog: pytest.LogCaptureFixture) -> None:
    store = HangingStore()
    results: list[str] = []
    with caplog.at_level(logging.ERROR, logger="comfytavern.scheduler"):
        assert finishes(60, _hung_shutdown(store, results, shutdown_timeout=0.5, history_write_timeout=0.5))
    (prompt_id,) = results
    assert store.hung == [prompt_id]
    # What was not written is said, with the run's id and status.
    assert f"{prompt_id} (complete)" in caplog.text


@pytest.mark.fault
async def test_a_hung_history_store_cannot_hold_the_shutdown_with_the_default_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    defaults = ExecutionConfig()
    assert defaults.history_write_timeout_seconds == 10 and defaults.shutdown_timeout_seconds == 10
    store = HangingStore()
    results: list[str] = []
    with caplog.at_level(logging.ERROR, logger="comfytavern.scheduler"):
        assert finishes(
            120,
            _hung_shutdown(
                store, results,
                shutdown_timeout=defaults.shutdown_timeout_seconds,
                history_write_timeout=defaults.history_write_timeout_seconds,
            ),
        )
    (prompt_id,) = results
    assert f"{prompt_id} (complete)" in caplog.text


async def test_a_store_that_hangs_once_does_not_stop_the_history(caplog: pytest.LogCaptureFixture) -> None:
    store = HangingStore()
    hub = EventHub()
    registry = RegistryHolder(NodeRegistry.build([("t", "t", NODES)]))
    scheduler = Scheduler(hub=hub, registry=registry, store=store, history_write_timeout=0.3)
    with caplog.at_level(logging.ERROR, logger="comfytavern.scheduler"):
        async with scheduler.running():
            first = await scheduler.submit(sleeper(0.1), ALICE)
            await scheduler.flush()
            store.hang = True
            await scheduler.wait(first, ALICE, 10)
            with anyio.fail_after(10):
                while not store.hung:
                    await anyio.sleep(0.01)
            store.hang = False
            second = await scheduler.submit(sleeper(0), ALICE)
            await scheduler.wait(second, ALICE, 10)
            with anyio.fail_after(10):
                await scheduler.flush()
            stored = await store.get(second)
            assert stored is not None and stored.status == "complete"
    assert f"run {first} (complete) within 0.3 s; record not written" in caplog.text


@pytest.mark.fault
async def test_parallel_submissions_racing_a_shutdown_are_each_run_to_an_end_or_refused() -> None:
    """Production limits; small payloads are accepted at once, big ones are still being prepared
    in worker threads (the real window) when a restart begins: every id handed out ends with a
    final record, nothing is left queued or running, the rest is refused."""
    cfg = ExecutionConfig()
    hub = EventHub()
    store = MemoryRunStore()
    registry = RegistryHolder(NodeRegistry.build([("t", "t", NODES)]))
    scheduler = Scheduler(
        hub=hub, registry=registry, store=store, max_concurrent=cfg.max_concurrent_workflows,
        shutdown_timeout=cfg.shutdown_timeout_seconds,
    )
    sleep = {"id": "s", "fullType": "t:Sleep", "inputs": {"seconds": 30}}
    small = convert_payload({"nodes": [sleep]})
    big = convert_payload({"nodes": [*({"id": f"c{i}", "fullType": "t:Const"} for i in range(2_500)), sleep]})
    results: list[Any] = []

    async def submit(payload: Any) -> None:
        try:
            results.append(await scheduler.submit(payload, ALICE))
        except SchedulerClosed as exc:
            results.append(exc)

    preparing = anyio.to_thread.current_default_thread_limiter()
    async with scheduler.running():
        async with anyio.create_task_group() as tg:
            for i in range(30):
                tg.start_soon(submit, small if i % 3 == 0 else big)
            with anyio.fail_after(30):
                while len(results) < 10 or preparing.borrowed_tokens == 0:
                    await anyio.sleep(0)
                await scheduler.shutdown(mode="interrupt", timeout=cfg.shutdown_timeout_seconds, reason="restart")
        with anyio.fail_after(30):
            await scheduler.flush()
        assert scheduler.stats()["runningExecutions"] == 0 and scheduler.stats()["pendingExecutions"] == 0
    accepted = [r for r in results if isinstance(r, str)]
    assert len(accepted) >= 10 and all(isinstance(r, (str, SchedulerClosed)) for r in results) and len(results) == 30
    for prompt_id in accepted:
        record = await store.get(prompt_id)
        assert record is not None and record.status == "interrupted", (prompt_id, record and record.status)
