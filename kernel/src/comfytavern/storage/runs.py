"""The run history: what a ``runs`` storage backend stores, and an in-memory fallback.

The scheduler writes a record when a run is accepted (``queued``/``running``) and again when it
ends (``complete``/``error``/``interrupted``, with per-node statuses and outputs). At start-up it
asks the store to mark records left ``queued``/``running`` by a crash as ``interrupted``; runs cut
off by an orderly shutdown are saved as ``interrupted`` by the scheduler itself.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec

__all__ = ["FINAL_STATUSES", "MemoryRunStore", "RunRecord", "RunStatus", "RunStore", "interrupted"]

RunStatus = Literal["queued", "running", "complete", "error", "interrupted"]
FINAL_STATUSES = frozenset({"complete", "error", "interrupted"})


class RunRecord(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    """One run as stored and as answered by ``GET /api/prompt/{id}`` (times in ms since the epoch)."""

    prompt_id: str
    owner_id: str
    status: RunStatus
    submitted_at: int
    started_at: int | None = None
    finished_at: int | None = None
    #: ``http`` or ``websocket`` (how the run was submitted); empty when unknown.
    source: str = ""
    workflow_id: str | None = None
    workflow_name: str | None = None
    node_count: int = 0
    #: ``{nodeId: {"status": ..., "error"?: ..., "reason"?: ..., "startedAt"?: ..., "finishedAt"?: ...}}``
    node_status: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    #: ``{nodeId: {slotKey: value}}`` for nodes that completed (or were bypassed).
    outputs: dict[str, Any] = msgspec.field(default_factory=dict)
    #: ``{interfaceOutputKey: value}`` when the workflow maps interface outputs.
    interface_outputs: dict[str, Any] | None = None
    #: ``{"message": ..., ...}`` for ``error`` runs.
    error_info: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    def summary(self) -> RunRecord:
        """The record without its (possibly large) per-node data, for listings."""
        return msgspec.structs.replace(self, node_status={}, outputs={}, interface_outputs=None)


@runtime_checkable
class RunStore(Protocol):
    """Persisted, bounded run history (``storage.runs``). All methods are async and thread-safe
    with respect to the event loop (blocking I/O belongs in worker threads)."""

    async def save(self, record: RunRecord) -> None:
        """Insert or replace the record with this ``prompt_id``."""

    async def get(self, prompt_id: str) -> RunRecord | None:
        """The full record, or ``None``."""

    async def list(self, *, owner_id: str | None, limit: int = 50, offset: int = 0) -> list[RunRecord]:
        """Summaries (see :meth:`RunRecord.summary`), newest first; ``owner_id=None`` means all."""

    async def count(self, *, owner_id: str | None) -> int:
        """How many records :meth:`list` can page through."""

    async def trim(self, keep: int) -> int:
        """Delete finished records beyond the newest ``keep``; returns how many were deleted."""

    async def interrupt_unfinished(self, finished_at: int) -> int:
        """Mark records still ``queued``/``running`` as ``interrupted`` (after a crash)."""


class MemoryRunStore:
    """The history kept in memory only: used when ``storage.runs`` is ``null``."""

    def __init__(self) -> None:
        self._records: OrderedDict[str, RunRecord] = OrderedDict()

    async def save(self, record: RunRecord) -> None:
        # An update keeps the record's place: ties on ``submitted_at`` sort by first save.
        self._records[record.prompt_id] = record

    async def get(self, prompt_id: str) -> RunRecord | None:
        return self._records.get(prompt_id)

    def _ordered(self, owner_id: str | None) -> list[RunRecord]:
        items = [(r.submitted_at, n, r) for n, r in enumerate(self._records.values())]
        items.sort(key=lambda item: (item[0], item[1]), reverse=True)
        return [r for _, _, r in items if owner_id is None or r.owner_id == owner_id]

    async def list(self, *, owner_id: str | None, limit: int = 50, offset: int = 0) -> list[RunRecord]:
        return [r.summary() for r in self._ordered(owner_id)[offset : offset + limit]]

    async def count(self, *, owner_id: str | None) -> int:
        return len(self._ordered(owner_id))

    async def trim(self, keep: int) -> int:
        finished = [r for r in self._ordered(None) if r.finished]
        doomed = finished[keep:]
        for record in doomed:
            self._records.pop(record.prompt_id, None)
        return len(doomed)

    async def interrupt_unfinished(self, finished_at: int) -> int:
        changed = 0
        for key, record in list(self._records.items()):
            if not record.finished:
                self._records[key] = interrupted(record, finished_at)
                changed += 1
        return changed


def interrupted(record: RunRecord, finished_at: int) -> RunRecord:
    """The record of a run cut off by a crash: the run and its ``pending``/``running`` nodes
    become ``interrupted`` (finished nodes keep their status), as every backend must do."""
    node_status = {
        node_id: ({**entry, "status": "interrupted"} if entry.get("status") in ("pending", "running") else entry)
        for node_id, entry in record.node_status.items()
    }
    return msgspec.structs.replace(record, status="interrupted", finished_at=finished_at, node_status=node_status)
