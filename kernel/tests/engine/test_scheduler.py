"""Scheduler: FIFO queue and concurrency limit, ownership, interrupt, history, replay, shutdown."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from comfytavern.auth import Principal
from comfytavern.engine import ExecutionSettings, Scheduler, SchedulerClosed, WorkflowInvalid, convert_payload
from comfytavern.events import EventHub, HubEvent
from comfytavern.nodes.registry import NodeRegistry, RegistryHolder
from comfytavern.storage.runs import MemoryRunStore
from comfytavern_testnodes import NODES

pytestmark = pytest.mark.anyio

ALICE = Principal(id="alice", username="alice")
BOB = Principal(id="bob", username="bob")
ADMIN = Principal(id="root", username="root", is_admin=True)


def make(store: MemoryRunStore | None = None, **kwargs: Any) -> tuple[Scheduler, list[HubEvent]]:
    hub = EventHub()
    seen: list[HubEvent] = []
    hub.subscribe(max_buffer=1, accept=lambda e: seen.append(e) or False)
    registry = RegistryHolder(NodeRegistry.build([("t", "t", NODES)]))
    return Scheduler(hub=hub, registry=registry, store=store or MemoryRunStore(), **kwargs), seen


def sleeper(seconds: float) -> Any:
    return convert_payload({"nodes": [{"id": "s", "fullType": "t:Sleep", "inputs": {"seconds": seconds}}]})


def quick() -> Any:
    return convert_payload({"nodes": [{"id": "c", "fullType": "t:Const", "inputs": {"value": 1}}]})


def statuses(events: list[HubEvent], prompt_id: str) -> list[str]:
    return [e.payload["status"] for e in events if e.type == "EXECUTION_STATUS_UPDATE" and e.prompt_id == prompt_id]


async def test_fifo_queue_respects_the_concurrency_limit() -> None:
    scheduler, events = make(max_concurrent=1)
    async with scheduler.running():
        first = await scheduler.submit(sleeper(0.2), ALICE)
        second = await scheduler.submit(quick(), ALICE)
        assert scheduler.stats() == {"maxConcurrentWorkflows": 1, "runningExecutions": 1, "pendingExecutions": 1}
        listing = scheduler.executions(ALICE)
        assert [r["promptId"] for r in listing["running"]] == [first]
        assert [r["promptId"] for r in listing["pending"]] == [second]
        record = await scheduler.wait(second, ALICE, 5)
        assert record is not None and record.status == "complete"
    assert statuses(events, first) == ["running", "complete"]
    assert statuses(events, second) == ["queued", "running", "complete"]
    queue_updates = [e.payload for e in events if e.type == "SYSTEM_QUEUE_UPDATE"]
    assert queue_updates[-1] == {"runningExecutions": 0, "pendingExecutions": 0}
    assert all(e.owner_id is None for e in events if e.type == "SYSTEM_QUEUE_UPDATE")
    assert all(e.owner_id == "alice" for e in events if e.prompt_id == first)


async def test_interrupt_cancels_running_and_queued_runs_at_once() -> None:
    scheduler, events = make(max_concurrent=1)
    async with scheduler.running():
        running = await scheduler.submit(sleeper(30), ALICE)
        queued = await scheduler.submit(sleeper(30), ALICE)
        await anyio.sleep(0.05)
        with anyio.fail_after(2):
            assert await scheduler.interrupt(queued, ALICE)
            assert await scheduler.interrupt(running, ALICE)
        assert not await scheduler.interrupt(running, ALICE)
        record = await scheduler.get(running, ALICE)
        assert record is not None and record.status == "interrupted"
        assert record.node_status["s"]["status"] == "interrupted"
    assert statuses(events, running)[-1] == "interrupted"
    assert statuses(events, queued) == ["queued", "interrupted"]
    # Nothing of the run is published after its final status.
    last = max(i for i, e in enumerate(events) if e.prompt_id == running)
    assert events[last].type == "EXECUTION_STATUS_UPDATE"


async def test_runs_are_private_to_their_owner_except_for_admins() -> None:
    scheduler, _ = make()
    async with scheduler.running():
        prompt_id = await scheduler.submit(sleeper(30), ALICE)
        assert await scheduler.get(prompt_id, BOB) is None
        assert not await scheduler.interrupt(prompt_id, BOB)
        assert scheduler.executions(BOB) == {"running": [], "pending": []}
        assert await scheduler.replay(prompt_id, BOB) is None
        assert (await scheduler.get(prompt_id, ADMIN)) is not None
        assert await scheduler.interrupt(prompt_id, ADMIN)
        history, total = await scheduler.history(BOB)
        assert (history, total) == ([], 0)
        history, total = await scheduler.history(ALICE)
        assert total == 1 and history[0].status == "interrupted"


async def test_history_is_bounded_and_keeps_outputs() -> None:
    store = MemoryRunStore()
    scheduler, _ = make(store, history_size=3)
    async with scheduler.running():
        ids = [await scheduler.submit(quick(), ALICE) for _ in range(5)]
        for prompt_id in ids:
            await scheduler.wait(prompt_id, ALICE, 5)
        await scheduler.flush()
    assert await store.count(owner_id=None) == 3
    kept = await store.get(ids[-1])
    assert kept is not None and kept.outputs == {"c": {"value": 1}} and kept.node_status["c"]["status"] == "complete"
    assert await store.get(ids[0]) is None


async def test_replay_gives_a_late_subscriber_everything_once() -> None:
    scheduler, _ = make()
    async with scheduler.running():
        prompt_id = await scheduler.submit(
            convert_payload({"nodes": [{"id": "c", "fullType": "t:Const"}, {"id": "s", "fullType": "t:Sleep", "inputs": {"seconds": 0.2}}]}),
            ALICE,
        )
        await anyio.sleep(0.05)
        replay = await scheduler.replay(prompt_id, ALICE)
        assert replay is not None
        assert [e.type for e in replay][:2] == ["EXECUTION_STATUS_UPDATE", "NODE_EXECUTING"]
        await scheduler.wait(prompt_id, ALICE, 5)
        finished = await scheduler.replay(prompt_id, ALICE)
    assert finished is not None
    assert finished[-1].type == "EXECUTION_STATUS_UPDATE" and finished[-1].payload["status"] == "complete"
    assert {e.payload["nodeId"] for e in finished if e.type == "NODE_COMPLETE"} == {"c", "s"}


async def test_invalid_workflows_are_rejected_or_recorded() -> None:
    scheduler, events = make()
    bad = convert_payload({"nodes": [{"id": "x", "fullType": "t:Nope"}]})
    async with scheduler.running():
        with pytest.raises(WorkflowInvalid):
            await scheduler.submit(bad, ALICE)
        accepted: list[str] = []
        prompt_id = await scheduler.submit(bad, ALICE, on_accepted=accepted.append, reject_invalid=False)
        assert accepted == [prompt_id]
        record = await scheduler.get(prompt_id, ALICE)
    assert record is not None and record.status == "error"
    assert record.error_info is not None and record.error_info["nodeErrors"]["x"][0]["type"] == "unknown_node_type"
    mine = [(e.type, e.payload.get("status")) for e in events if e.prompt_id == prompt_id]
    assert mine == [("NODE_ERROR", None), ("EXECUTION_STATUS_UPDATE", "error")]


async def test_shutdown_records_cut_off_runs_as_interrupted() -> None:
    store = MemoryRunStore()
    scheduler, _ = make(store, max_concurrent=1, shutdown_timeout=2)
    async with scheduler.running():
        running = await scheduler.submit(sleeper(30), ALICE)
        queued = await scheduler.submit(sleeper(30), ALICE)
        await anyio.sleep(0.05)
    for prompt_id in (running, queued):
        record = await store.get(prompt_id)
        assert record is not None and record.status == "interrupted"
    with pytest.raises(SchedulerClosed):
        await scheduler.submit(quick(), ALICE)


async def test_crash_leftovers_are_marked_interrupted_at_start() -> None:
    store = MemoryRunStore()
    scheduler, _ = make(store)
    async with scheduler.running():
        prompt_id = await scheduler.submit(sleeper(30), ALICE)
        await scheduler.flush()
        # Simulate a crash: the store still says "running" and a new scheduler starts on it.
        record = await store.get(prompt_id)
        assert record is not None and record.status == "running"
        other, _ = make(store)
        async with other.running():
            fixed = await store.get(prompt_id)
            assert fixed is not None and fixed.status == "interrupted"
        await scheduler.interrupt(prompt_id, ALICE)


async def test_failed_run_ends_error_with_a_summary() -> None:
    scheduler, events = make(settings=ExecutionSettings())
    payload = convert_payload({
        "nodes": [{"id": "f", "fullType": "t:Fail"}, {"id": "a", "fullType": "t:Add"}, {"id": "c", "fullType": "t:Const"}],
        "edges": [{"id": "e", "sourceNodeId": "f", "sourceHandle": "result", "targetNodeId": "a", "targetHandle": "a"}],
    })
    async with scheduler.running():
        prompt_id = await scheduler.submit(payload, ALICE)
        record = await scheduler.wait(prompt_id, ALICE, 5)
    assert record is not None and record.status == "error"
    final = [e.payload for e in events if e.type == "EXECUTION_STATUS_UPDATE" and e.prompt_id == prompt_id][-1]
    assert final["errorInfo"]["message"] == "One or more nodes failed during execution."
    assert final["errorInfo"]["failedNodes"] == [{"nodeId": "f", "message": "boom"}]
    assert final["errorInfo"]["skippedNodes"] == ["a"]
    assert record.node_status["c"]["status"] == "complete"


async def test_shutdown_in_finish_mode_lets_running_runs_complete() -> None:
    store = MemoryRunStore()
    scheduler, _ = make(store, on_shutdown="finish", shutdown_timeout=5)
    async with scheduler.running():
        prompt_id = await scheduler.submit(sleeper(0.2), ALICE)
        await anyio.sleep(0.02)
    record = await store.get(prompt_id)
    assert record is not None and record.status == "complete"


async def test_graceful_restart_drain_reports_cut_off_runs() -> None:
    scheduler, _ = make(max_concurrent=1)
    async with scheduler.running():
        running = await scheduler.submit(sleeper(30), ALICE)
        queued = await scheduler.submit(sleeper(30), ALICE)
        await anyio.sleep(0.02)
        with anyio.fail_after(3):
            cut = await scheduler.shutdown(mode="interrupt", timeout=2, reason="test restart")
        assert sorted(cut) == sorted([running, queued])
        with pytest.raises(SchedulerClosed):
            await scheduler.submit(quick(), ALICE)


async def test_a_finished_run_is_freed_at_once_not_by_the_garbage_collector() -> None:
    """No reference cycle through a run: its graph and execution (thousands of objects for a big
    workflow) go as soon as it ends, not at the collector's next full pass."""
    import gc
    import weakref

    scheduler = Scheduler(
        hub=EventHub(), registry=RegistryHolder(NodeRegistry.build([("t", "t", NODES)])), store=MemoryRunStore()
    )
    gc.collect()
    gc.disable()
    try:
        async with scheduler.running():
            prompt_id = await scheduler.submit(sleeper(0.05), ALICE)
            run = scheduler.active(prompt_id, ALICE)
            assert run is not None
            run_ref, graph_ref = weakref.ref(run), weakref.ref(run.graph)
            await anyio.sleep(0.01)
            assert run.execution is not None
            execution_ref = weakref.ref(run.execution)
            del run
            record = await scheduler.wait(prompt_id, ALICE, 5)
            assert record is not None and record.status == "complete"
            for _ in range(3):
                await anyio.sleep(0)  # the run's task returns
            assert (run_ref(), graph_ref(), execution_ref()) == (None, None, None)
    finally:
        gc.enable()
