"""``SqliteAccountStore``: the embedded accounts backend (users, sessions, keys, credentials).

Runs on the kernel's shared :class:`~comfytavern.storage.sqlite.SqliteDatabase` (one connection,
WAL, foreign keys on). Timestamps are stored as fixed-width ISO-8601 UTC text, so SQL comparisons
and ``ORDER BY`` on them are chronological.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

import msgspec

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
from comfytavern.storage.sqlite import SqliteDatabase

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

_USER_COLUMNS = "u.id, u.username, u.is_admin, u.password_hash, u.created_at, u.updated_at"


def _ts(value: datetime) -> str:
    """Fixed-width UTC text (microseconds, ``Z``): sorts and compares chronologically."""
    if value.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _req_dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _user(row: sqlite3.Row, offset: int = 0) -> UserRecord:
    return UserRecord(
        id=row[offset],
        username=row[offset + 1],
        is_admin=bool(row[offset + 2]),
        password_hash=row[offset + 3],
        created_at=_req_dt(row[offset + 4]),
        updated_at=_dt(row[offset + 5]),
    )


def _session(row: sqlite3.Row) -> SessionRecord:
    return SessionRecord(
        id_hash=row["id_hash"],
        user_id=row["user_id"],
        created_at=_req_dt(row["created_at"]),
        last_seen_at=_req_dt(row["last_seen_at"]),
        expires_at=_req_dt(row["expires_at"]),
        ip=row["ip"],
        user_agent=row["user_agent"],
    )


def _key(row: sqlite3.Row) -> ServiceKeyRecord:
    return ServiceKeyRecord(
        id=row["id"],
        user_id=row["user_id"],
        name=row["name"],
        lookup_id=row["lookup_id"],
        prefix=row["prefix"],
        key_hash=row["key_hash"],
        scopes=tuple(json.loads(row["scopes"])),
        created_at=_req_dt(row["created_at"]),
        last_used_at=_dt(row["last_used_at"]),
    )


def _credential(row: sqlite3.Row) -> CredentialRecord:
    hint = row["display_hint"]
    return CredentialRecord(
        id=row["id"],
        user_id=row["user_id"],
        service_name=row["service_name"],
        display_name=row["display_name"],
        display_hint=None if hint is None else msgspec.json.decode(hint, type=DisplayHint),
        ciphertext=row["ciphertext"],
        created_at=_req_dt(row["created_at"]),
    )


def _conflict(exc: sqlite3.IntegrityError, what: str) -> AccountConflict:
    text = str(exc)
    if "username_key" in text:
        return AccountConflict("username", "this username is already taken")
    if "lookup_id" in text:
        return AccountConflict("lookup_id", f"{what} lookup id already exists")
    if "FOREIGN KEY" in text:
        return AccountConflict("user_id", "no such user")
    return AccountConflict("id", f"{what} id already exists")


class SqliteAccountStore:
    """Implements :class:`comfytavern.storage.accounts.AccountStore` on SQLite."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def open(self) -> None:
        await self.db.open()
        await self.db.migrate("accounts", MIGRATIONS)

    async def close(self) -> None:
        await self.db.close()

    async def _insert(self, sql: str, params: tuple[Any, ...], what: str) -> None:
        try:
            await self.db.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            raise _conflict(exc, what) from None

    # -- users -----------------------------------------------------------------------------
    async def create_user(self, user: UserRecord) -> None:
        await self._insert(
            "INSERT INTO users (id, username, username_key, password_hash, is_admin, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                user.id,
                user.username,
                username_key(user.username),
                user.password_hash,
                int(user.is_admin),
                _ts(user.created_at),
                None if user.updated_at is None else _ts(user.updated_at),
            ),
            "user",
        )

    async def get_user(self, user_id: str) -> UserRecord | None:
        row = await self.db.fetchone(f"SELECT {_USER_COLUMNS} FROM users u WHERE u.id = ?", (user_id,))
        return None if row is None else _user(row)

    async def get_user_by_username(self, username: str) -> UserRecord | None:
        row = await self.db.fetchone(
            f"SELECT {_USER_COLUMNS} FROM users u WHERE u.username_key = ?", (username_key(username),)
        )
        return None if row is None else _user(row)

    async def list_users(self) -> list[UserRecord]:
        rows = await self.db.fetchall(f"SELECT {_USER_COLUMNS} FROM users u ORDER BY u.created_at, u.rowid")
        return [_user(row) for row in rows]

    async def count_users(self, *, with_password: bool = False) -> int:
        where = " WHERE password_hash IS NOT NULL" if with_password else ""
        row = await self.db.fetchone(f"SELECT COUNT(*) FROM users{where}")
        return int(row[0]) if row is not None else 0

    async def update_user(self, user_id: str, changes: UserChanges) -> UserRecord | None:
        sets: list[str] = []
        params: list[Any] = []
        if changes.username is not msgspec.UNSET:
            sets += ["username = ?", "username_key = ?"]
            params += [changes.username, username_key(changes.username)]
        if changes.password_hash is not msgspec.UNSET:
            sets.append("password_hash = ?")
            params.append(changes.password_hash)
        if changes.is_admin is not msgspec.UNSET:
            sets.append("is_admin = ?")
            params.append(int(changes.is_admin))
        sets.append("updated_at = ?")
        params += [_ts(utc_now()), user_id]

        def apply(conn: sqlite3.Connection) -> sqlite3.Row | None:
            conn.execute(f"UPDATE users SET {', '.join(sets)} WHERE id = ?", params)
            return conn.execute(f"SELECT {_USER_COLUMNS} FROM users u WHERE u.id = ?", (user_id,)).fetchone()

        try:
            row = await self.db.run(apply)
        except sqlite3.IntegrityError as exc:
            raise _conflict(exc, "user") from None
        return None if row is None else _user(row)

    async def delete_user(self, user_id: str) -> bool:
        return await self.db.execute("DELETE FROM users WHERE id = ?", (user_id,)) > 0

    # -- sessions --------------------------------------------------------------------------
    async def create_session(self, session: SessionRecord) -> None:
        await self._insert(
            "INSERT INTO user_sessions (id_hash, user_id, created_at, last_seen_at, expires_at, ip, user_agent)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                session.id_hash,
                session.user_id,
                _ts(session.created_at),
                _ts(session.last_seen_at),
                _ts(session.expires_at),
                session.ip,
                session.user_agent,
            ),
            "session",
        )

    async def resolve_session(self, id_hash: str) -> tuple[SessionRecord, UserRecord] | None:
        row = await self.db.fetchone(
            f"SELECT s.*, {_USER_COLUMNS} FROM user_sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?",
            (id_hash,),
        )
        if row is None:
            return None
        return _session(row), _user(row, offset=7)

    async def touch_session(self, id_hash: str, last_seen_at: datetime) -> None:
        await self.db.execute(
            "UPDATE user_sessions SET last_seen_at = ? WHERE id_hash = ?", (_ts(last_seen_at), id_hash)
        )

    async def delete_session(self, id_hash: str) -> bool:
        return await self.db.execute("DELETE FROM user_sessions WHERE id_hash = ?", (id_hash,)) > 0

    async def delete_user_sessions(self, user_id: str, *, keep: str | None = None) -> int:
        if keep is None:
            return await self.db.execute("DELETE FROM user_sessions WHERE user_id = ?", (user_id,))
        return await self.db.execute(
            "DELETE FROM user_sessions WHERE user_id = ? AND id_hash <> ?", (user_id, keep)
        )

    async def purge_expired_sessions(self, now: datetime, idle_cutoff: datetime) -> int:
        return await self.db.execute(
            "DELETE FROM user_sessions WHERE expires_at <= ? OR last_seen_at < ?", (_ts(now), _ts(idle_cutoff))
        )

    # -- service API keys ------------------------------------------------------------------
    async def create_service_key(self, key: ServiceKeyRecord) -> None:
        await self._insert(
            "INSERT INTO service_api_keys (id, user_id, name, lookup_id, prefix, key_hash, scopes, created_at,"
            " last_used_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key.id,
                key.user_id,
                key.name,
                key.lookup_id,
                key.prefix,
                key.key_hash,
                json.dumps(list(key.scopes)),
                _ts(key.created_at),
                None if key.last_used_at is None else _ts(key.last_used_at),
            ),
            "service key",
        )

    async def list_service_keys(self, user_id: str) -> list[ServiceKeyRecord]:
        rows = await self.db.fetchall(
            "SELECT * FROM service_api_keys WHERE user_id = ? ORDER BY created_at DESC, rowid DESC", (user_id,)
        )
        return [_key(row) for row in rows]

    async def resolve_service_key(self, lookup_id: str) -> tuple[ServiceKeyRecord, UserRecord] | None:
        row = await self.db.fetchone(
            f"SELECT k.*, {_USER_COLUMNS} FROM service_api_keys k JOIN users u ON u.id = k.user_id"
            " WHERE k.lookup_id = ?",
            (lookup_id,),
        )
        if row is None:
            return None
        return _key(row), _user(row, offset=9)

    async def get_service_key(self, key_id: str) -> ServiceKeyRecord | None:
        row = await self.db.fetchone("SELECT * FROM service_api_keys WHERE id = ?", (key_id,))
        return None if row is None else _key(row)

    async def delete_service_key(self, key_id: str, *, user_id: str | None) -> bool:
        if user_id is None:
            return await self.db.execute("DELETE FROM service_api_keys WHERE id = ?", (key_id,)) > 0
        return (
            await self.db.execute("DELETE FROM service_api_keys WHERE id = ? AND user_id = ?", (key_id, user_id)) > 0
        )

    async def touch_service_key(self, key_id: str, last_used_at: datetime) -> None:
        await self.db.execute(
            "UPDATE service_api_keys SET last_used_at = ? WHERE id = ?", (_ts(last_used_at), key_id)
        )

    # -- external credentials --------------------------------------------------------------
    async def create_credential(self, credential: CredentialRecord) -> None:
        hint = credential.display_hint
        await self._insert(
            "INSERT INTO external_credentials (id, user_id, service_name, service_key, display_name, display_hint,"
            " ciphertext, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                credential.id,
                credential.user_id,
                credential.service_name,
                credential.service_name.strip().casefold(),
                credential.display_name,
                None if hint is None else msgspec.json.encode(hint).decode("utf-8"),
                credential.ciphertext,
                _ts(credential.created_at),
            ),
            "credential",
        )

    async def list_credentials(self, user_id: str) -> list[CredentialRecord]:
        rows = await self.db.fetchall(
            "SELECT * FROM external_credentials WHERE user_id = ? ORDER BY created_at DESC, rowid DESC", (user_id,)
        )
        return [_credential(row) for row in rows]

    async def find_credential(self, user_id: str, service_name: str) -> CredentialRecord | None:
        row = await self.db.fetchone(
            "SELECT * FROM external_credentials WHERE user_id = ? AND service_key = ?"
            " ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (user_id, service_name.strip().casefold()),
        )
        return None if row is None else _credential(row)

    async def delete_credential(self, credential_id: str, *, user_id: str) -> bool:
        return (
            await self.db.execute(
                "DELETE FROM external_credentials WHERE id = ? AND user_id = ?", (credential_id, user_id)
            )
            > 0
        )

    async def all_credentials(self) -> list[CredentialRecord]:
        rows = await self.db.fetchall("SELECT * FROM external_credentials ORDER BY created_at, rowid")
        return [_credential(row) for row in rows]

    async def replace_ciphertext(self, credential_id: str, old: str, new: str) -> bool:
        return (
            await self.db.execute(
                "UPDATE external_credentials SET ciphertext = ? WHERE id = ? AND ciphertext = ?",
                (new, credential_id, old),
            )
            > 0
        )
