"""The storage contract suites (``comfytavern.testing_contracts``) against every backend in the
repository: the embedded ones (filesystem projects, SQLite runs; SQLite accounts run the accounts
contract in plugins/storage-sqlite) and PostgreSQL (one private schema per test). Same tests,
same expectations."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from comfytavern.storage.sqlite import SqliteDatabase
from comfytavern.testing_contracts.accounts import AccountStoreContract
from comfytavern.testing_contracts.projects import ProjectStoreContract
from comfytavern.testing_contracts.runs import RunStoreContract
from comfytavern.testing_contracts.services import postgres_dsn, postgres_schema
from comfytavern_storage_files import FileProjectStore
from comfytavern_storage_postgres.accounts import PostgresAccountStore
from comfytavern_storage_postgres.database import PostgresDatabase, parse_settings
from comfytavern_storage_postgres.projects import PostgresProjectStore
from comfytavern_storage_postgres.runs import PostgresRunStore
from comfytavern_storage_sqlite.runs import SqliteRunStore


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def pg_database() -> Iterator[PostgresDatabase]:
    with postgres_schema() as schema:
        yield PostgresDatabase(parse_settings({"dsn": postgres_dsn(), "schema": schema, "max_size": 4}))


async def _opened(store: Any) -> AsyncIterator[Any]:
    await store.open()
    try:
        yield store
    finally:
        await store.close()


# -- runs ----------------------------------------------------------------------------------------
class TestSqliteRuns(RunStoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Any]:
        async for store in _opened(SqliteRunStore(SqliteDatabase(tmp_path / "runs.sqlite"))):
            yield store


class TestPostgresRuns(RunStoreContract):
    @pytest.fixture
    async def store(self, pg_database: PostgresDatabase) -> AsyncIterator[Any]:
        async for store in _opened(PostgresRunStore(pg_database)):
            yield store


# -- accounts ------------------------------------------------------------------------------------
class TestPostgresAccounts(AccountStoreContract):
    @pytest.fixture
    async def store(self, pg_database: PostgresDatabase) -> AsyncIterator[Any]:
        async for store in _opened(PostgresAccountStore(pg_database)):
            yield store


# -- projects ------------------------------------------------------------------------------------
class TestFilesystemProjects(ProjectStoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Any]:
        store = FileProjectStore(tmp_path / "projects")
        await store.open()
        yield store


class TestPostgresProjects(ProjectStoreContract):
    @pytest.fixture
    async def store(self, pg_database: PostgresDatabase) -> AsyncIterator[Any]:
        async for store in _opened(PostgresProjectStore(pg_database)):
            yield store
