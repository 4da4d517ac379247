"""The plugin as the kernel sees it: three backends named ``postgres`` sharing one pool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from comfytavern.storage.runs import RunRecord
from comfytavern_storage_postgres.database import POSTGRES_DATABASES, PostgresDatabase
from comfytavern_testing import make_kernel


def pg_kernel(tmp_path: Path, settings: dict[str, Any]) -> Any:
    return make_kernel(
        tmp_path,
        storage={"projects": "postgres", "accounts": "postgres", "runs": "postgres", "settings": {"postgres": settings}},
    )


@pytest.mark.anyio
@pytest.mark.postgres
async def test_three_stores_share_one_pool_and_migrate(tmp_path: Path, pg_settings: dict[str, Any]) -> None:
    kernel = pg_kernel(tmp_path, pg_settings)
    pools = [v for v in kernel.services.require(POSTGRES_DATABASES).values() if isinstance(v, PostgresDatabase)]
    assert len(pools) == 1
    db = pools[0]
    assert kernel.storage.projects.db is db and kernel.storage.accounts.db is db and kernel.storage.runs.db is db
    async with kernel.lifespan():
        assert {c: await db.schema_version(c) for c in ("projects", "accounts", "runs")} == {
            "projects": 1, "accounts": 1, "runs": 1,
        }
        await kernel.storage.runs.save(RunRecord(prompt_id="p", owner_id="u", status="complete", submitted_at=1))
        assert (await kernel.storage.runs.get("p")).owner_id == "u"  # type: ignore[union-attr]
    # Closed with the kernel; a second kernel on the same schema finds its data.
    with pytest.raises(RuntimeError, match="not open"):
        await db.ping()
    again = pg_kernel(tmp_path, pg_settings)
    async with again.lifespan():
        assert (await again.storage.runs.get("p")) is not None


def test_bad_settings_stop_start_up_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"storage.settings.postgres.schema"):
        pg_kernel(tmp_path, {"schema": "no-dashes"})


@pytest.mark.anyio
async def test_unreachable_database_stops_start_up(tmp_path: Path) -> None:
    kernel = pg_kernel(tmp_path, {"dsn": "postgresql://postgres@127.0.0.1:1/x", "timeout": 1})
    with pytest.raises(Exception, match="cannot connect to PostgreSQL"):
        async with kernel.lifespan():
            pass


def test_backends_are_listed_by_name(tmp_path: Path) -> None:
    kernel = make_kernel(tmp_path, storage={"projects": None, "accounts": None, "runs": None})
    names = {(kind, name) for kind, name in kernel.storage_backends}
    assert {("projects", "postgres"), ("accounts", "postgres"), ("runs", "postgres")} <= names
