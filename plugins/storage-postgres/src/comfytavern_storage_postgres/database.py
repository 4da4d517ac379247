"""One connection pool per (DSN, schema) and kernel, shared by the projects, accounts and runs stores.

Connections are autocommit; multi-statement work goes through :meth:`PostgresDatabase.transaction`.
Every connection's ``search_path`` is the configured schema, so one database can hold several
isolated installations (and the tests give each test its own schema). Migrations are versioned per
component and serialised across processes with an advisory lock, so several instances starting at
the same time apply each step exactly once.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import msgspec
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from comfytavern import ConfigError, Services
from comfytavern_storage_postgres import POSTGRES_DATABASES

__all__ = [
    "DEFAULT_DSN",
    "DatabaseUnavailable",
    "PostgresDatabase",
    "PostgresSettings",
    "parse_settings",
    "redacted_dsn",
    "POSTGRES_DATABASES",
    "shared_database",
]

log = logging.getLogger("comfytavern.storage.postgres")

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

Conn = psycopg.AsyncConnection[dict[str, Any]]


class PostgresSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``storage.settings.postgres``; the DSN may also come from ``CT_STORAGE__SETTINGS__POSTGRES__DSN``."""

    dsn: str = DEFAULT_DSN
    #: Schema holding every table (created when missing); lets one database host several installs.
    schema: str = "public"
    min_size: int = 1
    max_size: int = 10
    #: Seconds to wait for the first connection at start-up and for a free pooled connection.
    timeout: float = 10.0


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL could not be reached or refused the connection."""


def parse_settings(raw: Mapping[str, Any]) -> PostgresSettings:
    try:
        settings = msgspec.convert(dict(raw), PostgresSettings)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration at $.storage.settings.postgres: {exc}") from None
    if not _SCHEMA_RE.match(settings.schema):
        raise ConfigError(
            "$.storage.settings.postgres.schema: must be a lower-case identifier "
            f"([a-z_][a-z0-9_]*, at most 63 characters), got {settings.schema!r}"
        )
    if settings.min_size < 0 or settings.max_size < 1 or settings.min_size > settings.max_size:
        raise ConfigError("$.storage.settings.postgres: need 0 <= min_size <= max_size and max_size >= 1")
    if settings.timeout <= 0:
        raise ConfigError("$.storage.settings.postgres.timeout: must be positive")
    try:
        conninfo_to_dict(settings.dsn)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"$.storage.settings.postgres.dsn: not a valid connection string ({exc})") from None
    return settings


def redacted_dsn(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<invalid dsn>"
    parts.pop("password", None)
    return make_conninfo("", **parts)


class PostgresDatabase:
    """A reference-counted :class:`AsyncConnectionPool`: the first ``open`` connects, the last ``close`` closes."""

    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = settings
        self.schema = settings.schema
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._users = 0

    @property
    def where(self) -> str:
        return f"{redacted_dsn(self.settings.dsn)} (schema {self.schema})"

    # -- life-cycle ------------------------------------------------------------------------
    async def open(self) -> None:
        self._users += 1
        if self._pool is not None:
            return
        try:
            await self._create_schema()
            pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
                self.settings.dsn,
                min_size=self.settings.min_size,
                max_size=self.settings.max_size,
                kwargs={
                    "autocommit": True,
                    "row_factory": dict_row,
                    "options": f"-c search_path={self.schema}",
                },
                timeout=self.settings.timeout,
                open=False,
                name=f"comfytavern-{self.schema}",
            )
            await pool.open(wait=self.settings.min_size > 0, timeout=self.settings.timeout)
        except BaseException:
            self._users -= 1
            raise
        self._pool = pool
        await self._ensure_migrations_table()

    async def close(self) -> None:
        self._users -= 1
        if self._users > 0 or self._pool is None:
            return
        pool, self._pool = self._pool, None
        self._users = 0
        await pool.close()

    async def _create_schema(self) -> None:
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.settings.dsn, autocommit=True, connect_timeout=max(1, int(self.settings.timeout))
            )
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"cannot connect to PostgreSQL at {self.where}: {exc}".strip()) from None
        async with conn:
            exists = await (
                await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,))
            ).fetchone()
            if exists is None:
                await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))

    async def _ensure_migrations_table(self) -> None:
        async with self.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('comfytavern-migrate:' || current_schema()))")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " component TEXT NOT NULL, version INTEGER NOT NULL,"
                " applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),"
                " PRIMARY KEY (component, version))"
            )

    # -- running ---------------------------------------------------------------------------
    @property
    def pool(self) -> AsyncConnectionPool[Conn]:
        if self._pool is None:
            raise RuntimeError(f"PostgreSQL pool for {self.where} is not open")
        return self._pool

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        try:
            async with self.pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise DatabaseUnavailable(f"no PostgreSQL connection available for {self.where}: {exc}") from None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        """A connection inside one transaction (committed on success, rolled back on error)."""
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def execute(self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> int:
        """Run one statement; returns the number of affected rows."""
        async with self.connection() as conn:
            cur = await conn.execute(query, params)
            return cur.rowcount

    async def fetchall(
        self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        async with self.connection() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchall()

    async def fetchone(
        self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> dict[str, Any] | None:
        async with self.connection() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchone()

    async def ping(self) -> None:
        await self.fetchone("SELECT 1 AS ok")

    async def migrate(self, component: str, steps: Sequence[str]) -> int:
        """Apply ``steps[i]`` (version ``i + 1``) not yet recorded for ``component``; returns how many.

        Everything runs in one transaction under an advisory lock: DDL in PostgreSQL is
        transactional, so a failing step leaves nothing behind, and concurrent instances wait.
        """
        async with self.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('comfytavern-migrate:' || current_schema()))")
            row = await (
                await conn.execute(
                    "SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations WHERE component = %s",
                    (component,),
                )
            ).fetchone()
            current = int(row["v"]) if row else 0
            if current > len(steps):
                raise RuntimeError(
                    f"{self.where}: {component!r} is at schema version {current}, newer than this "
                    f"code knows ({len(steps)}); upgrade the server"
                )
            applied = 0
            for version, script in enumerate(steps, start=1):
                if version <= current:
                    continue
                await conn.execute(script)  # type: ignore[arg-type]
                await conn.execute(
                    "INSERT INTO schema_migrations (component, version) VALUES (%s, %s)", (component, version)
                )
                applied += 1
            if applied:
                log.info("applied %d %s migration(s) on %s", applied, component, self.where)
            return applied

    async def schema_version(self, component: str) -> int:
        row = await self.fetchone(
            "SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations WHERE component = %s", (component,)
        )
        return int(row["v"]) if row else 0


def shared_database(services: Services, settings: PostgresSettings) -> PostgresDatabase:
    """The one :class:`PostgresDatabase` per (DSN, schema) for this kernel (``POSTGRES_DATABASES``)."""
    databases = services.setdefault(POSTGRES_DATABASES, dict)
    key = (settings.dsn, settings.schema)
    db = databases.get(key)
    if db is None:
        db = databases[key] = PostgresDatabase(settings)
    return db
