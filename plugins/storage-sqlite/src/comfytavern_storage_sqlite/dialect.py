"""The SQLite side of :class:`comfytavern_sqlstores.SqlDialect`, on the kernel's ``SqliteDatabase``.

Timestamps are stored as fixed-width ISO-8601 UTC text, so SQL comparisons and ``ORDER BY`` on
them are chronological; ``rowid`` breaks ties in insertion order (an upsert keeps it).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import msgspec

from comfytavern_sqlstores import ConflictField, Row
from comfytavern_storage_sqlite.database import SqliteDatabase

__all__ = ["SqliteDialect"]


class SqliteDialect:
    """SQLite's placeholders are already ``?``; statements pass through unchanged."""

    tiebreak = "rowid"
    offset_only = "LIMIT -1 OFFSET ?"

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def open(self, component: str, migrations: Sequence[str]) -> None:
        await self.db.open()
        await self.db.migrate(component, migrations)

    async def close(self) -> None:
        await self.db.close()

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return await self.db.execute(sql, params)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        # fetchall so a ``RETURNING`` statement runs to completion and its autocommit ends.
        rows = await self.db.fetchall(sql, params)
        return cast("Row", rows[0]) if rows else None

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        # sqlite3.Row reads like a mapping (keys() and row[name]) without being one to typeshed.
        return cast("list[Row]", list(await self.db.fetchall(sql, params)))

    async def rewrite_rows(self, select: str, update: str, params_for: Callable[[Row], Sequence[Any]]) -> int:
        def rewrite(conn: sqlite3.Connection) -> int:
            rows = conn.execute(select).fetchall()
            for row in rows:
                conn.execute(update, params_for(row))
            return len(rows)

        return await self.db.run(rewrite)

    def ts_to_db(self, value: datetime) -> str:
        """Fixed-width UTC text (microseconds, ``Z``): sorts and compares chronologically."""
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def ts_from_db(self, value: Any) -> datetime:
        return datetime.fromisoformat(value)

    def json_to_db(self, value: Any) -> str:
        return msgspec.json.encode(value).decode("utf-8")

    def json_from_db(self, value: Any) -> Any:
        return msgspec.json.decode(value)

    def conflict_field(self, exc: BaseException) -> ConflictField | None:
        if not isinstance(exc, sqlite3.IntegrityError):
            return None
        text = str(exc)
        if "username_key" in text:
            return "username"
        if "lookup_id" in text:
            return "lookup_id"
        if "FOREIGN KEY" in text:
            return "user_id"
        return "id"
