"""The Redis run queue against a real Redis, with a small in-test executor."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis

from comfytavern_distributed.keys import GROUP, Keys
from comfytavern_distributed.queue import WORKER_LOST, QueuedRun, RedisRunQueue, RunOutcome, RunState

pytestmark = pytest.mark.redis


class FakeExecutor:
    """Runs a job by waiting on a per-run event (or ``delay``); records what happened."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.started: list[str] = []
        self.interrupted: list[tuple[str, str]] = []
        self.lost: list[tuple[str, RunState]] = []
        self.concurrent = 0
        self.max_concurrent = 0
        self.gates: dict[str, anyio.Event] = {}
        self.scopes: dict[str, anyio.CancelScope] = {}
        self.ended_runs: list[str] = []

    async def execute(self, job: QueuedRun) -> RunOutcome:
        self.started.append(job.run_id)
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            with anyio.CancelScope() as scope:
                self.scopes[job.run_id] = scope
                if job.request.get("hang"):
                    await anyio.sleep_forever()
                await anyio.sleep(job.request.get("delay", self.delay))
                return RunOutcome(status="complete")
            return RunOutcome(status="interrupted")
        finally:
            self.concurrent -= 1

    async def interrupt_run(self, run_id: str, reason: str) -> None:
        self.interrupted.append((run_id, reason))
        if run_id in self.scopes:
            self.scopes[run_id].cancel()

    async def record_lost(self, job: QueuedRun, state: RunState) -> None:
        self.lost.append((job.run_id, state))

    async def ended(self, run_id: str) -> None:
        self.ended_runs.append(run_id)


def make_queue(redis: Redis, prefix: str, name: str, **kw: Any) -> RedisRunQueue:
    options: dict[str, Any] = {
        "lease_seconds": 0.6,
        "heartbeat_seconds": 0.2,
        "janitor_seconds": 0.2,
        "stream_maxlen": 1000,
        "state_ttl_seconds": 60,
        "block_seconds": 0.2,
    }
    options.update(kw)
    return RedisRunQueue(redis, Keys(prefix), name, **options)


def job(run_id: str, **request: Any) -> QueuedRun:
    return QueuedRun(run_id=run_id, owner_id="u1", request=request, submitted_at=time.time(), origin="A")


async def wait_status(q: RedisRunQueue, run_id: str, status: str, timeout: float = 5.0) -> RunState:
    with anyio.fail_after(timeout):
        while True:
            state = await q.state(run_id)
            if state is not None and state.status == status:
                return state
            await anyio.sleep(0.02)


@pytest.mark.anyio
async def test_submitted_runs_execute_once_and_finish(redis: Redis, prefix: str) -> None:
    server = make_queue(redis, prefix, "server-A")
    worker = make_queue(redis, prefix, "worker-1")
    ex = FakeExecutor()
    await server.submit(job("r1"))
    state = await server.state("r1")
    assert state is not None and state.status == "queued" and state.owner_id == "u1" and state.origin == "A"
    assert [s.run_id for s in await server.active()] == ["r1"]
    async with anyio.create_task_group() as tg:
        await tg.start(worker.consume, ex, 2)
        done = await wait_status(server, "r1", "complete")
        tg.cancel_scope.cancel()
    assert done.worker == "worker-1" and done.started_at is not None and done.finished_at is not None
    assert ex.started == ["r1"]
    assert await server.active() == []
    keys = Keys(prefix)
    assert await redis.xlen(keys.stream) == 0  # acknowledged and deleted
    assert await redis.exists(keys.lease("r1")) == 0
    assert 0 < await redis.ttl(keys.state("r1")) <= 60


@pytest.mark.anyio
async def test_max_concurrency_per_worker_and_sharing_between_workers(redis: Redis, prefix: str) -> None:
    server = make_queue(redis, prefix, "server")
    w1, w2 = make_queue(redis, prefix, "w1"), make_queue(redis, prefix, "w2")
    e1, e2 = FakeExecutor(delay=0.3), FakeExecutor(delay=0.3)
    ids = [f"r{i}" for i in range(8)]
    for rid in ids:
        await server.submit(job(rid))
    async with anyio.create_task_group() as tg:
        await tg.start(w1.consume, e1, 2)
        await tg.start(w2.consume, e2, 1)
        for rid in ids:
            await wait_status(server, rid, "complete")
        tg.cancel_scope.cancel()
    assert sorted(e1.started + e2.started) == sorted(ids)  # each exactly once
    assert e1.max_concurrent <= 2 and e2.max_concurrent == 1
    assert e1.started and e2.started


@pytest.mark.anyio
async def test_interrupt_while_queued_never_runs(redis: Redis, prefix: str) -> None:
    server, worker = make_queue(redis, prefix, "server"), make_queue(redis, prefix, "w")
    ex = FakeExecutor()
    await server.submit(job("r1"))
    assert await server.interrupt("r1") == "queued"
    assert (await server.state("r1")).status == "interrupted"  # type: ignore[union-attr]
    assert await server.interrupt("r1") == "interrupted"
    assert await server.interrupt("nope") is None
    async with anyio.create_task_group() as tg:
        await tg.start(worker.consume, ex, 1)
        with anyio.fail_after(3):
            while await redis.xlen(Keys(prefix).stream):
                await anyio.sleep(0.02)
        tg.cancel_scope.cancel()
    assert ex.started == []


