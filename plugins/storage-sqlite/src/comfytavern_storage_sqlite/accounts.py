"""``SqliteAccountStore``: the embedded accounts backend (users, sessions, keys, credentials).

Runs on the kernel's shared :class:`~comfytavern_storage_sqlite.database.SqliteDatabase` (one connection,
WAL, foreign keys on). The store logic is :class:`comfytavern_sqlstores.SqlAccountStore`; this
module holds only the schema and wires in :class:`SqliteDialect` (ISO-8601 UTC text timestamps).
"""

from __future__ import annotations

from comfytavern_sqlstores import SqlAccountStore
from comfytavern_storage_sqlite.database import SqliteDatabase
from comfytavern_storage_sqlite.dialect import SqliteDialect

__all__ = ["MIGRATIONS", "SqliteAccountStore"]

MIGRATIONS: list[str] = [
    """
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        username TEXT NOT NULL,
        username_key TEXT NOT NULL UNIQUE,
        password_hash TEXT,
        is_admin INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT
    );
    CREATE TABLE user_sessions (
        id_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        ip TEXT,
        user_agent TEXT
    );
    CREATE INDEX user_sessions_user ON user_sessions(user_id);
    CREATE INDEX user_sessions_expires ON user_sessions(expires_at);
    CREATE TABLE service_api_keys (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name TEXT,
        lookup_id TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        key_hash TEXT NOT NULL,
        scopes TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        last_used_at TEXT
    );
    CREATE INDEX service_api_keys_user ON service_api_keys(user_id, created_at);
    CREATE TABLE external_credentials (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        service_name TEXT NOT NULL,
        service_key TEXT NOT NULL,
        display_name TEXT,
        display_hint TEXT,
        ciphertext TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX external_credentials_user_service ON external_credentials(user_id, service_key, created_at)
    """,
]


class SqliteAccountStore(SqlAccountStore):
    """Implements :class:`comfytavern.storage.accounts.AccountStore` on SQLite."""

    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__(SqliteDialect(db), MIGRATIONS)
        self.db = db
