"""``storage.runs = "postgres"``: the run history, shared by every instance and worker.

The store logic is :class:`comfytavern_sqlstores.SqlRunStore`; this module holds only the
schema. ``seq`` orders runs submitted in the same millisecond by their first save, as SQLite does.
"""

from __future__ import annotations

from comfytavern_sqlstores import SqlRunStore
from comfytavern_storage_postgres.database import PostgresDatabase
from comfytavern_storage_postgres.dialect import PostgresDialect

__all__ = ["MIGRATIONS", "PostgresRunStore"]

MIGRATIONS = [
    """
    CREATE TABLE runs (
        prompt_id TEXT PRIMARY KEY,
        owner_id TEXT NOT NULL,
        status TEXT NOT NULL,
        submitted_at BIGINT NOT NULL,
        finished_at BIGINT,
        workflow_id TEXT,
        seq BIGSERIAL NOT NULL,
        data BYTEA NOT NULL
    );
    CREATE INDEX runs_owner_submitted ON runs (owner_id, submitted_at DESC, seq DESC);
    CREATE INDEX runs_submitted ON runs (submitted_at DESC, seq DESC);
    CREATE INDEX runs_unfinished ON runs (status) WHERE status IN ('queued', 'running')
    """,
]


class PostgresRunStore(SqlRunStore):
    """Implements :class:`comfytavern.storage.runs.RunStore` on PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        super().__init__(PostgresDialect(db), MIGRATIONS)
        self.db = db