@pytest.mark.anyio
async def test_interrupt_while_running_publishes_a_cancel(redis: Redis, prefix: str) -> None:
    server, worker = make_queue(redis, prefix, "server"), make_queue(redis, prefix, "w")
    ex = FakeExecutor()
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(Keys(prefix).cancel)
    try:
        await server.submit(job("r1", hang=True))
        async with anyio.create_task_group() as tg:
            await tg.start(worker.consume, ex, 1)
            await wait_status(server, "r1", "running")
            assert await server.interrupt("r1") == "running"
            message = None
            with anyio.fail_after(3):
                while message is None:  # the subscribe confirmation reads as None
                    message = await pubsub.get_message(timeout=None)
            assert message["data"] == b"r1"
            # The bridge would call the executor; do it here.
            await ex.interrupt_run("r1", "interrupt")
            await wait_status(server, "r1", "interrupted")
            tg.cancel_scope.cancel()
    finally:
        await pubsub.aclose()


@pytest.mark.anyio
async def test_a_dead_worker_s_run_ends_worker_lost_exactly_once(redis: Redis, prefix: str) -> None:
    dying = make_queue(redis, prefix, "dying")
    janitors = [make_queue(redis, prefix, f"janitor-{i}") for i in range(2)]
    ex = FakeExecutor()
    await dying.submit(job("r1", hang=True))
    async with anyio.create_task_group() as tg:
        await tg.start(dying.consume, ex, 1)
        await wait_status(dying, "r1", "running")
        tg.cancel_scope.cancel()  # the worker vanishes: no finish, no more heartbeats
    assert (await dying.state("r1")).status == "running"  # type: ignore[union-attr]
    lost_by: list[list[str]] = []
    with anyio.fail_after(5):
        while not any(lost_by):
            lost_by = [await j.sweep(ex) for j in janitors]
            await anyio.sleep(0.1)
    assert sum(len(x) for x in lost_by) == 1
    state = await dying.state("r1")
    assert state is not None and state.status == "error" and state.error == WORKER_LOST and state.worker == "dying"
    assert [rid for rid, _ in ex.lost] == ["r1"]
    assert await redis.xlen(Keys(prefix).stream) == 0
    assert await dying.active() == []
    # Not re-run: a new worker finds nothing to do.
    fresh = make_queue(redis, prefix, "fresh")
    ex2 = FakeExecutor()
    async with anyio.create_task_group() as tg:
        await tg.start(fresh.consume, ex2, 1)
        await anyio.sleep(0.5)
        tg.cancel_scope.cancel()
    assert ex2.started == []


@pytest.mark.anyio
async def test_a_live_worker_keeps_its_lease_beyond_the_lease_time(redis: Redis, prefix: str) -> None:
    worker, janitor = make_queue(redis, prefix, "w"), make_queue(redis, prefix, "j")
    ex = FakeExecutor()
    await worker.submit(job("r1", delay=1.5))
    async with anyio.create_task_group() as tg:
        await tg.start(worker.consume, ex, 1)
        await tg.start(janitor.janitor, ex)
        await wait_status(worker, "r1", "complete", timeout=5)
        tg.cancel_scope.cancel()
    assert ex.lost == []


@pytest.mark.anyio
async def test_a_worker_that_lost_its_lease_cancels_the_run_and_cannot_overwrite(redis: Redis, prefix: str) -> None:
    worker = make_queue(redis, prefix, "w")
    ex = FakeExecutor()
    await worker.submit(job("r1", hang=True))
    async with anyio.create_task_group() as tg:
        await tg.start(worker.consume, ex, 1)
        await wait_status(worker, "r1", "running")
        # Simulate a stall: the janitor declares the run lost while the worker still runs it.
        keys = Keys(prefix)
        await redis.delete(keys.lease("r1"))
        await redis.hset(keys.state("r1"), "status", "error")
        with anyio.fail_after(3):
            while not ex.interrupted:
                await anyio.sleep(0.02)
        assert ex.interrupted == [("r1", WORKER_LOST)]
        with anyio.fail_after(3):
            while worker.running:
                await anyio.sleep(0.02)
        tg.cancel_scope.cancel()
    assert (await worker.state("r1")).status == "error"  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_malformed_entries_are_dropped(redis: Redis, prefix: str) -> None:
    worker = make_queue(redis, prefix, "w")
    await worker.ensure_group()
    await redis.xadd(Keys(prefix).stream, {"job": b"{not json"})
    await redis.xadd(Keys(prefix).stream, {"other": b"1"})
    ex = FakeExecutor()
    async with anyio.create_task_group() as tg:
        await tg.start(worker.consume, ex, 1)
        with anyio.fail_after(3):
            while await redis.xlen(Keys(prefix).stream):
                await anyio.sleep(0.02)
        tg.cancel_scope.cancel()
    assert ex.started == []
    pending = await redis.xpending(Keys(prefix).stream, GROUP)
    assert pending["pending"] == 0


@pytest.mark.anyio
async def test_workers_are_listed_while_they_beat(redis: Redis, prefix: str) -> None:
    worker = make_queue(redis, prefix, "w")
    async with anyio.create_task_group() as tg:
        await tg.start(worker.consume, FakeExecutor(), 1)
        with anyio.fail_after(3):
            while "w" not in await worker.workers():
                await anyio.sleep(0.02)
        tg.cancel_scope.cancel()
    await worker.leave()
    assert "w" not in await worker.workers()
