"""``storage.projects = "postgres"``: projects and workflows in PostgreSQL, shared by every instance.

The same rules as the filesystem backend (``comfytavern_testing_contracts.projects``):

- ids are checked with :func:`~comfytavern.storage.projects.check_id` before any query;
- documents are stored as the exact JSON the client sent (``BYTEA``: key order and unknown fields
  survive), with the list summary computed once at write time;
- a workflow's "file name" (derived from its display name) is unique per project, as on disk;
- every write to a project runs in one transaction holding the project's row lock
  (``SELECT ... FOR UPDATE``), so read-modify-writes from any number of instances never lose an
  update; readers see the old or the new document;
- deleting moves the project (with its workflows) or the workflow into ``recycle_bin``.
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import psycopg

from comfytavern.storage.projects import (
    AlreadyExists,
    InvalidId,
    ProjectNotFound,
    WorkflowChange,
    WorkflowNotFound,
    WorkflowSummary,
    check_id,
    summarise_workflow,
    workflow_filename,
)
from comfytavern_storage_postgres.database import Conn, PostgresDatabase

__all__ = ["MIGRATIONS", "PostgresProjectStore"]

MIGRATIONS = [
    """
    CREATE TABLE projects (
        user_id TEXT NOT NULL,
        project_id TEXT NOT NULL,
        doc BYTEA NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (user_id, project_id)
    );
    CREATE TABLE workflows (
        user_id TEXT NOT NULL,
        project_id TEXT NOT NULL,
        workflow_id TEXT NOT NULL,
        filename TEXT NOT NULL,
        summary BYTEA NOT NULL,
        doc BYTEA NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (user_id, project_id, workflow_id),
        CONSTRAINT workflows_filename_unique UNIQUE (user_id, project_id, filename),
        CONSTRAINT workflows_project_fk FOREIGN KEY (user_id, project_id)
            REFERENCES projects (user_id, project_id) ON DELETE CASCADE
    );
    CREATE TABLE recycle_bin (
        id BIGSERIAL PRIMARY KEY,
        user_id TEXT NOT NULL,
        project_id TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('project', 'workflow')),
        workflow_id TEXT,
        deleted_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        doc BYTEA NOT NULL
    );
    CREATE INDEX recycle_bin_user ON recycle_bin (user_id, deleted_at DESC)
    """,
]

_encoder = msgspec.json.Encoder()
_summary_decoder = msgspec.json.Decoder(WorkflowSummary)


class _Deleted(msgspec.Struct):
    """A recycled project: its document and every workflow it held."""

    project: msgspec.Raw
    workflows: list[msgspec.Raw]


def _decode(raw: bytes) -> dict[str, Any]:
    doc = msgspec.json.decode(raw)
    if not isinstance(doc, dict):
        raise ValueError("stored document is not a JSON object")
    return doc


def _summary(doc: dict[str, Any]) -> bytes:
    summary = summarise_workflow(doc)
    if summary is None:
        raise ValueError("a workflow needs a string 'id' and 'name'")
    return _encoder.encode(summary)


def _ids(user_id: str, project_id: str) -> tuple[str, str]:
    return check_id(user_id, what="user id"), check_id(project_id, what="project id")


class PostgresProjectStore:
    """Implements :class:`comfytavern.storage.projects.ProjectStore` on PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    async def open(self) -> None:
        await self.db.open()
        try:
            await self.db.migrate("projects", MIGRATIONS)
        except BaseException:
            await self.db.close()
            raise

    async def close(self) -> None:
        await self.db.close()

    @staticmethod
    async def _lock_project(conn: Conn, user_id: str, project_id: str) -> dict[str, Any]:
        row = await (
            await conn.execute(
                "SELECT doc FROM projects WHERE user_id = %s AND project_id = %s FOR UPDATE", (user_id, project_id)
            )
        ).fetchone()
        if row is None:
            raise ProjectNotFound(f"project '{project_id}' not found")
        return _decode(row["doc"])

    # -- projects --------------------------------------------------------------------------
    async def list_projects(self, user_id: str) -> list[dict[str, Any]]:
        user_id = check_id(user_id, what="user id")
        rows = await self.db.fetchall(
            'SELECT project_id, doc FROM projects WHERE user_id = %s ORDER BY project_id COLLATE "C"', (user_id,)
        )
        out: list[dict[str, Any]] = []
        for row in rows:
            doc = _decode(row["doc"])
            doc["id"] = row["project_id"]
            out.append(doc)
        return out

    async def get_project(self, user_id: str, project_id: str) -> dict[str, Any] | None:
        user_id, project_id = _ids(user_id, project_id)
        row = await self.db.fetchone(
            "SELECT doc FROM projects WHERE user_id = %s AND project_id = %s", (user_id, project_id)
        )
        if row is None:
            return None
        doc = _decode(row["doc"])
        doc["id"] = project_id
        return doc

    async def create_project(self, user_id: str, project_id: str, doc: dict[str, Any]) -> None:
        user_id, project_id = _ids(user_id, project_id)
        try:
            await self.db.execute(
                "INSERT INTO projects (user_id, project_id, doc) VALUES (%s, %s, %s)",
                (user_id, project_id, _encoder.encode(doc)),
            )
        except psycopg.errors.UniqueViolation:
            raise AlreadyExists(f"project '{project_id}' already exists") from None

    async def update_project(self, user_id: str, project_id: str, change: Any) -> dict[str, Any]:
        user_id, project_id = _ids(user_id, project_id)
        async with self.db.transaction() as conn:
            current = await self._lock_project(conn, user_id, project_id)
            updated = change(copy.deepcopy(current))
            updated["id"] = project_id
            if updated != current:
                await conn.execute(
                    "UPDATE projects SET doc = %s, updated_at = now() WHERE user_id = %s AND project_id = %s",
                    (_encoder.encode(updated), user_id, project_id),
                )
            return updated

    async def delete_project(self, user_id: str, project_id: str) -> None:
        user_id, project_id = _ids(user_id, project_id)
        async with self.db.transaction() as conn:
            row = await (
                await conn.execute(
                    "SELECT doc FROM projects WHERE user_id = %s AND project_id = %s FOR UPDATE", (user_id, project_id)
                )
            ).fetchone()
            if row is None:
                raise ProjectNotFound(f"project '{project_id}' not found")
            workflows = await (
                await conn.execute(
                    'SELECT doc FROM workflows WHERE user_id = %s AND project_id = %s ORDER BY filename COLLATE "C"',
                    (user_id, project_id),
                )
            ).fetchall()
            bundle = _Deleted(msgspec.Raw(row["doc"]), [msgspec.Raw(w["doc"]) for w in workflows])
            await conn.execute(
                "INSERT INTO recycle_bin (user_id, project_id, kind, doc) VALUES (%s, %s, 'project', %s)",
                (user_id, project_id, _encoder.encode(bundle)),
            )
            # The workflows go with the project (ON DELETE CASCADE).
            await conn.execute("DELETE FROM projects WHERE user_id = %s AND project_id = %s", (user_id, project_id))

    # -- workflows -------------------------------------------------------------------------
    async def list_workflows(self, user_id: str, project_id: str) -> list[WorkflowSummary]:
        user_id, project_id = _ids(user_id, project_id)
        async with self.db.connection() as conn:
            exists = await (
                await conn.execute(
                    "SELECT 1 AS ok FROM projects WHERE user_id = %s AND project_id = %s", (user_id, project_id)
                )
            ).fetchone()
            if exists is None:
                raise ProjectNotFound(f"project '{project_id}' not found")
            rows = await (
                await conn.execute(
                    'SELECT summary FROM workflows WHERE user_id = %s AND project_id = %s ORDER BY filename COLLATE "C"',
                    (user_id, project_id),
                )
            ).fetchall()
        return [_summary_decoder.decode(row["summary"]) for row in rows]

    async def get_workflow(self, user_id: str, project_id: str, workflow_id: str) -> dict[str, Any] | None:
        try:
            user_id, project_id = _ids(user_id, project_id)
        except InvalidId:
            return None
        if not isinstance(workflow_id, str):
            return None
        row = await self.db.fetchone(
            "SELECT doc FROM workflows WHERE user_id = %s AND project_id = %s AND workflow_id = %s",
            (user_id, project_id, workflow_id),
        )
        return None if row is None else _decode(row["doc"])

    async def create_workflow(self, user_id: str, project_id: str, doc: dict[str, Any]) -> dict[str, Any]:
        user_id, project_id = _ids(user_id, project_id)
        filename = workflow_filename(doc["name"])
        summary = _summary(doc)
        async with self.db.transaction() as conn:
            await self._lock_project(conn, user_id, project_id)
            clash = await (
                await conn.execute(
                    "SELECT workflow_id, filename FROM workflows WHERE user_id = %s AND project_id = %s"
                    " AND (workflow_id = %s OR filename = %s)",
                    (user_id, project_id, doc["id"], filename),
                )
            ).fetchall()
            for row in clash:
                if row["workflow_id"] == doc["id"]:
                    raise AlreadyExists(f"a workflow with id '{doc['id']}' already exists in project '{project_id}'")
            if clash:
                raise AlreadyExists(
                    f"a workflow named '{doc['name']}' (file '{filename}') already exists in project '{project_id}'"
                )
            await conn.execute(
                "INSERT INTO workflows (user_id, project_id, workflow_id, filename, summary, doc)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (user_id, project_id, doc["id"], filename, summary, _encoder.encode(doc)),
            )
        return doc

    async def update_workflow(
        self, user_id: str, project_id: str, workflow_id: str, change: WorkflowChange
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        user_id, project_id = _ids(user_id, project_id)
        async with self.db.transaction() as conn:
            await self._lock_project(conn, user_id, project_id)
            row = await (
                await conn.execute(
                    "SELECT filename, doc FROM workflows WHERE user_id = %s AND project_id = %s AND workflow_id = %s",
                    (user_id, project_id, workflow_id),
                )
            ).fetchone()
            if row is None:
                raise WorkflowNotFound(f"workflow '{workflow_id}' not found in project '{project_id}'")
            before = _decode(row["doc"])
            after = change(copy.deepcopy(before))
            if after.get("id") != workflow_id:
                raise ValueError("a workflow's id cannot change")
            renamed = after.get("name") != before.get("name")
            filename = workflow_filename(after["name"]) if renamed else row["filename"]
            if after == before and filename == row["filename"]:
                return before, after
            if filename != row["filename"]:
                taken = await (
                    await conn.execute(
                        "SELECT 1 AS ok FROM workflows WHERE user_id = %s AND project_id = %s AND filename = %s",
                        (user_id, project_id, filename),
                    )
                ).fetchone()
                if taken is not None:
                    raise AlreadyExists(
                        f"a workflow named '{after['name']}' (file '{filename}') already exists in project '{project_id}'"
                    )
            await conn.execute(
                "UPDATE workflows SET filename = %s, summary = %s, doc = %s, updated_at = now()"
                " WHERE user_id = %s AND project_id = %s AND workflow_id = %s",
                (filename, _summary(after), _encoder.encode(after), user_id, project_id, workflow_id),
            )
            return before, after

    async def delete_workflow(self, user_id: str, project_id: str, workflow_id: str) -> None:
        user_id, project_id = _ids(user_id, project_id)
        async with self.db.transaction() as conn:
            await self._lock_project(conn, user_id, project_id)
            row = await (
                await conn.execute(
                    "DELETE FROM workflows WHERE user_id = %s AND project_id = %s AND workflow_id = %s RETURNING doc",
                    (user_id, project_id, workflow_id),
                )
            ).fetchone()
            if row is None:
                raise WorkflowNotFound(f"workflow '{workflow_id}' not found in project '{project_id}'")
            await conn.execute(
                "INSERT INTO recycle_bin (user_id, project_id, kind, workflow_id, doc) VALUES (%s, %s, 'workflow', %s, %s)",
                (user_id, project_id, workflow_id, row["doc"]),
            )
