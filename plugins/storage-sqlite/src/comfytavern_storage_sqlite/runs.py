"""``storage.runs = "sqlite"``: the run history in the shared SQLite file.

Summary columns are indexed for listings; the full record (per-node statuses and outputs) is one
JSON document per run, so a status query is a single primary-key read.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from comfytavern.engine.encoding import safe_encoder
from comfytavern.storage.runs import RunRecord
from comfytavern.storage.sqlite import SqliteDatabase

__all__ = ["SqliteRunStore"]

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

_decoder = msgspec.json.Decoder(RunRecord)
_UNFINISHED = ("queued", "running")


class SqliteRunStore:
    """Implements :class:`comfytavern.storage.runs.RunStore`."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def open(self) -> None:
        await self.db.open()
        await self.db.migrate("runs", MIGRATIONS)

    async def close(self) -> None:
        await self.db.close()

    async def save(self, record: RunRecord) -> None:
        await self.db.execute(
            # An upsert keeps the row id, so runs submitted in the same millisecond keep their order.
            "INSERT INTO runs (prompt_id, owner_id, status, submitted_at, finished_at, workflow_id, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (prompt_id) DO UPDATE SET owner_id = excluded.owner_id,"
            " status = excluded.status, submitted_at = excluded.submitted_at, finished_at = excluded.finished_at,"
            " workflow_id = excluded.workflow_id, data = excluded.data",
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
        row = await self.db.fetchone("SELECT data FROM runs WHERE prompt_id = ?", (prompt_id,))
        return None if row is None else _decoder.decode(row["data"])

    async def list(self, *, owner_id: str | None, limit: int = 50, offset: int = 0) -> list[RunRecord]:
        if owner_id is None:
            rows = await self.db.fetchall(
                "SELECT data FROM runs ORDER BY submitted_at DESC, rowid DESC LIMIT ? OFFSET ?", (limit, offset)
            )
        else:
            rows = await self.db.fetchall(
                "SELECT data FROM runs WHERE owner_id = ? ORDER BY submitted_at DESC, rowid DESC LIMIT ? OFFSET ?",
                (owner_id, limit, offset),
            )
        return [_decoder.decode(row["data"]).summary() for row in rows]

    async def count(self, *, owner_id: str | None) -> int:
        if owner_id is None:
            row = await self.db.fetchone("SELECT COUNT(*) AS n FROM runs")
        else:
            row = await self.db.fetchone("SELECT COUNT(*) AS n FROM runs WHERE owner_id = ?", (owner_id,))
        return int(row["n"]) if row is not None else 0

    async def trim(self, keep: int) -> int:
        return await self.db.execute(
            "DELETE FROM runs WHERE prompt_id IN ("
            " SELECT prompt_id FROM runs WHERE status NOT IN ('queued', 'running')"
            " ORDER BY submitted_at DESC, rowid DESC LIMIT -1 OFFSET ?)",
            (max(keep, 0),),
        )

    async def interrupt_unfinished(self, finished_at: int) -> int:
        def fix(conn: sqlite3.Connection) -> int:
            rows = conn.execute(
                "SELECT prompt_id, data FROM runs WHERE status IN (?, ?)", _UNFINISHED
            ).fetchall()
            for row in rows:
                record: Any = _decoder.decode(row["data"])
                node_status = {
                    node_id: ({**entry, "status": "interrupted"} if entry.get("status") in ("pending", "running") else entry)
                    for node_id, entry in record.node_status.items()
                }
                fixed = msgspec.structs.replace(
                    record, status="interrupted", finished_at=finished_at, node_status=node_status
                )
                conn.execute(
                    "UPDATE runs SET status = 'interrupted', finished_at = ?, data = ? WHERE prompt_id = ?",
                    (finished_at, safe_encoder.encode(fixed), row["prompt_id"]),
                )
            return len(rows)

        return await self.db.run(fix)
