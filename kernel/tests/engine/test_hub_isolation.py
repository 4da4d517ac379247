"""A failing hub subscriber or ``on_execution_event`` observer never changes a run's outcome.

The hub's ``publish`` runs inside the engine (node events) and the scheduler (run status), so an
exception from a subscriber's ``accept`` used to fail the node it was reporting on, or end the run
with "unhandled errors in a TaskGroup", or make ``submit`` itself raise.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import pytest

import comfytavern_testnodes as testnodes
from comfytavern import HubEvent, hookimpl
from comfytavern.auth import Principal
from comfytavern.engine import Scheduler, convert_payload
from comfytavern.events import EventHub
from comfytavern.nodes.registry import NodeRegistry, RegistryHolder
from comfytavern.services import SCHEDULER
from comfytavern.storage.runs import MemoryRunStore
from comfytavern_testing import NO_STORAGE, make_kernel
from comfytavern_testnodes import NODES

pytestmark = pytest.mark.anyio

ALICE = Principal(id="alice", username="alice")

# One sync node, one async node, a stream with a consumer: every kind of event a run publishes.
PAYLOAD = {
    "nodes": [
        {"id": "c", "fullType": "t:Const", "inputs": {"value": 2}},
        {"id": "m", "fullType": "t:Mul", "inputs": {"b": 3}},
        {"id": "s", "fullType": "t:Stream", "inputs": {"parts": ["a", "b"]}},
        {"id": "k", "fullType": "t:Collect"},
        {"id": "p", "fullType": "t:Progress", "inputs": {"steps": 2}},
    ],
    "edges": [
        {"id": "e1", "sourceNodeId": "c", "sourceHandle": "value", "targetNodeId": "m", "targetHandle": "a"},
        {"id": "e2", "sourceNodeId": "s", "sourceHandle": "stream", "targetNodeId": "k", "targetHandle": "stream"},
    ],
}

EVENT_TYPES = [
    "EXECUTION_STATUS_UPDATE", "NODE_EXECUTING", "NODE_COMPLETE", "NODE_YIELD", "NODE_PROGRESS", "SYSTEM_QUEUE_UPDATE",
]


@pytest.mark.parametrize("failing_on", EVENT_TYPES)
async def test_a_raising_subscriber_does_not_change_the_run(failing_on: str, caplog: pytest.LogCaptureFixture) -> None:
    hub = EventHub()

    def bad(event: HubEvent) -> bool:
        if event.type == failing_on:
            raise RuntimeError("subscriber bug")
        return False

    seen: list[HubEvent] = []
    # Subscribed on both sides of the bad one: set order is arbitrary, every other must get all.
    hub.subscribe(max_buffer=1, accept=lambda e: seen.append(e) or False)
    hub.subscribe(max_buffer=1, accept=bad)
    after: list[HubEvent] = []
    hub.subscribe(max_buffer=1, accept=lambda e: after.append(e) or False)
    scheduler = Scheduler(hub=hub, registry=RegistryHolder(NodeRegistry.build([("t", "t", NODES)])), store=MemoryRunStore())
    with caplog.at_level(logging.ERROR, logger="comfytavern.events"):
        async with scheduler.running():
            prompt_id = await scheduler.submit(convert_payload(PAYLOAD), ALICE)
            with anyio.fail_after(10):
                record = await scheduler.wait(prompt_id, ALICE, 10)
    assert record is not None
    assert record.status == "complete", record.error_info
    assert {node: entry["status"] for node, entry in record.node_status.items()} == dict.fromkeys("cmskp", "complete")
    assert record.outputs["m"] == {"result": 6} and record.outputs["k"]["text"] == "ab"
    for events in (seen, after):
        statuses = [e.payload["status"] for e in events if e.type == "EXECUTION_STATUS_UPDATE"]
        assert statuses == ["running", "complete"]
        assert [e.type for e in events] == [e.type for e in seen]
    failures = sum(n for name, n in hub.failures.items() if name.startswith("subscriber:"))
    assert failures == sum(1 for e in seen if e.type == failing_on) > 0
    assert "subscriber" in caplog.text and "subscriber bug" in caplog.text


async def test_a_subscriber_failing_on_every_event_logs_only_a_few_times(caplog: pytest.LogCaptureFixture) -> None:
    hub = EventHub()
    hub.subscribe(max_buffer=1, accept=lambda e: 1 / 0)  # type: ignore[arg-type, return-value]
    with caplog.at_level(logging.ERROR, logger="comfytavern.events"):
        for i in range(1000):
            hub.emit("PING", {"i": i})
    assert sum(hub.failures.values()) == 1000
    assert len(caplog.records) == 10  # failures 1, 2, 4, ... 512


async def test_failing_observers_are_counted_and_runs_go_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    class Raising:
        name = "raising-observer"

        @hookimpl
        def on_execution_event(self, event: HubEvent) -> None:
            if event.type == "NODE_COMPLETE":
                raise RuntimeError("observer bug")

    class Exiting:
        """A stray ``sys.exit()`` (an argparse error in a plugin) must not end the server's task group."""

        name = "exiting-observer"

        @hookimpl
        async def on_execution_event(self, event: HubEvent) -> None:
            if event.type == "NODE_EXECUTING":
                raise SystemExit(2)

    class Recording:
        name = "recording-observer"

        @hookimpl
        def on_execution_event(self, event: HubEvent) -> None:
            if event.prompt_id is not None:
                seen.append(event.type)

    kernel = make_kernel(
        tmp_path, storage=NO_STORAGE, plugins=[Raising(), Exiting(), Recording()], node_packs=[testnodes]
    )
    with caplog.at_level(logging.ERROR, logger="comfytavern.observers"):
        async with kernel.lifespan():
            scheduler: Scheduler = kernel.services.require(SCHEDULER)
            records: list[Any] = []
            for _ in range(3):
                prompt_id = await scheduler.submit(convert_payload(PAYLOAD), ALICE)
                with anyio.fail_after(10):
                    records.append(await scheduler.wait(prompt_id, ALICE, 10))
            with anyio.fail_after(10):
                while seen.count("EXECUTION_STATUS_UPDATE") < 6:
                    await anyio.sleep(0.01)
            assert kernel.ready
    assert [r.status for r in records] == ["complete"] * 3
    # Every node of every run was reported to the observers after the failing ones.
    assert seen.count("NODE_COMPLETE") == 3 * 5 and seen.count("NODE_EXECUTING") == 3 * 5
    assert kernel.hub.failures["observer:raising-observer"] == 15
    assert kernel.hub.failures["observer:exiting-observer"] == 15
    assert "raising-observer" in caplog.text and "exiting-observer" in caplog.text


