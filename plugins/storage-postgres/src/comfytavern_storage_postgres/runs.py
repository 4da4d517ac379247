"""``storage.runs = "postgres"``: the run history, shared by every instance and worker.

Like the SQLite store: summary columns are indexed for listings, the full record is one JSON
document per run (a status query is one primary-key read). ``seq`` orders runs submitted in the
same millisecond by their last save, exactly as SQLite's ``INSERT OR REPLACE`` does.
"""

from __future__ import annotations

from typing import Any

import msgspec

from comfytavern.engine.encoding import safe_encoder
from comfytavern.storage.runs import RunRecord
from comfytavern_storage_postgres.database import PostgresDatabase

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

_decoder = msgspec.json.Decoder(RunRecord)


def _interrupted(record: RunRecord, finished_at: int) -> RunRecord:
    node_status = {
        node_id: ({**entry, "status": "interrupted"} if entry.get("status") in ("pending", "running") else entry)
        for node_id, entry in record.node_status.items()
    }
    return msgspec.structs.replace(record, status="interrupted", finished_at=finished_at, node_status=node_status)


class PostgresRunStore:
    """Implements :class:`comfytavern.storage.runs.RunStore` on PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    async def open(self) -> None:
        await self.db.open()
        try:
            await self.db.migrate("runs", MIGRATIONS)
        except BaseException:
            await self.db.close()
            raise

    async def close(self) -> None:
        await self.db.close()

    async def save(self, record: RunRecord) -> None:
        await self.db.execute(
            "INSERT INTO runs (prompt_id, owner_id, status, submitted_at, finished_at, workflow_id, data)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (prompt_id) DO UPDATE SET owner_id = EXCLUDED.owner_id, status = EXCLUDED.status,"
            " submitted_at = EXCLUDED.submitted_at, finished_at = EXCLUDED.finished_at,"
            " workflow_id = EXCLUDED.workflow_id, data = EXCLUDED.data, seq = EXCLUDED.seq",
            (
                record.prompt_id,
                record.owner_id,
                record.status,
                record.submitted_at,
                record.finished_at,
                record.workflow_id,
                safe_encoder.encode(record),
            ),
        )

    async def get(self, prompt_id: str) -> RunRecord | None:
        row = await self.db.fetchone("SELECT data FROM runs WHERE prompt_id = %s", (prompt_id,))
        return None if row is None else _decoder.decode(row["data"])

    async def list(self, *, owner_id: str | None, limit: int = 50, offset: int = 0) -> list[RunRecord]:
        if owner_id is None:
            rows = await self.db.fetchall(
                "SELECT data FROM runs ORDER BY submitted_at DESC, seq DESC LIMIT %s OFFSET %s", (limit, offset)
            )
        else:
            rows = await self.db.fetchall(
                "SELECT data FROM runs WHERE owner_id = %s ORDER BY submitted_at DESC, seq DESC LIMIT %s OFFSET %s",
                (owner_id, limit, offset),
            )
        return [_decoder.decode(row["data"]).summary() for row in rows]

    async def count(self, *, owner_id: str | None) -> int:
        if owner_id is None:
            row = await self.db.fetchone("SELECT COUNT(*) AS n FROM runs")
        else:
            row = await self.db.fetchone("SELECT COUNT(*) AS n FROM runs WHERE owner_id = %s", (owner_id,))
        return int(row["n"]) if row is not None else 0

    async def trim(self, keep: int) -> int:
        return await self.db.execute(
            "DELETE FROM runs WHERE prompt_id IN ("
            " SELECT prompt_id FROM runs WHERE status NOT IN ('queued', 'running')"
            " ORDER BY submitted_at DESC, seq DESC OFFSET %s)",
            (max(keep, 0),),
        )

    async def interrupt_unfinished(self, finished_at: int) -> int:
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "SELECT prompt_id, data FROM runs WHERE status IN ('queued', 'running') FOR UPDATE"
            )
            rows: list[dict[str, Any]] = await cur.fetchall()
            for row in rows:
                fixed = _interrupted(_decoder.decode(row["data"]), finished_at)
                await conn.execute(
                    "UPDATE runs SET status = 'interrupted', finished_at = %s, data = %s WHERE prompt_id = %s",
                    (finished_at, safe_encoder.encode(fixed), row["prompt_id"]),
                )
            return len(rows)
