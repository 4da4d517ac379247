"""Two kernels in one process sharing Redis and one run store: a web-only instance (A) that
queues, and an executing instance (W). Everything real except the process boundary (the
multi-process test covers that)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

import comfytavern_testnodes as testnodes
from comfytavern import HubEvent, Principal, StorageBackend, hookimpl
from comfytavern.engine import convert_payload
from comfytavern.engine.scheduler import Scheduler
from comfytavern.kernel import Kernel
from comfytavern.services import RUN_QUEUE, SCHEDULER
from comfytavern.storage.runs import MemoryRunStore, RunRecord
from comfytavern_testing import make_kernel
from comfytavern_testing_contracts.services import redis_url

ALICE = Principal(id="alice", username="alice")
BOB = Principal(id="bob", username="bob")


class SharedRuns:
    """An in-test ``runs`` backend: every kernel of the test gets the same store (like PostgreSQL)."""

    name = "shared-runs"

    def __init__(self, store: MemoryRunStore | None = None) -> None:
        self.store = store or MemoryRunStore()

    @hookimpl
    def register_storage_backends(self, kernel: Any) -> list[StorageBackend]:
        return [StorageBackend("shared", "runs", lambda kernel, settings: self.store)]


def build(tmp: Path, shared: SharedRuns, prefix: str, name: str, **dist: Any) -> Kernel:
    settings = {"enabled": True, "redis_url": redis_url(), "prefix": prefix, "instance_id": name,
                "lease_seconds": 1.0, "heartbeat_seconds": 0.2, "janitor_seconds": 0.2, **dist}
    return make_kernel(
        tmp / name,
        plugins=[shared],
        node_packs=[testnodes],
        storage={"projects": None, "accounts": None, "runs": "shared"},
        plugins_config={"settings": {"distributed": settings}},
    )


@asynccontextmanager
async def running(kernel: Kernel) -> AsyncIterator[Scheduler]:
    async with kernel.lifespan():
        yield kernel.services.require(SCHEDULER)


def payload(seconds: float = 0.0, parts: list[str] | None = None) -> Any:
    nodes: list[dict[str, Any]] = [{"id": "sleep", "fullType": "t:Sleep", "inputs": {"seconds": seconds, "value": 1}}]
    edges: list[dict[str, Any]] = []
    if parts is not None:
        nodes.append({"id": "stream", "fullType": "t:Stream", "inputs": {"parts": parts, "delay": 0.001}})
    return convert_payload({"nodes": nodes, "edges": edges})


async def final_status(sub: Any, prompt_id: str, timeout: float = 10) -> tuple[str, list[HubEvent]]:
    seen: list[HubEvent] = []
    with anyio.fail_after(timeout):
        async for event in sub:
            if event.prompt_id != prompt_id:
                continue
            seen.append(event)
            if event.type == "EXECUTION_STATUS_UPDATE" and event.payload["status"] in ("complete", "error", "interrupted"):
                return event.payload["status"], seen
    raise AssertionError("subscription ended")


@pytest.mark.anyio
@pytest.mark.redis
async def test_submit_on_a_web_instance_runs_on_the_worker_and_is_watchable(tmp_path: Path, prefix: str) -> None:
    shared = SharedRuns()
    a = build(tmp_path, shared, prefix, "A", execute=False)
    w = build(tmp_path, shared, prefix, "W")
    async with running(a) as sa, running(w) as sw:
        sub = a.hub.subscribe()
        parts = [f"tok{i} " for i in range(40)]
        prompt_id = await sa.submit(payload(0.3, parts), ALICE)
        # While it runs, A answers from the shared state; Bob cannot see Alice's run.
        with anyio.fail_after(5):
            while (rec := await sa.get(prompt_id, ALICE)) is None or rec.status != "running":
                await anyio.sleep(0.02)
        assert await sa.get(prompt_id, BOB) is None
        assert prompt_id in [i["promptId"] for i in sa.executions(ALICE)["running"] + sa.executions(ALICE)["pending"]]
        assert sa.executions(BOB) == {"running": [], "pending": []}
        assert sa.watchable(prompt_id, ALICE)
        status, events = await final_status(sub, prompt_id)
        assert status == "complete"
        types = [e.type for e in events]
        assert types[0] == "EXECUTION_STATUS_UPDATE" and events[0].payload["status"] == "queued"
        assert "NODE_COMPLETE" in types
        chunks = [e.payload["yieldedContent"] for e in events if e.type == "NODE_YIELD"]
        text = "".join(c["content"] for c in chunks if c["type"] == "text_chunk")
        assert chunks[-1]["type"] == "finish_reason_chunk"
        assert text == "".join(parts)
        assert types.count("NODE_YIELD") < len(parts)  # coalesced before crossing the bus
        assert all(e.owner_id == "alice" for e in events)
        # Like a single server, A announces the queue after the (remote) run ended.
        with anyio.fail_after(5):
            update = await sub.receive()
            while update.type != "SYSTEM_QUEUE_UPDATE":
                update = await sub.receive()
        assert set(update.payload) == {"runningExecutions", "pendingExecutions"} and update.owner_id is None
        record = await sa.wait(prompt_id, ALICE, 5)
        assert record is not None and record.status == "complete"
        assert record.outputs["sleep"] == {"value": 1}
        assert record.outputs["stream"]["text"] == "".join(parts)
        # It ran on W, not on A.
        assert sw.store is shared.store
        assert prompt_id not in sa._runs


@pytest.mark.anyio
@pytest.mark.redis
async def test_interrupt_from_the_web_instance_cancels_the_run_on_the_worker(tmp_path: Path, prefix: str) -> None:
    shared = SharedRuns()
    a = build(tmp_path, shared, prefix, "A", execute=False)
    w = build(tmp_path, shared, prefix, "W")
    async with running(a) as sa, running(w):
        sub = a.hub.subscribe()
        prompt_id = await sa.submit(payload(30), ALICE)
        with anyio.fail_after(5):
            while (rec := await sa.get(prompt_id, ALICE)) is None or rec.status != "running":
                await anyio.sleep(0.02)
        assert not await sa.interrupt(prompt_id, BOB)  # not Bob's run
        with anyio.fail_after(5):
            assert await sa.interrupt(prompt_id, ALICE, wait=3)
        status, _ = await final_status(sub, prompt_id)
        assert status == "interrupted"
        record = await sa.get(prompt_id, ALICE)
        assert record is not None and record.status == "interrupted"
        assert not await sa.interrupt(prompt_id, ALICE)  # already finished


@pytest.mark.anyio
@pytest.mark.redis
async def test_a_run_interrupted_while_queued_never_runs(tmp_path: Path, prefix: str) -> None:
    shared = SharedRuns()
    a = build(tmp_path, shared, prefix, "A", execute=False)
    async with running(a) as sa:
        sub = a.hub.subscribe()
        prompt_id = await sa.submit(payload(0), ALICE)
        assert [i["promptId"] for i in sa.executions(ALICE)["pending"]] == [prompt_id]
        assert sa.queue_counts() == {"runningExecutions": 0, "pendingExecutions": 1}
        assert await sa.interrupt(prompt_id, ALICE)
        status, _ = await final_status(sub, prompt_id)
        assert status == "interrupted"
        assert (await sa.get(prompt_id, ALICE)).status == "interrupted"  # type: ignore[union-attr]
    # A worker started later does not run it.
    w = build(tmp_path, shared, prefix, "W")
    async with running(w) as sw:
        await anyio.sleep(0.5)
        assert (await sw.get(prompt_id, ALICE)).status == "interrupted"  # type: ignore[union-attr]


@pytest.mark.anyio
@pytest.mark.redis
async def test_invalid_workflows_are_rejected_on_the_submitting_instance(tmp_path: Path, prefix: str) -> None:
    from comfytavern.engine import WorkflowInvalid

    shared = SharedRuns()
    a = build(tmp_path, shared, prefix, "A", execute=False)
    async with running(a) as sa:
        with pytest.raises(WorkflowInvalid):
            await sa.submit(convert_payload({"nodes": [{"id": "x", "fullType": "t:Nope"}]}), ALICE)


@pytest.mark.anyio
@pytest.mark.redis
async def test_max_concurrency_per_worker(tmp_path: Path, prefix: str) -> None:
    shared = SharedRuns()
    a = build(tmp_path, shared, prefix, "A", execute=False)
    w = build(tmp_path, shared, prefix, "W", max_concurrency=2)
    async with running(a) as sa, running(w) as sw:
        ids = [await sa.submit(payload(0.4), ALICE) for _ in range(5)]
        peak = 0
        with anyio.fail_after(10):
            while True:
                peak = max(peak, len(sw._running))
                records = [await sa.get(i, ALICE) for i in ids]
                if all(r is not None and r.status == "complete" for r in records):
                    break
                await anyio.sleep(0.02)
        assert peak == 2


@pytest.mark.anyio
async def test_a_bad_distributed_configuration_stops_start_up(tmp_path: Path) -> None:
    from comfytavern import ConfigError

    kernel = make_kernel(tmp_path, storage={"projects": None, "accounts": None, "runs": None},
                         plugins_config={"settings": {"distributed": {"enabled": True, "heartbeat_seconds": 99}}})
    with pytest.raises(ConfigError, match="heartbeat_seconds"):
        async with kernel.lifespan():
            pass


@pytest.mark.anyio
async def test_unreachable_redis_stops_start_up_with_a_clear_message(tmp_path: Path) -> None:
    from comfytavern_distributed.service import RedisUnavailable

    kernel = make_kernel(tmp_path, storage={"projects": None, "accounts": None, "runs": None},
                         plugins_config={"settings": {"distributed": {"enabled": True, "redis_url": "redis://127.0.0.1:1/0"}}})
    with pytest.raises(RedisUnavailable, match="cannot reach Redis at redis://127.0.0.1:1/0"):
        async with kernel.lifespan():
            pass


@pytest.mark.anyio
async def test_disabled_by_default(tmp_path: Path) -> None:
    kernel = make_kernel(tmp_path, storage={"projects": None, "accounts": None, "runs": None})
    async with kernel.lifespan():
        assert RUN_QUEUE not in kernel.services
        assert kernel.services.require(SCHEDULER).run_queue is None


@pytest.mark.anyio
@pytest.mark.redis
async def test_runs_the_shared_queue_forgot_are_ended_not_left_queued(tmp_path: Path, prefix: str) -> None:
    """Redis lost its data (a restart without persistence): stale queued records end queue_lost."""
    from redis.asyncio import Redis

    shared = SharedRuns()
    a = build(tmp_path, shared, prefix, "A", execute=False)
    async with running(a) as sa:
        old = await sa.submit(payload(0), ALICE)
        fresh = await sa.submit(payload(0), ALICE)
        client = Redis.from_url(redis_url())
        try:
            await client.delete(f"{prefix}:run:{old}", f"{prefix}:run:{fresh}")
        finally:
            await client.aclose()
        runs = a.services.require(RUN_QUEUE)
        assert await runs.reconcile(min_age_seconds=3600) == []  # too young: maybe being submitted
        assert set(await runs.reconcile(min_age_seconds=0)) == {old, fresh}
        assert await runs.reconcile(min_age_seconds=0) == []
        record = await sa.get(old, ALICE)
        assert record is not None and record.status == "error" and record.error_info["code"] == "queue_lost"  # type: ignore[index]


@pytest.mark.redis
def test_status_route_for_admins(tmp_path: Path, prefix: str) -> None:
    from comfytavern_testing import client_for

    shared = SharedRuns()
    kernel = build(tmp_path, shared, prefix, "A", execute=False)
    with client_for(kernel) as client:
        body = client.get("/api/distributed/status").json()
    assert body["enabled"] is True and body["instanceId"] == "A" and body["executes"] is False
    assert body["prefix"] == prefix and body["active"] == [] and isinstance(body["workers"], dict)
    plain = make_kernel(tmp_path / "plain", storage={"projects": None, "accounts": None, "runs": None})
    with client_for(plain) as client:
        assert client.get("/api/distributed/status").json() == {"enabled": False}


def test_worker_command_reports_bad_settings_and_unreachable_redis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from comfytavern_distributed.worker import run_worker

    def kernel(settings: dict[str, Any]) -> Kernel:
        return make_kernel(tmp_path, storage={"projects": None, "accounts": None, "runs": None},
                           plugins_config={"settings": {"distributed": settings}})

    args = argparse.Namespace(concurrency=0, worker_id=None)
    assert run_worker(kernel({}), args) == 2
    assert "max_concurrency: must be at least 1" in capsys.readouterr().err
    args = argparse.Namespace(concurrency=2, worker_id="w-1")
    assert run_worker(kernel({"redis_url": "redis://127.0.0.1:1/0"}), args) == 2
    assert "cannot start: cannot reach Redis at redis://127.0.0.1:1/0" in capsys.readouterr().err


def test_worker_command_reports_an_unreachable_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from comfytavern_distributed.worker import run_worker

    kernel = make_kernel(
        tmp_path,
        storage={"projects": None, "accounts": None, "runs": "postgres",
                 "settings": {"postgres": {"dsn": "postgresql://postgres@127.0.0.1:1/x", "timeout": 1}}},
        plugins_config={"settings": {"distributed": {"redis_url": redis_url()}}},
    )
    assert run_worker(kernel, argparse.Namespace(concurrency=None, worker_id=None)) == 2
    assert "cannot start: cannot connect to PostgreSQL" in capsys.readouterr().err


# -- the final event of a run arrives only once its final record can be read ------------------
# A watcher on A asks A for the record the moment the final event reaches A's hub, as a client
# does on ``complete``: it must never get ``running``.


class SlowFinalWrites(MemoryRunStore):
    """A shared run store (like PostgreSQL under load) that takes ``delay`` s to write final records."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def save(self, record: RunRecord) -> None:
        if record.finished:
            await anyio.sleep(self.delay)
        await super().save(record)


