"""``SqlRunStore``: the run history on any :class:`SqlDialect`.

Summary columns are indexed for listings; the full record (per-node statuses and outputs) is one
JSON document per run, so a status query is a single primary-key read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from comfytavern.engine.encoding import safe_encoder
from comfytavern.storage.runs import RunRecord, interrupted
from comfytavern_sqlstores.dialect import Row, SqlDialect

__all__ = ["SqlRunStore"]

_decoder = msgspec.json.Decoder(RunRecord)


class SqlRunStore:
    """Implements :class:`comfytavern.storage.runs.RunStore` on a SQL dialect."""

    def __init__(self, dialect: SqlDialect, migrations: Sequence[str]) -> None:
        self.dialect = dialect
        self.migrations = migrations

    async def open(self) -> None:
        await self.dialect.open("runs", self.migrations)

    async def close(self) -> None:
        await self.dialect.close()

    async def save(self, record: RunRecord) -> None:
        await self.dialect.execute(
            "INSERT INTO runs (prompt_id, owner_id, status, submitted_at, finished_at, workflow_id, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (prompt_id) DO UPDATE SET owner_id = EXCLUDED.owner_id,"
            " status = EXCLUDED.status, submitted_at = EXCLUDED.submitted_at, finished_at = EXCLUDED.finished_at,"
            " workflow_id = EXCLUDED.workflow_id, data = EXCLUDED.data",
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
        row = await self.dialect.fetchone("SELECT data FROM runs WHERE prompt_id = ?", (prompt_id,))
        return None if row is None else _decoder.decode(row["data"])

    async def list(self, *, owner_id: str | None, limit: int = 50, offset: int = 0) -> list[RunRecord]:
        order = f"ORDER BY submitted_at DESC, {self.dialect.tiebreak} DESC LIMIT ? OFFSET ?"
        if owner_id is None:
            rows = await self.dialect.fetchall(f"SELECT data FROM runs {order}", (limit, offset))
        else:
            rows = await self.dialect.fetchall(
                f"SELECT data FROM runs WHERE owner_id = ? {order}", (owner_id, limit, offset)
            )
        return [_decoder.decode(row["data"]).summary() for row in rows]

    async def count(self, *, owner_id: str | None) -> int:
        if owner_id is None:
            row = await self.dialect.fetchone("SELECT COUNT(*) AS n FROM runs")
        else:
            row = await self.dialect.fetchone("SELECT COUNT(*) AS n FROM runs WHERE owner_id = ?", (owner_id,))
        return int(row["n"]) if row is not None else 0

    async def trim(self, keep: int) -> int:
        # The oldest finished records beyond ``keep``, counted by the statement itself: after
        # every run there is at most one, and when there is none the statement reads only the
        # status index instead of walking and sorting the newest ``keep`` records.
        finished = "FROM runs WHERE status NOT IN ('queued', 'running')"
        keep = max(keep, 0)
        return await self.dialect.execute(
            f"DELETE FROM runs WHERE prompt_id IN (SELECT prompt_id {finished}"
            f" ORDER BY submitted_at ASC, {self.dialect.tiebreak} ASC"
            f" LIMIT (SELECT CASE WHEN COUNT(*) > ? THEN COUNT(*) - ? ELSE 0 END {finished}))",
            (keep, keep),
        )

    async def interrupt_unfinished(self, finished_at: int) -> int:
        def params(row: Row) -> tuple[Any, ...]:
            fixed = interrupted(_decoder.decode(row["data"]), finished_at)
            return (finished_at, safe_encoder.encode(fixed), row["prompt_id"])

        return await self.dialect.rewrite_rows(
            "SELECT prompt_id, data FROM runs WHERE status IN ('queued', 'running')",
            "UPDATE runs SET status = 'interrupted', finished_at = ?, data = ? WHERE prompt_id = ?",
            params,
        )
