"""Across instances, a run's final status event arrives only once its final record can be read:
``GET /api/prompt/{id}`` on the instance that delivered ``complete`` never says ``running``.

Two kernels in one process sharing Redis and one run store (as ``test_distributed_kernels``): a
web-only instance A that queues and answers, an executing instance W. A watcher on A asks A for
the record the moment the final event reaches A's hub, as a client does on ``complete``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from comfytavern import HubEvent, Principal, StorageBackend, hookimpl
from comfytavern.engine import convert_payload, testnodes
from comfytavern.engine.scheduler import Scheduler
from comfytavern.kernel import Kernel
from comfytavern.storage.runs import MemoryRunStore, RunRecord
from comfytavern.testing import make_kernel
from comfytavern.testing_contracts.services import redis_url

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

ALICE = Principal(id="alice", username="alice")
FINAL = ("complete", "error", "interrupted")


class SlowFinalWrites(MemoryRunStore):
    """A shared run store (like PostgreSQL under load) that takes ``delay`` s to write final records."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def save(self, record: RunRecord) -> None:
        if record.finished:
            await anyio.sleep(self.delay)
        await super().save(record)


class SharedRuns:
    name = "shared-runs"

    def __init__(self, store: MemoryRunStore) -> None:
        self.store = store

    @hookimpl
    def register_storage_backends(self, kernel: Any) -> list[StorageBackend]:
        return [StorageBackend("shared", "runs", lambda kernel, settings: self.store)]


def build(tmp: Path, shared: SharedRuns, prefix: str, name: str, **dist: Any) -> Kernel:
    settings = {"enabled": True, "redis_url": redis_url(), "prefix": prefix, "instance_id": name, **dist}
    return make_kernel(
        tmp / name,
        plugins=[shared],
        node_packs=[testnodes],
        storage={"projects": None, "accounts": None, "runs": "shared"},
        plugins_config={"settings": {"distributed": settings}},
    )


def job(n: int) -> Any:
    return convert_payload({"nodes": [{"id": "c", "fullType": "t:Const", "inputs": {"value": n}}]})


async def check_on_final(a: Kernel, runs: int) -> list[tuple[str, str, str | None]]:
    """Submit ``runs`` runs on A; for each, A's record read at the moment A's hub delivers the
    final event: ``(promptId, final status, status A answered)``."""
    sa: Scheduler = a.services["scheduler"]
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
    return event.type == "EXECUTION_STATUS_UPDATE" and event.payload.get("status") in FINAL


async def test_the_final_record_is_readable_when_the_final_event_arrives(tmp_path: Path, prefix: str) -> None:
    shared = SharedRuns(MemoryRunStore())
    a = build(tmp_path, shared, prefix, "A", execute=False)
    w = build(tmp_path, shared, prefix, "W")
    async with a.lifespan(), w.lifespan():
        seen = await check_on_final(a, 20)
    assert [(status, answered) for _, status, answered in seen] == [("complete", "complete")] * 20


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


async def test_interrupted_and_failed_runs_too(tmp_path: Path, prefix: str) -> None:
    shared = SharedRuns(SlowFinalWrites(0.2))
    a = build(tmp_path, shared, prefix, "A", execute=False)
    w = build(tmp_path, shared, prefix, "W")
    async with a.lifespan(), w.lifespan():
        sa: Scheduler = a.services["scheduler"]
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
