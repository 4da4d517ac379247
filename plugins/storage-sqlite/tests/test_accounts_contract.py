"""The SQLite accounts store against the shared AccountStore contract, plus SQLite specifics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from comfytavern.storage.accounts import AccountStore, UserRecord, utc_now
from comfytavern_storage_sqlite.accounts import MIGRATIONS, SqliteAccountStore
from comfytavern_storage_sqlite.database import SqliteDatabase
from comfytavern_testing_contracts.accounts import AccountStoreContract


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class TestSqliteAccountStore(AccountStoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SqliteAccountStore]:
        store = SqliteAccountStore(SqliteDatabase(tmp_path / "accounts.sqlite"))
        await store.open()
        yield store
        await store.close()


@pytest.mark.anyio
async def test_implements_the_protocol_and_migrates_once(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    store = SqliteAccountStore(SqliteDatabase(path))
    assert isinstance(store, AccountStore)
    await store.open()
    await store.create_user(UserRecord(id="u1", username="Alice", created_at=utc_now()))
    await store.close()
    # A second start applies nothing again and keeps the data (WAL file on disk).
    again = SqliteAccountStore(SqliteDatabase(path))
    await again.open()
    assert await again.db.migrate("accounts", MIGRATIONS) == 0
    assert (await again.get_user("u1")) is not None
    row = await again.db.fetchone("PRAGMA journal_mode")
    assert row is not None and row[0] == "wal"
    await again.close()


@pytest.mark.anyio
async def test_naive_timestamps_are_refused(tmp_path: Path) -> None:
    from datetime import datetime

    store = SqliteAccountStore(SqliteDatabase(tmp_path / "db.sqlite"))
    await store.open()
    try:
        with pytest.raises(ValueError, match="timezone-aware"):
            await store.create_user(UserRecord(id="u1", username="A", created_at=datetime(2026, 1, 1)))
    finally:
        await store.close()
