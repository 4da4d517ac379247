"""``SqlAccountStore``: users, sessions, service keys and credentials on any :class:`SqlDialect`.

Lists are newest first with insertion order breaking ties (the dialect's tie-break column),
usernames are unique by :func:`~comfytavern.storage.accounts.username_key`, deleting a user
cascades (foreign keys in the backend's migrations).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from datetime import datetime
from typing import Any, TypeVar

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
from comfytavern_sqlstores.dialect import ConflictField, Row, SqlDialect

__all__ = ["SqlAccountStore"]

T = TypeVar("T")

# Aliased so a joined row (``s.*`` / ``k.*`` plus the user) never has two columns of one name.
_USER_COLUMNS = (
    "u.id AS u_id, u.username AS u_username, u.is_admin AS u_is_admin, u.password_hash AS u_password_hash,"
    " u.created_at AS u_created_at, u.updated_at AS u_updated_at"
)


def _conflict(field: ConflictField, what: str) -> AccountConflict:
    if field == "username":
        return AccountConflict("username", "this username is already taken")
    if field == "lookup_id":
        return AccountConflict("lookup_id", f"{what} lookup id already exists")
    if field == "user_id":
        return AccountConflict("user_id", "no such user")
    return AccountConflict("id", f"{what} id already exists")


class SqlAccountStore:
    """Implements :class:`comfytavern.storage.accounts.AccountStore` on a SQL dialect."""

    def __init__(self, dialect: SqlDialect, migrations: Sequence[str]) -> None:
        self.dialect = dialect
        self.migrations = migrations

    async def open(self) -> None:
        await self.dialect.open("accounts", self.migrations)

    async def close(self) -> None:
        await self.dialect.close()

    # -- encoding --------------------------------------------------------------------------
    def _opt_ts(self, value: datetime | None) -> Any:
        return None if value is None else self.dialect.ts_to_db(value)

    def _opt_dt(self, value: Any) -> datetime | None:
        return None if value is None else self.dialect.ts_from_db(value)

    def _user(self, row: Row) -> UserRecord:
        return UserRecord(
            id=row["u_id"],
            username=row["u_username"],
            is_admin=bool(row["u_is_admin"]),
            password_hash=row["u_password_hash"],
            created_at=self.dialect.ts_from_db(row["u_created_at"]),
            updated_at=self._opt_dt(row["u_updated_at"]),
        )

    def _session(self, row: Row) -> SessionRecord:
        return SessionRecord(
            id_hash=row["id_hash"],
            user_id=row["user_id"],
            created_at=self.dialect.ts_from_db(row["created_at"]),
            last_seen_at=self.dialect.ts_from_db(row["last_seen_at"]),
            expires_at=self.dialect.ts_from_db(row["expires_at"]),
            ip=row["ip"],
            user_agent=row["user_agent"],
        )

    def _key(self, row: Row) -> ServiceKeyRecord:
        return ServiceKeyRecord(
            id=row["id"],
            user_id=row["user_id"],
            name=row["name"],
            lookup_id=row["lookup_id"],
            prefix=row["prefix"],
            key_hash=row["key_hash"],
            scopes=tuple(self.dialect.json_from_db(row["scopes"])),
            created_at=self.dialect.ts_from_db(row["created_at"]),
            last_used_at=self._opt_dt(row["last_used_at"]),
        )

    def _credential(self, row: Row) -> CredentialRecord:
        hint = row["display_hint"]
        return CredentialRecord(
            id=row["id"],
            user_id=row["user_id"],
            service_name=row["service_name"],
            display_name=row["display_name"],
            display_hint=None if hint is None else msgspec.convert(self.dialect.json_from_db(hint), DisplayHint),
            ciphertext=row["ciphertext"],
            created_at=self.dialect.ts_from_db(row["created_at"]),
        )

    async def _guarded(self, operation: Awaitable[T], what: str) -> T:
        """Await a write, turning the backend's integrity error into :class:`AccountConflict`."""
        try:
            return await operation
        except Exception as exc:
            field = self.dialect.conflict_field(exc)
            if field is None:
                raise
            raise _conflict(field, what) from None

    # -- users -----------------------------------------------------------------------------
    async def create_user(self, user: UserRecord) -> None:
        await self._guarded(
            self.dialect.execute(
                "INSERT INTO users (id, username, username_key, password_hash, is_admin, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    user.id,
                    user.username,
                    username_key(user.username),
                    user.password_hash,
                    bool(user.is_admin),
                    self.dialect.ts_to_db(user.created_at),
                    self._opt_ts(user.updated_at),
                ),
            ),
            "user",
        )

    async def get_user(self, user_id: str) -> UserRecord | None:
        row = await self.dialect.fetchone(f"SELECT {_USER_COLUMNS} FROM users u WHERE u.id = ?", (user_id,))
        return None if row is None else self._user(row)

    async def get_user_by_username(self, username: str) -> UserRecord | None:
        row = await self.dialect.fetchone(
            f"SELECT {_USER_COLUMNS} FROM users u WHERE u.username_key = ?", (username_key(username),)
        )
        return None if row is None else self._user(row)

    async def list_users(self) -> list[UserRecord]:
        rows = await self.dialect.fetchall(
            f"SELECT {_USER_COLUMNS} FROM users u ORDER BY u.created_at, u.{self.dialect.tiebreak}"
        )
        return [self._user(row) for row in rows]

    async def count_users(self, *, with_password: bool = False) -> int:
        where = " WHERE password_hash IS NOT NULL" if with_password else ""
        row = await self.dialect.fetchone(f"SELECT COUNT(*) AS n FROM users{where}")
        return int(row["n"]) if row is not None else 0

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
            params.append(bool(changes.is_admin))
        sets.append("updated_at = ?")
        params += [self.dialect.ts_to_db(utc_now()), user_id]
        returning = _USER_COLUMNS.replace("u.", "")
        row = await self._guarded(
            self.dialect.fetchone(f"UPDATE users SET {', '.join(sets)} WHERE id = ? RETURNING {returning}", params),
            "user",
        )
        return None if row is None else self._user(row)

    async def delete_user(self, user_id: str) -> bool:
        return await self.dialect.execute("DELETE FROM users WHERE id = ?", (user_id,)) > 0

    # -- sessions --------------------------------------------------------------------------
    async def create_session(self, session: SessionRecord) -> None:
        ts = self.dialect.ts_to_db
        await self._guarded(
            self.dialect.execute(
                "INSERT INTO user_sessions (id_hash, user_id, created_at, last_seen_at, expires_at, ip, user_agent)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    session.id_hash,
                    session.user_id,
                    ts(session.created_at),
                    ts(session.last_seen_at),
                    ts(session.expires_at),
                    session.ip,
                    session.user_agent,
                ),
            ),
            "session",
        )

    async def resolve_session(self, id_hash: str) -> tuple[SessionRecord, UserRecord] | None:
        row = await self.dialect.fetchone(
            f"SELECT s.*, {_USER_COLUMNS} FROM user_sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?",
            (id_hash,),
        )
        if row is None:
            return None
        return self._session(row), self._user(row)

    async def touch_session(self, id_hash: str, last_seen_at: datetime) -> None:
        await self.dialect.execute(
            "UPDATE user_sessions SET last_seen_at = ? WHERE id_hash = ?",
            (self.dialect.ts_to_db(last_seen_at), id_hash),
        )

    async def delete_session(self, id_hash: str) -> bool:
        return await self.dialect.execute("DELETE FROM user_sessions WHERE id_hash = ?", (id_hash,)) > 0

    async def delete_user_sessions(self, user_id: str, *, keep: str | None = None) -> int:
        if keep is None:
            return await self.dialect.execute("DELETE FROM user_sessions WHERE user_id = ?", (user_id,))
        return await self.dialect.execute(
            "DELETE FROM user_sessions WHERE user_id = ? AND id_hash <> ?", (user_id, keep)
        )

    async def purge_expired_sessions(self, now: datetime, idle_cutoff: datetime) -> int:
        return await self.dialect.execute(
            "DELETE FROM user_sessions WHERE expires_at <= ? OR last_seen_at < ?",
            (self.dialect.ts_to_db(now), self.dialect.ts_to_db(idle_cutoff)),
        )

    # -- service API keys ------------------------------------------------------------------
    async def create_service_key(self, key: ServiceKeyRecord) -> None:
        await self._guarded(
            self.dialect.execute(
                "INSERT INTO service_api_keys (id, user_id, name, lookup_id, prefix, key_hash, scopes, created_at,"
                " last_used_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key.id,
                    key.user_id,
                    key.name,
                    key.lookup_id,
                    key.prefix,
                    key.key_hash,
                    self.dialect.json_to_db(list(key.scopes)),
                    self.dialect.ts_to_db(key.created_at),
                    self._opt_ts(key.last_used_at),
                ),
            ),
            "service key",
        )

    async def list_service_keys(self, user_id: str) -> list[ServiceKeyRecord]:
        tb = self.dialect.tiebreak
        rows = await self.dialect.fetchall(
            f"SELECT * FROM service_api_keys WHERE user_id = ? ORDER BY created_at DESC, {tb} DESC", (user_id,)
        )
        return [self._key(row) for row in rows]

    async def resolve_service_key(self, lookup_id: str) -> tuple[ServiceKeyRecord, UserRecord] | None:
        row = await self.dialect.fetchone(
            f"SELECT k.*, {_USER_COLUMNS} FROM service_api_keys k JOIN users u ON u.id = k.user_id"
            " WHERE k.lookup_id = ?",
            (lookup_id,),
        )
        if row is None:
            return None
        return self._key(row), self._user(row)

    async def get_service_key(self, key_id: str) -> ServiceKeyRecord | None:
        row = await self.dialect.fetchone("SELECT * FROM service_api_keys WHERE id = ?", (key_id,))
        return None if row is None else self._key(row)

    async def delete_service_key(self, key_id: str, *, user_id: str | None) -> bool:
        if user_id is None:
            return await self.dialect.execute("DELETE FROM service_api_keys WHERE id = ?", (key_id,)) > 0
        return (
            await self.dialect.execute(
                "DELETE FROM service_api_keys WHERE id = ? AND user_id = ?", (key_id, user_id)
            )
            > 0
        )

    async def touch_service_key(self, key_id: str, last_used_at: datetime) -> None:
        await self.dialect.execute(
            "UPDATE service_api_keys SET last_used_at = ? WHERE id = ?",
            (self.dialect.ts_to_db(last_used_at), key_id),
        )

    # -- external credentials --------------------------------------------------------------
    async def create_credential(self, credential: CredentialRecord) -> None:
        hint = credential.display_hint
        await self._guarded(
            self.dialect.execute(
                "INSERT INTO external_credentials (id, user_id, service_name, service_key, display_name,"
                " display_hint, ciphertext, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    credential.id,
                    credential.user_id,
                    credential.service_name,
                    credential.service_name.strip().casefold(),
                    credential.display_name,
                    None if hint is None else self.dialect.json_to_db(msgspec.to_builtins(hint)),
                    credential.ciphertext,
                    self.dialect.ts_to_db(credential.created_at),
                ),
            ),
            "credential",
        )

    async def list_credentials(self, user_id: str) -> list[CredentialRecord]:
        tb = self.dialect.tiebreak
        rows = await self.dialect.fetchall(
            f"SELECT * FROM external_credentials WHERE user_id = ? ORDER BY created_at DESC, {tb} DESC", (user_id,)
        )
        return [self._credential(row) for row in rows]

    async def find_credential(self, user_id: str, service_name: str) -> CredentialRecord | None:
        row = await self.dialect.fetchone(
            "SELECT * FROM external_credentials WHERE user_id = ? AND service_key = ?"
            f" ORDER BY created_at DESC, {self.dialect.tiebreak} DESC LIMIT 1",
            (user_id, service_name.strip().casefold()),
        )
        return None if row is None else self._credential(row)

    async def delete_credential(self, credential_id: str, *, user_id: str) -> bool:
        return (
            await self.dialect.execute(
                "DELETE FROM external_credentials WHERE id = ? AND user_id = ?", (credential_id, user_id)
            )
            > 0
        )

    async def all_credentials(self) -> list[CredentialRecord]:
        rows = await self.dialect.fetchall(
            f"SELECT * FROM external_credentials ORDER BY created_at, {self.dialect.tiebreak}"
        )
        return [self._credential(row) for row in rows]

    async def replace_ciphertext(self, credential_id: str, old: str, new: str) -> bool:
        return (
            await self.dialect.execute(
                "UPDATE external_credentials SET ciphertext = ? WHERE id = ? AND ciphertext = ?",
                (new, credential_id, old),
            )
            > 0
        )
