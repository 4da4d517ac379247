"""What the scheduler retains in memory is bounded in bytes and kept as encoded JSON.

Before, every finished run's full record (a dict per node) stayed in memory up to a count limit
(memory grew ~0.5 MiB per 1000-node run and gen-2 collections stalled the loop), and a run's
event log was bounded only by an event count.
"""

from __future__ import annotations

from typing import Any

import anyio
import msgspec
import pytest

from comfytavern.auth import Principal
from comfytavern.config import ExecutionConfig
from comfytavern.engine import Scheduler, convert_payload
from comfytavern.engine.retained import REPLAY_TRUNCATED, RecentRuns, ReplayLog
from comfytavern.events import EventHub, HubEvent
from comfytavern.nodes.registry import NodeRegistry, RegistryHolder
from comfytavern.storage.runs import MemoryRunStore, RunRecord
from comfytavern_testnodes import NODES

pytestmark = pytest.mark.anyio

ALICE = Principal(id="alice", username="alice")


def make(**kwargs: Any) -> Scheduler:
    registry = RegistryHolder(NodeRegistry.build([("t", "t", NODES)]))
    return Scheduler(hub=EventHub(), registry=registry, store=MemoryRunStore(), **kwargs)


def chain(n: int, **first: Any) -> Any:
    nodes = [{"id": "n0", "fullType": "t:Sleep", "inputs": {"seconds": 0.0, **first}}]
    edges = []
    for i in range(1, n):
        nodes.append({"id": f"n{i}", "fullType": "t:Sleep", "inputs": {"seconds": 0.0}})
        edges.append({"id": f"e{i}", "sourceNodeId": f"n{i - 1}", "sourceHandle": "value",
                      "targetNodeId": f"n{i}", "targetHandle": "value"})
    return convert_payload({"nodes": nodes, "edges": edges})


def test_the_defaults_are_the_documented_ones() -> None:
    cfg = ExecutionConfig()
    assert cfg.replay_max_bytes == 8 * 1024 * 1024
    assert cfg.recent_runs_max_bytes == 8 * 1024 * 1024


def test_the_replay_log_drops_the_oldest_frames_beyond_its_bytes() -> None:
    log = ReplayLog(100)
    frames = [msgspec.json.encode({"type": "X", "payload": {"promptId": "p", "i": i}}) for i in range(20)]
    for frame in frames:
        log.append(frame)
    assert log.size <= 100 and log.size == sum(len(f) for f in log.frames)
    kept = len(log)
    assert log.dropped == 20 - kept and list(log.frames) == frames[-kept:]
    events = log.events("p", "alice")
    assert events[0].type == REPLAY_TRUNCATED and events[0].payload == {"promptId": "p", "droppedEvents": 20 - kept}
    assert [e.payload["i"] for e in events[1:]] == list(range(20 - kept, 20))
    assert all(e.frame is not None and msgspec.json.decode(e.frame)["payload"] == e.payload for e in events)
    # One frame bigger than the budget is still kept (the newest event is never lost).
    big = ReplayLog(10)
    big.append(frames[0])
    assert list(big.frames) == [frames[0]] and big.dropped == 0


def test_recent_runs_are_bounded_in_bytes_and_decode_to_the_same_record() -> None:
    recent = RecentRuns(max_bytes=2000, max_count=1000)
    records = [
        RunRecord(prompt_id=f"p{i}", owner_id="alice", status="complete", submitted_at=i,
                  node_status={f"n{j}": {"status": "complete"} for j in range(10)},
                  outputs={f"n{j}": {"value": j} for j in range(10)})
        for i in range(50)
    ]
    for record in records:
        recent.put(record)
    assert recent.size <= 2000 and 1 <= len(recent) < 50
    assert "p49" in recent and "p0" not in recent and recent.get("p0") is None
    assert recent.get("p49") == records[-1]
    # Replacing a record keeps the byte count exact.
    recent.put(records[-1])
    assert recent.size == sum(len(v) for v in recent._items.values())


async def test_a_late_watcher_of_a_long_run_is_told_its_replay_was_truncated() -> None:
    scheduler = make(replay_max_bytes=4096)
    async with scheduler.running():
        prompt_id = await scheduler.submit(chain(300, value=1), ALICE)
        run = scheduler.active(prompt_id, ALICE)
        assert run is not None and run.log is not None
        with anyio.fail_after(10):
            while run.log.dropped == 0:
                await anyio.sleep(0.001)
        replay = await scheduler.replay(prompt_id, ALICE)
        assert replay is not None
        assert replay[0].type == REPLAY_TRUNCATED and replay[0].payload["droppedEvents"] > 0
        assert replay[0].payload["promptId"] == prompt_id
        assert sum(len(e.frame or b"") for e in replay[1:]) <= 4096
        assert all(e.prompt_id == prompt_id for e in replay)
        await scheduler.wait(prompt_id, ALICE, 10)


async def test_a_short_run_replays_whole_and_its_events_carry_their_encoded_frame() -> None:
    scheduler = make()
    seen: list[HubEvent] = []
    scheduler.hub.subscribe(max_buffer=1, accept=lambda e: seen.append(e) or False)
    async with scheduler.running():
        prompt_id = await scheduler.submit(chain(3, value=1), ALICE)
        await scheduler.wait(prompt_id, ALICE, 10)
    mine = [e for e in seen if e.prompt_id == prompt_id]
    assert mine and all(e.frame is not None for e in mine)
    assert all(msgspec.json.decode(e.frame or b"") == {"type": e.type, "payload": e.payload} for e in mine)


async def test_memory_of_finished_runs_stays_under_its_byte_budget() -> None:
    scheduler = make(recent_runs_max_bytes=20_000, history_size=500)
    async with scheduler.running():
        ids = [await scheduler.submit(chain(50, value=1), ALICE) for _ in range(30)]
        for prompt_id in ids:
            await scheduler.wait(prompt_id, ALICE, 10)
        assert scheduler._recent.size <= 20_000 and len(scheduler._recent) < 30
        # An evicted run is still answered, from the history store.
        await scheduler.flush()
        record = await scheduler.get(ids[0], ALICE)
        assert record is not None and record.status == "complete" and len(record.node_status) == 50
