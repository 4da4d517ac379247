"""``storage.accounts = "postgres"``: users, sessions, service keys and credentials in PostgreSQL.

Same contract as the embedded SQLite store (``comfytavern_testing_contracts.accounts``); the store
logic is :class:`comfytavern_sqlstores.SqlAccountStore`. This module holds only the schema (its
constraint names are what :class:`PostgresDialect` maps to ``AccountConflict``). Timestamps are
``TIMESTAMPTZ``, ties are broken by a ``seq`` column.
"""

from __future__ import annotations

from comfytavern_sqlstores import SqlAccountStore
from comfytavern_storage_postgres.database import PostgresDatabase
from comfytavern_storage_postgres.dialect import PostgresDialect

__all__ = ["MIGRATIONS", "PostgresAccountStore"]

MIGRATIONS: list[str] = [
    """
    CREATE TABLE users (
        id TEXT NOT NULL,
        username TEXT NOT NULL,
        username_key TEXT NOT NULL,
        password_hash TEXT,
        is_admin BOOLEAN NOT NULL DEFAULT FALSE,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ,
        seq BIGSERIAL NOT NULL,
        CONSTRAINT users_id_unique PRIMARY KEY (id),
        CONSTRAINT users_username_unique UNIQUE (username_key)
    );
    CREATE TABLE user_sessions (
        id_hash TEXT NOT NULL,
        user_id TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        last_seen_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL,
        ip TEXT,
        user_agent TEXT,
        CONSTRAINT user_sessions_id_unique PRIMARY KEY (id_hash),
        CONSTRAINT user_sessions_user_fk FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
    );
    CREATE INDEX user_sessions_user ON user_sessions (user_id);
    CREATE INDEX user_sessions_expires ON user_sessions (expires_at);
    CREATE TABLE service_api_keys (
        id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        name TEXT,
        lookup_id TEXT NOT NULL,
        prefix TEXT NOT NULL,
        key_hash TEXT NOT NULL,
        scopes JSONB NOT NULL DEFAULT '[]',
        created_at TIMESTAMPTZ NOT NULL,
        last_used_at TIMESTAMPTZ,
        seq BIGSERIAL NOT NULL,
        CONSTRAINT service_api_keys_id_unique PRIMARY KEY (id),
        CONSTRAINT service_api_keys_lookup_unique UNIQUE (lookup_id),
        CONSTRAINT service_api_keys_user_fk FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
    );
    CREATE INDEX service_api_keys_user ON service_api_keys (user_id, created_at DESC, seq DESC);
    CREATE TABLE external_credentials (
        id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        service_name TEXT NOT NULL,
        service_key TEXT NOT NULL,
        display_name TEXT,
        display_hint JSONB,
        ciphertext TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        seq BIGSERIAL NOT NULL,
        CONSTRAINT external_credentials_id_unique PRIMARY KEY (id),
        CONSTRAINT external_credentials_user_fk FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
    );
    CREATE INDEX external_credentials_user_service
        ON external_credentials (user_id, service_key, created_at DESC, seq DESC)
    """,
]


class PostgresAccountStore(SqlAccountStore):
    """Implements :class:`comfytavern.storage.accounts.AccountStore` on PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        super().__init__(PostgresDialect(db), MIGRATIONS)
        self.db = db
