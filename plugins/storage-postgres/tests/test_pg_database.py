from __future__ import annotations

from typing import Any

import anyio
import pytest

from comfytavern import ConfigError, Services
from comfytavern_storage_postgres.database import (
    DatabaseUnavailable,
    PostgresDatabase,
    parse_settings,
    redacted_dsn,
    shared_database,
)

STEPS = [
    "CREATE TABLE things (id TEXT PRIMARY KEY, n INTEGER NOT NULL); CREATE INDEX things_n ON things (n)",
    "ALTER TABLE things ADD COLUMN note TEXT NOT NULL DEFAULT ''",
]


@pytest.mark.anyio
@pytest.mark.postgres
async def test_migrations_apply_once_and_are_recorded(pg_settings: dict[str, Any]) -> None:
    db = PostgresDatabase(parse_settings(pg_settings))
    await db.open()
    try:
        assert await db.migrate("things", STEPS[:1]) == 1
        assert await db.migrate("things", STEPS) == 1
        assert await db.migrate("things", STEPS) == 0
        assert await db.schema_version("things") == 2
        await db.execute("INSERT INTO things (id, n) VALUES (%s, %s)", ("a", 1))
        row = await db.fetchone("SELECT id, n, note FROM things")
        assert row == {"id": "a", "n": 1, "note": ""}
        # The tables live in the configured schema, not in public.
        found = await db.fetchone(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'things'"
            " AND table_schema = %s",
            (pg_settings["schema"],),
        )
        assert found == {"table_schema": pg_settings["schema"]}
    finally:
        await db.close()


@pytest.mark.anyio
@pytest.mark.postgres
async def test_concurrent_instances_migrate_exactly_once(pg_settings: dict[str, Any]) -> None:
    """Two pools (two server instances) starting together: the advisory lock serialises them."""
    dbs = [PostgresDatabase(parse_settings(pg_settings)) for _ in range(3)]
    results: list[int] = []
    for db in dbs:
        await db.open()
    try:

        async def one(db: PostgresDatabase) -> None:
            results.append(await db.migrate("things", STEPS))

        async with anyio.create_task_group() as tg:
            for db in dbs:
                tg.start_soon(one, db)
        assert sorted(results) == [0, 0, 2]
    finally:
        for db in dbs:
            await db.close()


@pytest.mark.anyio
@pytest.mark.postgres
async def test_failed_step_leaves_nothing_behind(pg_settings: dict[str, Any]) -> None:
    db = PostgresDatabase(parse_settings(pg_settings))
    await db.open()
    try:
        bad = [STEPS[0], "ALTER TABLE no_such_table ADD COLUMN x INTEGER"]
        with pytest.raises(Exception, match="no_such_table"):
            await db.migrate("things", bad)
        assert await db.schema_version("things") == 0
        assert await db.fetchone("SELECT to_regclass('things') AS t") == {"t": None}
    finally:
        await db.close()


@pytest.mark.anyio
@pytest.mark.postgres
async def test_newer_schema_than_code_is_refused(pg_settings: dict[str, Any]) -> None:
    db = PostgresDatabase(parse_settings(pg_settings))
    await db.open()
    try:
        await db.migrate("things", STEPS)
        with pytest.raises(RuntimeError, match="newer than this code knows"):
            await db.migrate("things", STEPS[:1])
    finally:
        await db.close()


@pytest.mark.anyio
@pytest.mark.postgres
async def test_transaction_rolls_back_on_error(pg_settings: dict[str, Any]) -> None:
    db = PostgresDatabase(parse_settings(pg_settings))
    await db.open()
    try:
        await db.migrate("things", STEPS)
        with pytest.raises(ZeroDivisionError):
            async with db.transaction() as conn:
                await conn.execute("INSERT INTO things (id, n) VALUES ('x', 1)")
                raise ZeroDivisionError
        assert await db.fetchall("SELECT * FROM things") == []
    finally:
        await db.close()


@pytest.mark.anyio
@pytest.mark.postgres
async def test_shared_pool_is_reference_counted(pg_settings: dict[str, Any]) -> None:
    services = Services()
    settings = parse_settings(pg_settings)
    db = shared_database(services, settings)
    assert shared_database(services, settings) is db
    await db.open()
    await db.open()
    await db.close()
    await db.ping()  # still open: one user left
    await db.close()
    with pytest.raises(RuntimeError, match="not open"):
        await db.ping()


@pytest.mark.anyio
async def test_unreachable_server_is_a_clear_error_without_the_password() -> None:
    settings = parse_settings({"dsn": "postgresql://someone:s3cret@127.0.0.1:1/nowhere", "timeout": 1})
    db = PostgresDatabase(settings)
    with pytest.raises(DatabaseUnavailable) as info:
        await db.open()
    message = str(info.value)
    assert "cannot connect to PostgreSQL" in message
    assert "s3cret" not in message
    assert "port=1" in message


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"schema": "Bad-Name"}, "schema: must be a lower-case identifier"),
        ({"schema": "x; DROP"}, "schema"),
        ({"min_size": 5, "max_size": 2}, "min_size <= max_size"),
        ({"timeout": 0}, "timeout: must be positive"),
        ({"dsn": "host=a port"}, "dsn: not a valid connection string"),
        ({"pool": 3}, r"\$.storage.settings.postgres"),
        ({"max_size": "many"}, r"\$.storage.settings.postgres"),
    ],
)
def test_bad_settings_name_the_key(raw: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_settings(raw)


def test_redacted_dsn_drops_the_password() -> None:
    assert "pw" not in redacted_dsn("postgresql://u:pw@h:5432/db")
    assert "user=u" in redacted_dsn("postgresql://u:pw@h:5432/db")