def test_a_subscription_limited_to_types_is_offered_nothing_else() -> None:
    from comfytavern.events import EventHub, HubEvent

    hub = EventHub()
    asked: list[str] = []

    def accept(event: HubEvent) -> bool:
        asked.append(event.type)
        return event.payload.get("keep", True)

    sub = hub.subscribe(types={"A", "B"}, accept=accept)
    everything = hub.subscribe()
    for type_, keep in (("A", True), ("C", True), ("B", False), ("B", True), ("D", True)):
        hub.publish(HubEvent(type_, {"keep": keep}))
    assert asked == ["A", "B", "B"]  # C and D never reach accept
    assert [e.type for e in iter(sub.get_nowait, None)] == ["A", "B"]
    assert [e.type for e in iter(everything.get_nowait, None)] == ["A", "C", "B", "B", "D"]


def test_unframed_types_skip_the_encoded_events_of_those_types() -> None:
    hub = EventHub()
    asked: list[str] = []

    def accept(event: HubEvent) -> bool:
        asked.append(event.type)
        return True

    sub = hub.subscribe(types={"S", "N"}, unframed_types={"N"}, accept=accept)
    everything = hub.subscribe()
    hub.publish(HubEvent("N", {"n": 1}, "run", None, b'{"type":"N"}'))  # a local run's: skipped
    hub.publish(HubEvent("N", {"n": 2}, "run"))  # relayed (no frame): offered
    hub.publish(HubEvent("S", {"n": 3}, "run", None, b'{"type":"S"}'))  # framed, not listed: offered
    hub.publish(HubEvent("X", {"n": 4}))  # not in types
    assert asked == ["N", "S"]  # the skipped ones never reach accept
    assert [e.payload["n"] for e in iter(sub.get_nowait, None)] == [2, 3]
    assert [e.payload["n"] for e in iter(everything.get_nowait, None)] == [1, 2, 3, 4]
