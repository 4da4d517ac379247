"""``storage.accounts = "postgres"``: users, sessions, service keys and credentials in PostgreSQL.

Same contract as the embedded SQLite store (``comfytavern.testing_contracts.accounts``): lists are
newest first with insertion order breaking ties (a ``seq`` column), usernames are unique by
:func:`~comfytavern.storage.accounts.username_key`, deleting a user cascades. Timestamps are
``TIMESTAMPTZ`` (microseconds, timezone-aware on the way back).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
import psycopg
from psycopg.types.json import Jsonb

from comfytavern.storage.accounts import (
    AccountConflict,
    CredentialRecord,
    DisplayHint,
    ServiceKeyRecord,
    SessionRecord,
    UserChanges,
    UserRecord,
    username_key,
    utc_now,
)
from comfytavern_storage_postgres.database import PostgresDatabase

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

_USER_COLUMNS = (
    "u.id AS u_id, u.username AS u_username, u.is_admin AS u_is_admin, u.password_hash AS u_password_hash,"
    " u.created_at AS u_created_at, u.updated_at AS u_updated_at"
)


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return value


def _maybe(value: datetime | None) -> datetime | None:
    return None if value is None else _aware(value)


def _user(row: dict[str, Any]) -> UserRecord:
    return UserRecord(
        id=row["u_id"],
        username=row["u_username"],
        is_admin=bool(row["u_is_admin"]),
        password_hash=row["u_password_hash"],
        created_at=row["u_created_at"],
        updated_at=row["u_updated_at"],
    )


def _session(row: dict[str, Any]) -> SessionRecord:
    return SessionRecord(
        id_hash=row["id_hash"],
        user_id=row["user_id"],
        created_at=row["created_at"],
        last_seen_at=row["last_seen_at"],
        expires_at=row["expires_at"],
        ip=row["ip"],
        user_agent=row["user_agent"],
    )


def _key(row: dict[str, Any]) -> ServiceKeyRecord:
    return ServiceKeyRecord(
        id=row["id"],
        user_id=row["user_id"],
        name=row["name"],
        lookup_id=row["lookup_id"],
        prefix=row["prefix"],
        key_hash=row["key_hash"],
        scopes=tuple(row["scopes"]),
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
    )


def _credential(row: dict[str, Any]) -> CredentialRecord:
    hint = row["display_hint"]
    return CredentialRecord(
        id=row["id"],
        user_id=row["user_id"],
        service_name=row["service_name"],
        display_name=row["display_name"],
        display_hint=None if hint is None else msgspec.convert(hint, DisplayHint),
        ciphertext=row["ciphertext"],
        created_at=row["created_at"],
    )


def _conflict(exc: psycopg.IntegrityError, what: str) -> AccountConflict:
    constraint = getattr(exc.diag, "constraint_name", None) or ""
    if constraint == "users_username_unique":
        return AccountConflict("username", "this username is already taken")
    if constraint == "service_api_keys_lookup_unique":
        return AccountConflict("lookup_id", f"{what} lookup id already exists")
    if isinstance(exc, psycopg.errors.ForeignKeyViolation):
        return AccountConflict("user_id", "no such user")
    return AccountConflict("id", f"{what} id already exists")


class PostgresAccountStore:
    """Implements :class:`comfytavern.storage.accounts.AccountStore` on PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    async def open(self) -> None:
        await self.db.open()
        try:
            await self.db.migrate("accounts", MIGRATIONS)
        except BaseException:
            await self.db.close()
            raise

    async def close(self) -> None:
        await self.db.close()

    async def _insert(self, query: str, params: tuple[Any, ...], what: str) -> None:
        try:
            await self.db.execute(query, params)
        except psycopg.IntegrityError as exc:
            raise _conflict(exc, what) from None

    # -- users -----------------------------------------------------------------------------
    async def create_user(self, user: UserRecord) -> None:
        await self._insert(
            "INSERT INTO users (id, username, username_key, password_hash, is_admin, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                user.id,
                user.username,
                username_key(user.username),
                user.password_hash,
                user.is_admin,
                _aware(user.created_at),
                _maybe(user.updated_at),
            ),
            "user",
        )

    async def get_user(self, user_id: str) -> UserRecord | None:
        row = await self.db.fetchone(f"SELECT {_USER_COLUMNS} FROM users u WHERE u.id = %s", (user_id,))
        return None if row is None else _user(row)

    async def get_user_by_username(self, username: str) -> UserRecord | None:
        row = await self.db.fetchone(
            f"SELECT {_USER_COLUMNS} FROM users u WHERE u.username_key = %s", (username_key(username),)
        )
        return None if row is None else _user(row)

    async def list_users(self) -> list[UserRecord]:
        rows = await self.db.fetchall(f"SELECT {_USER_COLUMNS} FROM users u ORDER BY u.created_at, u.seq")
        return [_user(row) for row in rows]

    async def count_users(self, *, with_password: bool = False) -> int:
        where = " WHERE password_hash IS NOT NULL" if with_password else ""
        row = await self.db.fetchone(f"SELECT COUNT(*) AS n FROM users{where}")
        return int(row["n"]) if row is not None else 0

    async def update_user(self, user_id: str, changes: UserChanges) -> UserRecord | None:
        sets: list[str] = []
        params: list[Any] = []
        if changes.username is not msgspec.UNSET:
            sets += ["username = %s", "username_key = %s"]
            params += [changes.username, username_key(changes.username)]
        if changes.password_hash is not msgspec.UNSET:
            sets.append("password_hash = %s")
            params.append(changes.password_hash)
        if changes.is_admin is not msgspec.UNSET:
            sets.append("is_admin = %s")
            params.append(bool(changes.is_admin))
        sets.append("updated_at = %s")
        params += [utc_now(), user_id]
        returning = _USER_COLUMNS.replace("u.", "")
        try:
            row = await self.db.fetchone(
                f"UPDATE users SET {', '.join(sets)} WHERE id = %s RETURNING {returning}", params
            )
        except psycopg.IntegrityError as exc:
            raise _conflict(exc, "user") from None
        return None if row is None else _user(row)

    async def delete_user(self, user_id: str) -> bool:
        return await self.db.execute("DELETE FROM users WHERE id = %s", (user_id,)) > 0

    # -- sessions --------------------------------------------------------------------------
    async def create_session(self, session: SessionRecord) -> None:
        await self._insert(
            "INSERT INTO user_sessions (id_hash, user_id, created_at, last_seen_at, expires_at, ip, user_agent)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                session.id_hash,
                session.user_id,
                _aware(session.created_at),
                _aware(session.last_seen_at),
                _aware(session.expires_at),
                session.ip,
                session.user_agent,
            ),
            "session",
        )

    async def resolve_session(self, id_hash: str) -> tuple[SessionRecord, UserRecord] | None:
        row = await self.db.fetchone(
            f"SELECT s.*, {_USER_COLUMNS} FROM user_sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = %s",
            (id_hash,),
        )
        if row is None:
            return None
        return _session(row), _user(row)

    async def touch_session(self, id_hash: str, last_seen_at: datetime) -> None:
        await self.db.execute(
            "UPDATE user_sessions SET last_seen_at = %s WHERE id_hash = %s", (_aware(last_seen_at), id_hash)
        )

    async def delete_session(self, id_hash: str) -> bool:
        return await self.db.execute("DELETE FROM user_sessions WHERE id_hash = %s", (id_hash,)) > 0

    async def delete_user_sessions(self, user_id: str, *, keep: str | None = None) -> int:
        if keep is None:
            return await self.db.execute("DELETE FROM user_sessions WHERE user_id = %s", (user_id,))
        return await self.db.execute(
            "DELETE FROM user_sessions WHERE user_id = %s AND id_hash <> %s", (user_id, keep)
        )

    async def purge_expired_sessions(self, now: datetime, idle_cutoff: datetime) -> int:
        return await self.db.execute(
            "DELETE FROM user_sessions WHERE expires_at <= %s OR last_seen_at < %s",
            (_aware(now), _aware(idle_cutoff)),
        )

    # -- service API keys ------------------------------------------------------------------
    async def create_service_key(self, key: ServiceKeyRecord) -> None:
        await self._insert(
            "INSERT INTO service_api_keys (id, user_id, name, lookup_id, prefix, key_hash, scopes, created_at,"
            " last_used_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                key.id,
                key.user_id,
                key.name,
                key.lookup_id,
                key.prefix,
                key.key_hash,
                Jsonb(list(key.scopes)),
                _aware(key.created_at),
                _maybe(key.last_used_at),
            ),
            "service key",
        )

    async def list_service_keys(self, user_id: str) -> list[ServiceKeyRecord]:
        rows = await self.db.fetchall(
            "SELECT * FROM service_api_keys WHERE user_id = %s ORDER BY created_at DESC, seq DESC", (user_id,)
        )
        return [_key(row) for row in rows]

    async def resolve_service_key(self, lookup_id: str) -> tuple[ServiceKeyRecord, UserRecord] | None:
        row = await self.db.fetchone(
            f"SELECT k.*, {_USER_COLUMNS} FROM service_api_keys k JOIN users u ON u.id = k.user_id"
            " WHERE k.lookup_id = %s",
            (lookup_id,),
        )
        if row is None:
            return None
        return _key(row), _user(row)

    async def get_service_key(self, key_id: str) -> ServiceKeyRecord | None:
        row = await self.db.fetchone("SELECT * FROM service_api_keys WHERE id = %s", (key_id,))
        return None if row is None else _key(row)

    async def delete_service_key(self, key_id: str, *, user_id: str | None) -> bool:
        if user_id is None:
            return await self.db.execute("DELETE FROM service_api_keys WHERE id = %s", (key_id,)) > 0
        return (
            await self.db.execute("DELETE FROM service_api_keys WHERE id = %s AND user_id = %s", (key_id, user_id))
            > 0
        )

    async def touch_service_key(self, key_id: str, last_used_at: datetime) -> None:
        await self.db.execute(
            "UPDATE service_api_keys SET last_used_at = %s WHERE id = %s", (_aware(last_used_at), key_id)
        )

    # -- external credentials --------------------------------------------------------------
    async def create_credential(self, credential: CredentialRecord) -> None:
        hint = credential.display_hint
        await self._insert(
            "INSERT INTO external_credentials (id, user_id, service_name, service_key, display_name, display_hint,"
            " ciphertext, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                credential.id,
                credential.user_id,
                credential.service_name,
                credential.service_name.strip().casefold(),
                credential.display_name,
                None if hint is None else Jsonb(msgspec.to_builtins(hint)),
                credential.ciphertext,
                _aware(credential.created_at),
            ),
            "credential",
        )

    async def list_credentials(self, user_id: str) -> list[CredentialRecord]:
        rows = await self.db.fetchall(
            "SELECT * FROM external_credentials WHERE user_id = %s ORDER BY created_at DESC, seq DESC", (user_id,)
        )
        return [_credential(row) for row in rows]

    async def find_credential(self, user_id: str, service_name: str) -> CredentialRecord | None:
        row = await self.db.fetchone(
            "SELECT * FROM external_credentials WHERE user_id = %s AND service_key = %s"
            " ORDER BY created_at DESC, seq DESC LIMIT 1",
            (user_id, service_name.strip().casefold()),
        )
        return None if row is None else _credential(row)

    async def delete_credential(self, credential_id: str, *, user_id: str) -> bool:
        return (
            await self.db.execute(
                "DELETE FROM external_credentials WHERE id = %s AND user_id = %s", (credential_id, user_id)
            )
            > 0
        )

    async def all_credentials(self) -> list[CredentialRecord]:
        rows = await self.db.fetchall("SELECT * FROM external_credentials ORDER BY created_at, seq")
        return [_credential(row) for row in rows]

    async def replace_ciphertext(self, credential_id: str, old: str, new: str) -> bool:
        return (
            await self.db.execute(
                "UPDATE external_credentials SET ciphertext = %s WHERE id = %s AND ciphertext = %s",
                (new, credential_id, old),
            )
            > 0
        )