def job(n: int) -> Any:
    return convert_payload({"nodes": [{"id": "c", "fullType": "t:Const", "inputs": {"value": n}}]})


async def check_on_final(a: Kernel, runs: int) -> list[tuple[str, str, str | None]]:
    """Submit ``runs`` runs on A; for each, A's record read at the moment A's hub delivers the
    final event: ``(promptId, final status, status A answered)``."""
    sa: Scheduler = a.services.require(SCHEDULER)
    seen: list[tuple[str, str, str | None]] = []
    with a.hub.subscribe() as sub:
        ids = {await sa.submit(job(n), ALICE) for n in range(runs)}
        with anyio.fail_after(30):
            async for event in sub:
                if not _final(event) or event.prompt_id not in ids:
                    continue
                record = await sa.get(event.prompt_id, ALICE)
                seen.append((event.prompt_id, event.payload["status"], record.status if record else None))
                if len(seen) == runs:
                    break
    return seen


def _final(event: HubEvent) -> bool:
    return event.type == "EXECUTION_STATUS_UPDATE" and event.payload.get("status") in ("complete", "error", "interrupted")


@pytest.mark.anyio
async def test_the_final_record_is_readable_when_the_final_event_arrives(tmp_path: Path, prefix: str) -> None:
    shared = SharedRuns(MemoryRunStore())
    a = build(tmp_path, shared, prefix, "A", execute=False)
    w = build(tmp_path, shared, prefix, "W")
    async with a.lifespan(), w.lifespan():
        seen = await check_on_final(a, 20)
    assert [(status, answered) for _, status, answered in seen] == [("complete", "complete")] * 20


