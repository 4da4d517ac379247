"""``storage.runs = "sqlite"``: the run history in the shared SQLite file.

The store logic is :class:`comfytavern_sqlstores.SqlRunStore`; this module holds only the
schema and wires in :class:`SqliteDialect` (``rowid`` orders same-millisecond runs; an upsert keeps it).
"""

from __future__ import annotations

from comfytavern_sqlstores import SqlRunStore
from comfytavern_storage_sqlite.database import SqliteDatabase
from comfytavern_storage_sqlite.dialect import SqliteDialect

__all__ = ["MIGRATIONS", "SqliteRunStore"]

MIGRATIONS = [
    """
    CREATE TABLE runs (
        prompt_id TEXT PRIMARY KEY,
        owner_id TEXT NOT NULL,
        status TEXT NOT NULL,
        submitted_at INTEGER NOT NULL,
        finished_at INTEGER,
        workflow_id TEXT,
        data BLOB NOT NULL
    );
    CREATE INDEX runs_owner_submitted ON runs (owner_id, submitted_at DESC);
    CREATE INDEX runs_submitted ON runs (submitted_at DESC);
    CREATE INDEX runs_status ON runs (status)
    """,
]


class SqliteRunStore(SqlRunStore):
    """Implements :class:`comfytavern.storage.runs.RunStore` on SQLite."""

    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__(SqliteDialect(db), MIGRATIONS)
        self.db = db
