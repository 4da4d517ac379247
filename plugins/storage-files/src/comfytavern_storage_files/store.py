"""The ``filesystem`` projects store: inspectable JSON files, one folder per user and project.

Layout (``<root>`` = ``data.projects``)::

    <root>/<userId>/<projectId>/project.json
    <root>/<userId>/<projectId>/workflows/<name>.json
    <root>/<userId>/.recycle/<UTC stamp>-<projectId>/...      deleted projects and workflows

Writes go through :func:`write_atomic` while the project's lock is held, so concurrent requests
never lose or tear a file within this process. Workflow identity is the ``id`` stored inside the
file; a summary cache keyed by (mtime, size, inode) spares re-parsing unchanged files.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import msgspec

from comfytavern.files import PRIVATE_DIR_MODE, fsync_dir, private_dir, sweep_temp_files, write_atomic
from comfytavern.safety import UnsafeName, resolve_inside
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

__all__ = ["PROJECT_FILE", "RECYCLE_DIR", "WORKFLOWS_DIR", "FileProjectStore"]

log = logging.getLogger("comfytavern.storage.files")

PROJECT_FILE = "project.json"
WORKFLOWS_DIR = "workflows"
#: Per-user recycle bin; project ids cannot start with a dot, so it never clashes with one.
RECYCLE_DIR = ".recycle"

_CacheKey = tuple[int, int, int]


def encode_document(doc: dict[str, Any]) -> bytes:
    """Pretty JSON (2 spaces, UTF-8, trailing newline), like the original backend's files."""
    return msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n"