@pytest.mark.anyio
async def test_a_slow_store_holds_the_final_event_back(tmp_path: Path, prefix: str) -> None:
    store = SlowFinalWrites(0.3)
    shared = SharedRuns(store)
    a = build(tmp_path, shared, prefix, "A", execute=False)
    w = build(tmp_path, shared, prefix, "W")
    async with a.lifespan(), w.lifespan():
        seen = await check_on_final(a, 3)
        assert [(status, answered) for _, status, answered in seen] == [("complete", "complete")] * 3
        for prompt_id, _, _ in seen:
            stored = await store.get(prompt_id)
            assert stored is not None and stored.status == "complete" and "c" in stored.outputs


@pytest.mark.anyio
async def test_failed_and_interrupted_runs_hold_their_final_event_too(tmp_path: Path, prefix: str) -> None:
    shared = SharedRuns(SlowFinalWrites(0.2))
    a = build(tmp_path, shared, prefix, "A", execute=False)
    w = build(tmp_path, shared, prefix, "W")
    async with a.lifespan(), w.lifespan():
        sa: Scheduler = a.services.require(SCHEDULER)
        with a.hub.subscribe() as sub:
            failing = await sa.submit(convert_payload({"nodes": [{"id": "f", "fullType": "t:Fail"}]}), ALICE)
            sleeping = await sa.submit(
                convert_payload({"nodes": [{"id": "s", "fullType": "t:Sleep", "inputs": {"seconds": 30}}]}), ALICE
            )
            with anyio.fail_after(10):
                while (record := await sa.get(sleeping, ALICE)) is None or record.status != "running":
                    await anyio.sleep(0.02)
            assert await sa.interrupt(sleeping, ALICE, wait=0)
            answered: dict[str, tuple[str, str | None]] = {}
            with anyio.fail_after(10):
                async for event in sub:
                    if _final(event) and event.prompt_id in (failing, sleeping):
                        record = await sa.get(event.prompt_id, ALICE)
                        answered[event.prompt_id] = (event.payload["status"], record.status if record else None)
                        if len(answered) == 2:
                            break
    assert answered == {failing: ("error", "error"), sleeping: ("interrupted", "interrupted")}


@pytest.mark.anyio
async def test_a_queued_run_is_stored_before_it_is_acknowledged(tmp_path: Path, prefix: str) -> None:
    """The shared store has the run's record when the id is handed out (``on_accepted`` is where
    the WebSocket acknowledges; HTTP answers after ``submit`` returns)."""
    shared = SharedRuns()
    a = build(tmp_path, shared, prefix, "A", execute=False)
    async with running(a) as sa:
        stored_at_ack: list[str | None] = []

        def accepted(prompt_id: str) -> None:
            record = shared.store._records.get(prompt_id)
            stored_at_ack.append(record.status if record else None)

        prompt_id = await sa.submit(payload(0), ALICE, on_accepted=accepted)
        assert stored_at_ack == ["queued"]
        record = await shared.store.get(prompt_id)
        assert record is not None and record.status == "queued"
        assert await sa.interrupt(prompt_id, ALICE)
