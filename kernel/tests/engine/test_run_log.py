"""A finished run's event log is really freed, even while something still holds the run.

The log feeds late watchers of an active run; once the run has ended they get the stored summary.
Setting ``run.log = []`` freed nothing: the emit function kept the old list, and the run's
execution (held by anything that holds the run, or by a sync node's abandoned worker thread
through its context) keeps the emit function.
"""

from __future__ import annotations

import gc
import threading
from typing import Any

import anyio
import pytest

from comfytavern.auth import Principal
from comfytavern.engine import ExecutionSettings, NodeThreads, Scheduler, convert_payload
from comfytavern.events import EventHub, HubEvent
from comfytavern.nodes.definition import Output, node
from comfytavern.nodes.registry import NodeRegistry, RegistryHolder
from comfytavern.storage.runs import MemoryRunStore
from comfytavern_testnodes import NODES

pytestmark = pytest.mark.anyio

ALICE = Principal(id="alice", username="alice")
N = 300
STARTED = threading.Event()
RELEASE = threading.Event()


@node(type="Hang", category="test", display_name="Hang until released (sync)", namespace="x",
      outputs={"done": Output(data_flow_type="BOOLEAN")})
def hang(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    STARTED.set()
    RELEASE.wait(30)
    return {"done": True}


def live_events(prompt_id: str) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is HubEvent and o.prompt_id == prompt_id)


def make() -> Scheduler:
    hub = EventHub()
    hub.subscribe(max_buffer=1, accept=lambda e: False)  # a watcher that keeps nothing
    registry = RegistryHolder(NodeRegistry.build([("t", "t", NODES), ("x", "x", [hang])]))
    return Scheduler(hub=hub, registry=registry, store=MemoryRunStore(), settings=ExecutionSettings(node_threads=NodeThreads(4)))


def consts(n: int, **extra: Any) -> Any:
    nodes = [{"id": f"c{i}", "fullType": "t:Const", "inputs": {"value": i}} for i in range(n)]
    return convert_payload({"nodes": nodes + list(extra.values())})


async def test_the_log_of_a_finished_run_is_freed_while_the_run_is_still_held() -> None:
    scheduler = make()
    async with scheduler.running():
        prompt_id = await scheduler.submit(consts(N), ALICE)
        run = scheduler.active(prompt_id, ALICE)
        assert run is not None  # held, as a waiting caller or a socket handler holds it
        await scheduler.wait(prompt_id, ALICE, 10)
        assert run.status == "complete" and run.execution is not None
        assert live_events(prompt_id) == 0
        # Late watchers get the stored summary instead.
        replay = await scheduler.replay(prompt_id, ALICE)
        assert replay is not None and replay[-1].payload == {"promptId": prompt_id, "status": "complete"}


async def test_an_abandoned_worker_thread_does_not_keep_the_log_alive() -> None:
    scheduler = make()
    STARTED.clear()
    RELEASE.clear()
    async with scheduler.running():
        prompt_id = await scheduler.submit(consts(N, h={"id": "h", "fullType": "x:Hang"}), ALICE)
        try:
            with anyio.fail_after(10):
                while not STARTED.is_set():
                    await anyio.sleep(0.005)
                assert await scheduler.interrupt(prompt_id, ALICE)
            assert scheduler.settings.node_threads.abandoned == 1  # still running, holding its context
            assert live_events(prompt_id) == 0
        finally:
            RELEASE.set()


async def test_nothing_of_a_run_is_published_after_its_final_status() -> None:
    scheduler = make()
    seen: list[HubEvent] = []
    scheduler.hub.subscribe(max_buffer=1, accept=lambda e: seen.append(e) or False)
    async with scheduler.running():
        prompt_id = await scheduler.submit(consts(3), ALICE)
        run = scheduler.active(prompt_id, ALICE)
        assert run is not None
        await scheduler.wait(prompt_id, ALICE, 10)
        # What a late caller of the run's emit function (an abandoned thread's node) would do.
        run.emit("NODE_PROGRESS", {"promptId": prompt_id, "nodeId": "c0", "value": 1, "max": 1})
    mine = [e for e in seen if e.prompt_id == prompt_id]
    assert mine[-1].type == "EXECUTION_STATUS_UPDATE" and mine[-1].payload["status"] == "complete"
