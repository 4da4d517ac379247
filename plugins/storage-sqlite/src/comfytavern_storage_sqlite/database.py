"""A small async wrapper over one SQLite file, shared by this plugin's storage backends.

SQLite calls block, so every statement runs in a worker thread; a capacity limiter of one
serialises them on a single connection (WAL mode, foreign keys on). Each component applies its
own versioned migrations, recorded in ``schema_migrations``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from comfytavern.files import private_dir
from comfytavern.services import Services
from comfytavern_storage_sqlite import SQLITE_DATABASES

__all__ = ["SqliteDatabase", "shared_database"]

T = TypeVar("T")

log = logging.getLogger("comfytavern.storage.sqlite")


class SqliteDatabase:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._limiter = anyio.CapacityLimiter(1)
        self._users = 0
        self._lock = threading.Lock()

    # -- life-cycle ------------------------------------------------------------------------
    def _open_sync(self) -> None:
        with self._lock:
            self._users += 1
            if self._conn is not None:
                return
            if str(self.path) != ":memory:":
                _create_private(self.path)
            conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " component TEXT NOT NULL, version INTEGER NOT NULL,"
                " applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),"
                " PRIMARY KEY (component, version))"
            )
            self._conn = conn

    async def open(self) -> None:
        await anyio.to_thread.run_sync(self._open_sync, limiter=self._limiter)

    def _close_sync(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users <= 0 and self._conn is not None:
                self._conn.close()
                self._conn = None
                self._users = 0

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self._close_sync, limiter=self._limiter)

    # -- running ---------------------------------------------------------------------------
    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` in the database thread (use for transactions)."""

        def call() -> T:
            if self._conn is None:
                raise RuntimeError(f"database {self.path} is not open")
            return fn(self._conn)

        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    async def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """Run one statement; returns the number of changed rows."""
        return await self.run(lambda c: c.execute(sql, params).rowcount)

    async def fetchall(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        return await self.run(lambda c: c.execute(sql, params).fetchall())

    async def fetchone(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Row | None:
        return await self.run(lambda c: c.execute(sql, params).fetchone())

    async def migrate(self, component: str, steps: Sequence[str]) -> int:
        """Apply ``steps[i]`` (SQL scripts) not yet recorded for ``component``; returns how many."""

        def apply(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE component = ?",
                (component,),
            ).fetchone()
            current = int(row[0])
            applied = 0
            for version, script in enumerate(steps, start=1):
                if version <= current:
                    continue
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _split_sql(script):
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_migrations (component, version) VALUES (?, ?)",
                        (component, version),
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                applied += 1
            return applied

        return await self.run(apply)


def _create_private(path: Path) -> None:
    """Create the database file 0600 in a 0700 folder before SQLite opens it (it holds password
    hashes and sessions; SQLite gives its ``-wal``/``-shm`` files the database file's mode).
    An existing file keeps its mode, with a warning when others can read it."""
    private_dir(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("%s is readable by other users (mode %o); run: chmod 600 %s", path, mode & 0o777, path)


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]



def shared_database(services: Services, path: Path) -> SqliteDatabase:
    """The one :class:`SqliteDatabase` per file for this kernel (the ``SQLITE_DATABASES`` service)."""
    databases = services.setdefault(SQLITE_DATABASES, dict)
    db = databases.get(path)
    if db is None:
        db = databases[path] = SqliteDatabase(path)
    return db
