"""Sync nodes run in a thread pool of their own: blocked or abandoned node threads never take the
threads the server itself needs (anyio's default limiter), and abandoned ones stay counted."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import anyio
import anyio.to_thread
import pytest

from comfytavern.auth import Principal
from comfytavern.config import ExecutionConfig
from comfytavern.engine import ExecutionSettings, Scheduler, convert_payload
from comfytavern.engine.threads import NodeThreads
from comfytavern.events import EventHub
from comfytavern.nodes.definition import Input, Output, node
from comfytavern.nodes.registry import NodeRegistry, RegistryHolder
from comfytavern.storage.runs import MemoryRunStore
from comfytavern_testnodes import NODES

pytestmark = pytest.mark.anyio

ALICE = Principal(id="alice", username="alice")


class Gate:
    """Sync nodes park on it in their worker threads until the test opens it."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self._lock = threading.Lock()
        self.inside = 0
        self.finished = 0

    def enter(self) -> None:
        with self._lock:
            self.inside += 1
        self.open.wait(60)  # bounded so a failed test cannot leak a thread forever
        with self._lock:
            self.inside -= 1
            self.finished += 1

    async def wait_inside(self, n: int) -> None:
        with anyio.fail_after(20):
            while self.inside < n:
                await anyio.sleep(0.005)


GATES: dict[str, Gate] = {}
_ids = itertools.count()


@node(type="Park", category="test", display_name="Park on a gate (sync)", namespace="x",
      inputs={"gate": Input(data_flow_type="STRING")}, outputs={"done": Output(data_flow_type="BOOLEAN")})
def park(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    GATES[inputs["gate"]].enter()
    return {"done": True}


def new_gate() -> tuple[str, Gate]:
    key = f"g{next(_ids)}"
    GATES[key] = Gate()
    return key, GATES[key]


def parked(gate: str, n: int) -> Any:
    return convert_payload({"nodes": [{"id": f"p{i}", "fullType": "x:Park", "inputs": {"gate": gate}} for i in range(n)]})


def many(n: int) -> Any:
    nodes = [{"id": f"c{i}", "fullType": "t:Const", "inputs": {"value": i}} for i in range(n)]
    return convert_payload({"nodes": nodes})


def make(**kwargs: Any) -> Scheduler:
    registry = RegistryHolder(NodeRegistry.build([("t", "t", NODES), ("x", "x", [park])]))
    return Scheduler(hub=EventHub(), registry=registry, store=MemoryRunStore(), **kwargs)


async def test_production_default_pool_leaves_the_servers_threads_free() -> None:
    """With the production defaults, as many blocked sync nodes as the pool holds (40, anyio's
    own default limit) do not delay the server's own thread work: a big payload is still
    prepared (in a thread) and run, and any other ``to_thread`` call goes through."""
    size = ExecutionConfig().node_threads
    assert size == 40
    cfg = ExecutionConfig()
    scheduler = make(
        max_concurrent=cfg.max_concurrent_workflows,
        settings=ExecutionSettings(node_timeout=cfg.node_timeout_seconds, node_threads=NodeThreads(cfg.node_threads)),
    )
    key, gate = new_gate()
    default = anyio.to_thread.current_default_thread_limiter()
    async with scheduler.running():
        blocked = await scheduler.submit(parked(key, size), ALICE)
        await gate.wait_inside(size)
        assert default.borrowed_tokens == 0
        assert scheduler.settings.node_threads.limiter.borrowed_tokens == size
        # The hang guard is generous: before the fix these waited for the nodes (forever here).
        with anyio.fail_after(20):
            assert await anyio.to_thread.run_sync(lambda: 42) == 42
            big = await scheduler.submit(many(2_500), ALICE)  # prepared in a worker thread
            record = await scheduler.wait(big, ALICE, 20)
        assert record is not None and record.status == "complete"
        gate.open.set()
        record = await scheduler.wait(blocked, ALICE, 20)
        assert record is not None and record.status == "complete"
    assert scheduler.settings.node_threads.limiter.borrowed_tokens == 0


async def test_an_abandoned_thread_keeps_its_place_until_it_really_ends() -> None:
    scheduler = make(settings=ExecutionSettings(node_threads=NodeThreads(2)))
    threads = scheduler.settings.node_threads
    key, gate = new_gate()
    async with scheduler.running():
        prompt_id = await scheduler.submit(parked(key, 1), ALICE)
        await gate.wait_inside(1)
        with anyio.fail_after(5):
            assert await scheduler.interrupt(prompt_id, ALICE)
        record = await scheduler.get(prompt_id, ALICE)
        assert record is not None and record.status == "interrupted"
        # The run is over, its thread is not: it still holds a place in the pool (only there).
        assert threads.abandoned == 1 and threads.limiter.borrowed_tokens == 1
        assert anyio.to_thread.current_default_thread_limiter().borrowed_tokens == 0
        gate.open.set()
        with anyio.fail_after(10):
            while threads.limiter.borrowed_tokens:
                await anyio.sleep(0.005)
        assert threads.abandoned == 0 and gate.finished == 1


async def test_a_pool_full_of_hung_threads_makes_sync_nodes_wait_interruptibly() -> None:
    scheduler = make(settings=ExecutionSettings(node_threads=NodeThreads(1)))
    threads = scheduler.settings.node_threads
    hung_key, hung = new_gate()
    key, gate = new_gate()
    gate.open.set()
    async with scheduler.running():
        first = await scheduler.submit(parked(hung_key, 1), ALICE)
        await hung.wait_inside(1)
        assert await scheduler.interrupt(first, ALICE)
        assert threads.abandoned == 1
        # The only place is held by the hung thread: the next sync node waits for it ...
        waiting = await scheduler.submit(parked(key, 1), ALICE)
        with anyio.fail_after(5):
            while threads.limiter.statistics().tasks_waiting < 1:
                await anyio.sleep(0.005)
        # ... and can be interrupted while it waits, without taking or losing a place.
        with anyio.fail_after(5):
            assert await scheduler.interrupt(waiting, ALICE)
        assert threads.limiter.borrowed_tokens == 1 and threads.limiter.statistics().tasks_waiting == 0
        hung.open.set()
        again = await scheduler.submit(parked(key, 1), ALICE)
        record = await scheduler.wait(again, ALICE, 20)
        assert record is not None and record.status == "complete"
    assert gate.finished == 1 and threads.limiter.borrowed_tokens == 0


def test_an_abandoned_thread_that_outlives_its_event_loop_ends_instead_of_waiting_for_it() -> None:
    """The token goes back by a "call soon": on a loop that has stopped (the server or a test
    ended while the node ran) the worker thread must still end, or the interpreter's exit, which
    joins it, waits forever."""
    import asyncio
    import sys
    import time

    gate = threading.Event()
    worker: list[threading.Thread] = []

    def blocking() -> None:
        worker.append(threading.current_thread())
        gate.wait(30)

    async def abandon() -> None:
        pool = NodeThreads(1)
        with anyio.move_on_after(0.3):
            await pool.run(blocking)
        assert pool.abandoned == 1

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(abandon())  # stopped, not closed: calls into it are never run
        gate.set()

        def in_node_code() -> bool:
            frame = sys._current_frames().get(worker[0].ident or -1)
            while frame is not None:
                if frame.f_code.co_filename.endswith("engine/threads.py"):
                    return True
                frame = frame.f_back
            return False

        deadline = time.monotonic() + 10
        while in_node_code() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not in_node_code(), "the abandoned node thread waits for an event loop that has stopped"
    finally:
        gate.set()
        loop.close()
