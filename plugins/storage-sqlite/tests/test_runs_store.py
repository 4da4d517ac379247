"""SqliteRunStore on a real file: the shared RunStore contract, plus what only this backend has
(JSON documents, order of same-millisecond runs across updates, history surviving a restart)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from comfytavern.storage.runs import RunRecord
from comfytavern_storage_sqlite.database import SqliteDatabase
from comfytavern_storage_sqlite.runs import SqliteRunStore
from comfytavern_testing_contracts.runs import RunStoreContract, run_record


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def open_store(path: Path) -> SqliteRunStore:
    store = SqliteRunStore(SqliteDatabase(path))
    await store.open()
    return store


class TestSqliteRunStoreContract(RunStoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SqliteRunStore]:
        store = await open_store(tmp_path / "runs.sqlite")
        yield store
        await store.close()


def with_blob(prompt_id: str, at: int) -> RunRecord:
    return run_record(prompt_id, at=at, outputs={"a": {"text": f"out {prompt_id}", "blob": b"\x00\x01"}})


@pytest.mark.anyio
async def test_documents_are_json(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "db.sqlite")
    try:
        for n in range(4):
            await store.save(with_blob(f"p{n}", at=1_000 + n // 2))  # pairs share a millisecond
        # What comes back is JSON: bytes are base64 text.
        assert (await store.get("p1")).outputs == {"a": {"text": "out p1", "blob": "AAE="}}  # type: ignore[union-attr]
    finally:
        await store.close()


@pytest.mark.anyio
async def test_history_survives_a_restart_and_crash_leftovers_become_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    store = await open_store(path)
    done = run_record("p1")
    await store.save(done)
    await store.save(run_record("p2", status="running", node_status={"a": {"status": "running"}}))
    await store.close()

    store = await open_store(path)
    try:
        assert await store.get("p1") == done
        assert await store.interrupt_unfinished(5_000) == 1
        fixed = await store.get("p2")
        assert fixed is not None and fixed.status == "interrupted" and fixed.node_status["a"]["status"] == "interrupted"
    finally:
        await store.close()
