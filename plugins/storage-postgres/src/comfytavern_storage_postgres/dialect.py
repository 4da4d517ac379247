"""The PostgreSQL side of :class:`comfytavern_sqlstores.SqlDialect`, on a psycopg 3 pool.

Statements arrive with ``?`` placeholders and are sent with ``%s``; timestamps are ``TIMESTAMPTZ``
(timezone-aware on the way back); a ``BIGSERIAL`` ``seq`` column breaks ties in insertion order.
Integrity errors are mapped by constraint name, which the migrations fix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from comfytavern_sqlstores import ConflictField, Row
from comfytavern_storage_postgres.database import PostgresDatabase

__all__ = ["PostgresDialect"]


def _q(sql: str) -> str:
    """``?`` placeholders to psycopg's ``%s`` (the shared statements contain no literal ``?`` or ``%``)."""
    return sql.replace("?", "%s")


class PostgresDialect:
    tiebreak = "seq"
    offset_only = "OFFSET ?"

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    async def open(self, component: str, migrations: Sequence[str]) -> None:
        await self.db.open()
        try:
            await self.db.migrate(component, migrations)
        except BaseException:
            await self.db.close()
            raise

    async def close(self) -> None:
        await self.db.close()

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return await self.db.execute(_q(sql), params)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return await self.db.fetchone(_q(sql), params)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return list(await self.db.fetchall(_q(sql), params))

    async def rewrite_rows(self, select: str, update: str, params_for: Callable[[Row], Sequence[Any]]) -> int:
        async with self.db.transaction() as conn:
            cur = await conn.execute(_q(select) + " FOR UPDATE")
            rows: list[dict[str, Any]] = await cur.fetchall()
            for row in rows:
                await conn.execute(_q(update), params_for(row))
        return len(rows)

    def ts_to_db(self, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value

    def ts_from_db(self, value: Any) -> datetime:
        return value  # type: ignore[no-any-return]

    def json_to_db(self, value: Any) -> Jsonb:
        return Jsonb(value)

    def json_from_db(self, value: Any) -> Any:
        return value

    def conflict_field(self, exc: BaseException) -> ConflictField | None:
        if not isinstance(exc, psycopg.IntegrityError):
            return None
        constraint = getattr(exc.diag, "constraint_name", None) or ""
        if constraint == "users_username_unique":
            return "username"
        if constraint == "service_api_keys_lookup_unique":
            return "lookup_id"
        if isinstance(exc, psycopg.errors.ForeignKeyViolation):
            return "user_id"
        return "id"