def _read_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; ``None`` if it is missing, unreadable or not an object."""
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    try:
        doc = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        log.warning("ignoring %s: not valid JSON", path)
        return None
    if not isinstance(doc, dict):
        log.warning("ignoring %s: not a JSON object", path)
        return None
    return doc


def _is_plain_dir(entry: os.DirEntry[str]) -> bool:
    return entry.is_dir(follow_symlinks=False) and not entry.name.startswith(".")


class FileProjectStore:
    """:class:`comfytavern.storage.projects.ProjectStore` on the local filesystem."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._locks: dict[tuple[str, str], anyio.Lock] = {}
        #: workflows folder -> file name -> (stat key, summary or None when unreadable)
        self._summaries: dict[Path, dict[str, tuple[_CacheKey, WorkflowSummary | None]]] = {}

    # -- life-cycle ------------------------------------------------------------------------
    async def open(self) -> None:
        await anyio.to_thread.run_sync(self._open_sync)

    def _open_sync(self) -> None:
        private_dir(self.root)
        swept = 0
        for user in os.scandir(self.root):
            if not _is_plain_dir(user):
                continue
            for project in os.scandir(user.path):
                if _is_plain_dir(project):
                    swept += sweep_temp_files(Path(project.path))
                    swept += sweep_temp_files(Path(project.path) / WORKFLOWS_DIR)
        if swept:
            log.info("removed %d temporary files left by interrupted writes", swept)

    # -- paths and locks -------------------------------------------------------------------
    def _user_dir(self, user_id: str) -> Path:
        return self._inside(check_id(user_id, what="user id"))

    def _project_dir(self, user_id: str, project_id: str) -> Path:
        return self._inside(check_id(user_id, what="user id"), check_id(project_id, what="project id"))

    def _inside(self, *parts: str) -> Path:
        try:
            return resolve_inside(self.root, *parts)
        except InvalidId:
            raise
        except UnsafeName as exc:
            raise InvalidId(str(exc)) from None

    def _lock(self, user_id: str, project_id: str) -> anyio.Lock:
        key = (user_id, project_id)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = anyio.Lock()
        return lock

    # -- projects --------------------------------------------------------------------------
    async def list_projects(self, user_id: str) -> list[dict[str, Any]]:
        return await anyio.to_thread.run_sync(self._list_projects_sync, self._user_dir(user_id))

    def _list_projects_sync(self, user_dir: Path) -> list[dict[str, Any]]:
        try:
            entries = sorted(os.scandir(user_dir), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return []
        out: list[dict[str, Any]] = []
        for entry in entries:
            if not _is_plain_dir(entry):
                continue
            try:
                check_id(entry.name, what="project id")
            except InvalidId:
                continue
            doc = self._project_doc(Path(entry.path))
            if doc is not None:
                doc["id"] = entry.name
                out.append(doc)
        return out

    def _project_doc(self, project_dir: Path) -> dict[str, Any] | None:
        """``project.json``; ``{}`` when it exists but is damaged (still listed, repaired on PUT)."""
        path = project_dir / PROJECT_FILE
        if not path.is_file():
            return None
        doc = _read_object(path)
        return {} if doc is None else doc

    async def get_project(self, user_id: str, project_id: str) -> dict[str, Any] | None:
        project_dir = self._project_dir(user_id, project_id)
        doc = await anyio.to_thread.run_sync(self._project_doc, project_dir)
        if doc is not None:
            doc["id"] = project_id
        return doc

    async def create_project(self, user_id: str, project_id: str, doc: dict[str, Any]) -> None:
        project_dir = self._project_dir(user_id, project_id)
        async with self._lock(user_id, project_id):
            await anyio.to_thread.run_sync(self._create_project_sync, project_dir, doc)

    def _create_project_sync(self, project_dir: Path, doc: dict[str, Any]) -> None:
        private_dir(project_dir.parent)
        try:
            project_dir.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:
            raise AlreadyExists(f"project '{project_dir.name}' already exists") from None
        try:
            (project_dir / WORKFLOWS_DIR).mkdir(mode=PRIVATE_DIR_MODE)
            write_atomic(project_dir / PROJECT_FILE, encode_document(doc))
        except BaseException:
            _remove_tree_quietly(project_dir)
            raise
        fsync_dir(project_dir.parent)

    async def update_project(
        self, user_id: str, project_id: str, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any]:
        project_dir = self._project_dir(user_id, project_id)
        async with self._lock(user_id, project_id):
            current = await anyio.to_thread.run_sync(self._project_doc, project_dir)
            if current is None:
                raise ProjectNotFound(f"project '{project_id}' not found")
            updated = change(copy.deepcopy(current))
            updated["id"] = project_id
            if updated != current:
                await anyio.to_thread.run_sync(write_atomic, project_dir / PROJECT_FILE, encode_document(updated))
            return updated

    async def delete_project(self, user_id: str, project_id: str) -> None:
        user_dir = self._user_dir(user_id)
        project_dir = self._project_dir(user_id, project_id)
        async with self._lock(user_id, project_id):
            await anyio.to_thread.run_sync(self._delete_project_sync, user_dir, project_dir)
        self._summaries.pop(project_dir / WORKFLOWS_DIR, None)

    def _delete_project_sync(self, user_dir: Path, project_dir: Path) -> None:
        if not project_dir.is_dir() or not (project_dir / PROJECT_FILE).is_file():
            raise ProjectNotFound(f"project '{project_dir.name}' not found")
        target = _recycle_slot(user_dir, project_dir.name)
        os.replace(project_dir, target)
        fsync_dir(user_dir)
        fsync_dir(target.parent)

    # -- workflows -------------------------------------------------------------------------
    async def list_workflows(self, user_id: str, project_id: str) -> list[WorkflowSummary]:
        project_dir = self._project_dir(user_id, project_id)
        return await anyio.to_thread.run_sync(self._list_workflows_sync, project_dir)

    def _list_workflows_sync(self, project_dir: Path) -> list[WorkflowSummary]:
        if not (project_dir / PROJECT_FILE).is_file():
            raise ProjectNotFound(f"project '{project_dir.name}' not found")
        seen: set[str] = set()
        out: list[WorkflowSummary] = []
        for _, summary in self._scan(project_dir / WORKFLOWS_DIR):
            if summary.id not in seen:
                seen.add(summary.id)
                out.append(summary)
        return out

    def _scan(self, folder: Path) -> list[tuple[str, WorkflowSummary]]:
        """``(file name, summary)`` of every readable workflow file, by file name."""
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            self._summaries.pop(folder, None)
            return []
        previous = self._summaries.get(folder, {})
        current: dict[str, tuple[_CacheKey, WorkflowSummary | None]] = {}
        for entry in entries:
            if entry.name.startswith(".") or not entry.name.endswith(".json"):
                continue
            if not entry.is_file(follow_symlinks=False):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
            cached = previous.get(entry.name)
            if cached is not None and cached[0] == key:
                current[entry.name] = cached
                continue
            summary = summarise_workflow(_read_object(Path(entry.path)))
            if summary is None:
                log.warning("ignoring %s: not a workflow with a string id and name", entry.path)
            current[entry.name] = (key, summary)
        self._summaries[folder] = current
        found = sorted((name, s) for name, (_, s) in current.items() if s is not None)
        ids = [s.id for _, s in found]
        if len(ids) != len(set(ids)):
            log.warning("%s holds several files with the same workflow id; the first by name wins", folder)
        return found

    def _find(self, folder: Path, workflow_id: str) -> tuple[Path, dict[str, Any]] | None:
        """The file holding ``workflow_id`` and its document (rescanned once if it just changed)."""
        for _ in range(2):
            for name, summary in self._scan(folder):
                if summary.id != workflow_id:
                    continue
                doc = _read_object(folder / name)
                if doc is not None and doc.get("id") == workflow_id:
                    return folder / name, doc
                break
            else:
                return None
        return None

    async def get_workflow(self, user_id: str, project_id: str, workflow_id: str) -> dict[str, Any] | None:
        try:
            project_dir = self._project_dir(user_id, project_id)
        except InvalidId:
            return None
        found = await anyio.to_thread.run_sync(self._find, project_dir / WORKFLOWS_DIR, workflow_id)
        return None if found is None else found[1]

    async def create_workflow(self, user_id: str, project_id: str, doc: dict[str, Any]) -> dict[str, Any]:
        project_dir = self._project_dir(user_id, project_id)
        filename = workflow_filename(doc["name"])
        async with self._lock(user_id, project_id):
            await anyio.to_thread.run_sync(self._create_workflow_sync, project_dir, filename, doc)
        return doc

    def _create_workflow_sync(self, project_dir: Path, filename: str, doc: dict[str, Any]) -> None:
        if not (project_dir / PROJECT_FILE).is_file():
            raise ProjectNotFound(f"project '{project_dir.name}' not found")
        folder = project_dir / WORKFLOWS_DIR
        folder.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
        if any(s.id == doc["id"] for _, s in self._scan(folder)):
            raise AlreadyExists(f"a workflow with id '{doc['id']}' already exists in project '{project_dir.name}'")
        target = folder / filename
        if target.exists():
            raise AlreadyExists(
                f"a workflow named '{doc['name']}' (file '{filename}') already exists in project '{project_dir.name}'"
            )
        write_atomic(target, encode_document(doc))

    async def update_workflow(
        self, user_id: str, project_id: str, workflow_id: str, change: WorkflowChange
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        project_dir = self._project_dir(user_id, project_id)
        folder = project_dir / WORKFLOWS_DIR
        async with self._lock(user_id, project_id):
            found = await anyio.to_thread.run_sync(self._find, folder, workflow_id)
            if found is None:
                raise WorkflowNotFound(f"workflow '{workflow_id}' not found in project '{project_id}'")
            path, before = found
            after = change(copy.deepcopy(before))
            if after.get("id") != workflow_id:
                raise ValueError("a workflow's id cannot change")
            # The file follows the name; an unchanged name keeps its file even if another tool
            # named it differently.
            renamed = after.get("name") != before.get("name")
            target = folder / workflow_filename(after["name"]) if renamed else path
            if after != before or target.name != path.name:
                await anyio.to_thread.run_sync(self._rewrite_sync, path, target, after)
            return before, after

    @staticmethod
    def _rewrite_sync(path: Path, target: Path, doc: dict[str, Any]) -> None:
        """Rename first (old content under the new name), then replace the content: a crash in
        between leaves one consistent file, never two files with the same id."""
        if target.name != path.name:
            if target.exists() and not os.path.samefile(target, path):
                raise AlreadyExists(
                    f"a workflow named '{doc['name']}' (file '{target.name}') already exists "
                    f"in project '{path.parent.parent.name}'"
                )
            os.replace(path, target)
            fsync_dir(target.parent)
        write_atomic(target, encode_document(doc))

    async def delete_workflow(self, user_id: str, project_id: str, workflow_id: str) -> None:
        user_dir = self._user_dir(user_id)
        project_dir = self._project_dir(user_id, project_id)
        async with self._lock(user_id, project_id):
            found = await anyio.to_thread.run_sync(self._find, project_dir / WORKFLOWS_DIR, workflow_id)
            if found is None:
                raise WorkflowNotFound(f"workflow '{workflow_id}' not found in project '{project_id}'")
            await anyio.to_thread.run_sync(self._recycle_workflow_sync, user_dir, project_id, found[0])

    @staticmethod
    def _recycle_workflow_sync(user_dir: Path, project_id: str, path: Path) -> None:
        slot = _recycle_slot(user_dir, project_id) / WORKFLOWS_DIR
        private_dir(slot.parent)
        slot.mkdir(mode=PRIVATE_DIR_MODE)
        os.replace(path, slot / path.name)
        fsync_dir(path.parent)
        fsync_dir(slot)


def _recycle_slot(user_dir: Path, label: str) -> Path:
    """A fresh ``<user>/.recycle/<UTC stamp>-<label>`` path (not created; the stamp sorts by time)."""
    bin_dir = user_dir / RECYCLE_DIR
    private_dir(bin_dir)
    base = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}-{label}"
    candidate, n = bin_dir / base, 1
    while candidate.exists():
        n += 1
        candidate = bin_dir / f"{base}-{n}"
    return candidate


def _remove_tree_quietly(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
