"""SqliteRunStore on a real file: round trip, listing, trimming, crash recovery, reopening."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from comfytavern.storage.runs import RunRecord, RunStore
from comfytavern.storage.sqlite import SqliteDatabase
from comfytavern_storage_sqlite.runs import SqliteRunStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def record(n: int, owner: str = "alice", status: str = "complete") -> RunRecord:
    return RunRecord(
        prompt_id=f"p{n}",
        owner_id=owner,
        status=status,  # type: ignore[arg-type]
        submitted_at=1_000 + n // 2,  # pairs share a millisecond
        finished_at=2_000 + n if status in ("complete", "error", "interrupted") else None,
        workflow_id="wf",
        node_count=1,
        node_status={"a": {"status": "complete" if status == "complete" else "running"}},
        outputs={"a": {"text": f"out {n}", "blob": b"\x00\x01"}},
        interface_outputs={"output_0": n},
    )


def stored(n: int, **kwargs: str) -> RunRecord:
    """What comes back: JSON, so bytes are base64 text."""
    original = record(n, **kwargs)
    return msgspec.structs.replace(original, outputs={"a": {"text": f"out {n}", "blob": "AAE="}})


async def open_store(path: Path) -> SqliteRunStore:
    store = SqliteRunStore(SqliteDatabase(path))
    await store.open()
    return store


async def test_round_trip_listing_and_paging(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "db.sqlite")
    assert isinstance(store, RunStore)
    try:
        for n in range(6):
            await store.save(record(n, owner="alice" if n % 3 else "bob"))
        got = await store.get("p4")
        assert got == stored(4)
        assert await store.get("missing") is None
        listed = await store.list(owner_id=None)
        assert [r.prompt_id for r in listed] == ["p5", "p4", "p3", "p2", "p1", "p0"]
        assert listed[0].outputs == {} and listed[0].node_status == {}
        assert [r.prompt_id for r in await store.list(owner_id="bob")] == ["p3", "p0"]
        assert [r.prompt_id for r in await store.list(owner_id=None, limit=2, offset=1)] == ["p4", "p3"]
        assert await store.count(owner_id="alice") == 4
        # An update keeps the order (first save decides it).
        await store.save(record(2, status="error"))
        assert [r.prompt_id for r in await store.list(owner_id=None)][3] == "p2"
    finally:
        await store.close()


async def test_trim_keeps_the_newest_finished_runs(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "db.sqlite")
    try:
        for n in range(5):
            await store.save(record(n))
        await store.save(record(9, status="running"))
        assert await store.trim(2) == 3
        assert sorted(r.prompt_id for r in await store.list(owner_id=None)) == ["p3", "p4", "p9"]
    finally:
        await store.close()


async def test_history_survives_a_restart_and_crash_leftovers_become_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    store = await open_store(path)
    await store.save(record(1))
    await store.save(record(2, status="running"))
    await store.close()

    store = await open_store(path)
    try:
        assert await store.get("p1") == stored(1)
        assert await store.interrupt_unfinished(5_000) == 1
        fixed = await store.get("p2")
        assert fixed is not None and fixed.status == "interrupted" and fixed.finished_at == 5_000
        assert fixed.node_status["a"]["status"] == "interrupted"
        assert await store.interrupt_unfinished(6_000) == 0
    finally:
        await store.close()
