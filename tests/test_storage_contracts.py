"""The storage contract suites (``comfytavern_testing_contracts``) against PostgreSQL (one private
schema per test) and the kernel's in-memory run history (``storage.runs: null``). The embedded backends run the same suites in their own plugin's tests
(plugins/storage-files: projects; plugins/storage-sqlite: runs and accounts). Same tests, same
expectations."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from comfytavern.storage.runs import MemoryRunStore
from comfytavern_storage_postgres.accounts import PostgresAccountStore
from comfytavern_storage_postgres.database import PostgresDatabase, parse_settings
from comfytavern_storage_postgres.projects import PostgresProjectStore
from comfytavern_storage_postgres.runs import PostgresRunStore
from comfytavern_testing_contracts.accounts import AccountStoreContract
from comfytavern_testing_contracts.projects import ProjectStoreContract
from comfytavern_testing_contracts.runs import RunStoreContract
from comfytavern_testing_contracts.services import postgres_dsn, postgres_schema


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
class TestMemoryRuns(RunStoreContract):
    @pytest.fixture
    async def store(self) -> MemoryRunStore:
        return MemoryRunStore()


@pytest.mark.postgres
class TestPostgresRuns(RunStoreContract):
    @pytest.fixture
    async def store(self, pg_database: PostgresDatabase) -> AsyncIterator[Any]:
        async for store in _opened(PostgresRunStore(pg_database)):
            yield store


# -- accounts ------------------------------------------------------------------------------------
@pytest.mark.postgres
class TestPostgresAccounts(AccountStoreContract):
    @pytest.fixture
    async def store(self, pg_database: PostgresDatabase) -> AsyncIterator[Any]:
        async for store in _opened(PostgresAccountStore(pg_database)):
            yield store


# -- projects ------------------------------------------------------------------------------------
@pytest.mark.postgres
class TestPostgresProjects(ProjectStoreContract):
    @pytest.fixture
    async def store(self, pg_database: PostgresDatabase) -> AsyncIterator[Any]:
        async for store in _opened(PostgresProjectStore(pg_database)):
            yield store
