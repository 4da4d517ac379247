"""The behaviour every :class:`~comfytavern.storage.runs.RunStore` backend must have.

Subclass :class:`RunStoreContract` in a backend's tests and provide an async ``store`` fixture that
yields an opened, empty store::

    class TestMyRuns(RunStoreContract):
        @pytest.fixture
        async def store(self, tmp_path):
            store = MyRunStore(...)
            await store.open()
            yield store
            await store.close()

The module needs ``pytest`` and ``anyio`` (test dependencies) and nothing else.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from comfytavern.storage.runs import RunRecord, RunStore

__all__ = ["RunStoreContract", "run_record"]

T0 = 1_780_000_000_000


def run_record(prompt_id: str, owner: str = "alice", *, at: int = T0, status: str = "complete", **fields: Any) -> RunRecord:
    finished = None if status in ("queued", "running") else at + 50
    return RunRecord(
        prompt_id=prompt_id,
        owner_id=owner,
        status=status,  # type: ignore[arg-type]
        submitted_at=at,
        started_at=at + 1,
        finished_at=finished,
        **fields,
    )


@pytest.mark.anyio
class RunStoreContract:
    """Inherit this; provide the ``store`` fixture (see the module docstring)."""

    async def test_satisfies_the_protocol(self, store: Any) -> None:
        assert isinstance(store, RunStore)

    async def test_round_trip_of_a_full_record(self, store: Any) -> None:
        record = run_record(
            "p1",
            source="websocket",
            workflow_id="wf-1",
            workflow_name="名字",
            node_count=3,
            node_status={
                "a": {"status": "complete", "startedAt": T0, "finishedAt": T0 + 5},
                "b": {"status": "error", "error": "boom"},
                "c": {"status": "skipped", "reason": "upstream b failed"},
            },
            outputs={"a": {"text": "héllo ✓", "n": 2.5, "list": [1, None, {"x": True}]}},
            interface_outputs={"output_0": "hello"},
            error_info={"message": "1 node failed", "failedNodes": ["b"]},
            status="error",
        )
        await store.save(record)
        assert await store.get("p1") == record
        assert await store.get("missing") is None

    async def test_save_replaces_the_record(self, store: Any) -> None:
        await store.save(run_record("p1", status="running"))
        done = run_record("p1", status="complete", outputs={"a": {"v": 1}})
        await store.save(done)
        assert await store.get("p1") == done
        assert await store.count(owner_id=None) == 1

    async def test_runs_of_the_same_millisecond_keep_their_first_save_order(self, store: Any) -> None:
        for n in range(4):
            await store.save(run_record(f"p{n}", at=T0 + n // 2))  # pairs share a millisecond
        assert [r.prompt_id for r in await store.list(owner_id=None)] == ["p3", "p2", "p1", "p0"]
        await store.save(run_record("p2", at=T0 + 1, status="error"))  # an update moves nothing
        assert [r.prompt_id for r in await store.list(owner_id=None)] == ["p3", "p2", "p1", "p0"]

    async def test_list_is_newest_first_per_owner_with_paging_and_summaries(self, store: Any) -> None:
        for index in range(5):
            await store.save(run_record(f"a{index}", "alice", at=T0 + index * 10, outputs={"n": {"v": index}}))
        await store.save(run_record("b0", "bob", at=T0 + 15))
        everyone = await store.list(owner_id=None)
        assert [r.prompt_id for r in everyone] == ["a4", "a3", "a2", "b0", "a1", "a0"]
        assert all(r.outputs == {} and r.node_status == {} and r.interface_outputs is None for r in everyone)
        assert [r.prompt_id for r in await store.list(owner_id="alice", limit=2, offset=1)] == ["a3", "a2"]
        assert [r.prompt_id for r in await store.list(owner_id="bob")] == ["b0"]
        assert await store.list(owner_id="carol") == []
        assert await store.count(owner_id=None) == 6
        assert await store.count(owner_id="alice") == 5
        assert await store.count(owner_id="carol") == 0

    async def test_trim_keeps_the_newest_finished_and_every_unfinished(self, store: Any) -> None:
        for index in range(6):
            await store.save(run_record(f"f{index}", at=T0 + index * 10))
        await store.save(run_record("old-running", at=T0 - 100, status="running"))
        await store.save(run_record("old-queued", at=T0 - 200, status="queued"))
        assert await store.trim(3) == 3
        left = {r.prompt_id for r in await store.list(owner_id=None)}
        assert left == {"f5", "f4", "f3", "old-running", "old-queued"}
        assert await store.trim(3) == 0
        assert await store.trim(0) == 3
        assert {r.prompt_id for r in await store.list(owner_id=None)} == {"old-running", "old-queued"}

    async def test_trim_breaks_ties_by_insertion_order(self, store: Any) -> None:
        # Same-millisecond runs: the later saved counts as the newer one, as in the listing.
        for index in range(5):
            await store.save(run_record(f"t{index}", at=T0))
        newest = [r.prompt_id for r in await store.list(owner_id=None)][:2]
        assert await store.trim(2) == 3
        assert [r.prompt_id for r in await store.list(owner_id=None)] == newest == ["t4", "t3"]

    async def test_interrupt_unfinished_after_a_crash(self, store: Any) -> None:
        running = run_record(
            "r", status="running",
            node_status={"a": {"status": "complete"}, "b": {"status": "running"}, "c": {"status": "pending"}},
        )
        await store.save(running)
        await store.save(run_record("q", status="queued", node_status={"a": {"status": "pending"}}))
        done = run_record("d", status="complete", node_status={"a": {"status": "complete"}})
        await store.save(done)
        assert await store.interrupt_unfinished(T0 + 999) == 2
        fixed = await store.get("r")
        assert fixed is not None and fixed.status == "interrupted" and fixed.finished_at == T0 + 999
        assert fixed.node_status == {
            "a": {"status": "complete"}, "b": {"status": "interrupted"}, "c": {"status": "interrupted"},
        }
        assert (await store.get("q")).status == "interrupted"
        assert await store.get("d") == done
        assert await store.interrupt_unfinished(T0 + 1000) == 0

    async def test_summary_keeps_the_listing_fields(self, store: Any) -> None:
        record = run_record("p", workflow_id="w", workflow_name="n", node_count=7, error_info={"message": "x"}, status="error")
        await store.save(record)
        (listed,) = await store.list(owner_id="alice")
        assert listed == msgspec.structs.replace(record, node_status={}, outputs={}, interface_outputs=None)
