"""The accounts store: users, sessions, service API keys and external credentials.

``storage.accounts`` selects a backend by name (``sqlite`` by default). Everything above this
interface (auth modes, account routes, the CLI) talks only to :class:`AccountStore`, so a
PostgreSQL backend replaces SQLite by implementing the same methods. The contract every backend
must meet (ordering, case-insensitive usernames, cascades, conflicts) is pinned down by the
parametrised suite in ``plugins/storage-sqlite/tests/test_accounts_contract.py``.

Records hold secrets only in derived form: password hashes (Argon2id PHC), session token digests,
service-key HMACs and AES-GCM ciphertexts. Timestamps are timezone-aware UTC datetimes.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

import msgspec

__all__ = [
    "AccountConflict",
    "AccountStore",
    "CredentialRecord",
    "DisplayHint",
    "ServiceKeyRecord",
    "SessionRecord",
    "UserChanges",
    "UserRecord",
    "iso_utc",
    "username_key",
    "utc_now",
]


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_utc(value: datetime) -> str:
    """The wire form the editor accepts: ``2026-11-21T18:42:57.067Z`` (UTC, milliseconds, ``Z``)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def username_key(username: str) -> str:
    """The uniqueness key of a username: NFKC + casefold, so ``Alice`` and ``alice`` collide."""
    return unicodedata.normalize("NFKC", username).casefold().strip()


class AccountConflict(Exception):
    """A unique value is already taken (``field`` names it: ``username``, ``id``...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class UserRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    username: str
    is_admin: bool = False
    #: Argon2id PHC string; ``None`` = no password (the ``local`` mode's user).
    password_hash: str | None = None
    created_at: datetime
    updated_at: datetime | None = None


class UserChanges(msgspec.Struct, frozen=True, kw_only=True):
    """A partial update; fields left ``UNSET`` keep their value."""

    username: str | msgspec.UnsetType = msgspec.UNSET
    password_hash: str | None | msgspec.UnsetType = msgspec.UNSET
    is_admin: bool | msgspec.UnsetType = msgspec.UNSET


class SessionRecord(msgspec.Struct, frozen=True, kw_only=True):
    #: SHA-256 (hex) of the cookie token; the token itself is never stored.
    id_hash: str
    user_id: str
    created_at: datetime
    last_seen_at: datetime
    #: Absolute end of the session (the idle limit is checked against ``last_seen_at``).
    expires_at: datetime
    ip: str | None = None
    user_agent: str | None = None


class ServiceKeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    user_id: str
    name: str | None = None
    #: The indexed public part of the key (``ctsk_<lookup_id>_<secret>``).
    lookup_id: str
    prefix: str
    #: HMAC-SHA256 of the secret under the server pepper (hex).
    key_hash: str
    scopes: tuple[str, ...] = ()
    created_at: datetime
    last_used_at: datetime | None = None


class DisplayHint(msgspec.Struct, frozen=True):
    prefix: str
    suffix: str


class CredentialRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    user_id: str
    service_name: str
    display_name: str | None = None
    display_hint: DisplayHint | None = None
    #: ``v1:<key id>:<nonce>:<ciphertext>`` (the accounts library's ``Keyring``).
    ciphertext: str
    created_at: datetime


@runtime_checkable
class AccountStore(Protocol):
    """What an accounts backend implements. Every method is async and safe to call concurrently.

    Lists are newest first (``created_at`` descending, insertion order breaking ties). Lookups by
    username and by service name are case-insensitive (:func:`username_key`, ``str.casefold``).
    Deleting a user removes their sessions, keys and credentials.
    """

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    # -- users -----------------------------------------------------------------------------
    async def create_user(self, user: UserRecord) -> None:
        """Insert; raises :class:`AccountConflict` when the id or the username is taken."""

    async def get_user(self, user_id: str) -> UserRecord | None: ...

    async def get_user_by_username(self, username: str) -> UserRecord | None: ...

    async def list_users(self) -> list[UserRecord]:
        """Oldest first (the order people were created in)."""

    async def count_users(self, *, with_password: bool = False) -> int:
        """How many users exist (only those who can log in, with ``with_password``)."""

    async def update_user(self, user_id: str, changes: UserChanges) -> UserRecord | None:
        """Apply ``changes`` (stamping ``updated_at``); ``None`` if no such user; may raise
        :class:`AccountConflict` for a taken username."""

    async def delete_user(self, user_id: str) -> bool: ...

    # -- sessions --------------------------------------------------------------------------
    async def create_session(self, session: SessionRecord) -> None: ...

    async def resolve_session(self, id_hash: str) -> tuple[SessionRecord, UserRecord] | None:
        """The session and its user in one round trip (expiry is the caller's decision)."""

    async def touch_session(self, id_hash: str, last_seen_at: datetime) -> None: ...

    async def delete_session(self, id_hash: str) -> bool: ...

    async def delete_user_sessions(self, user_id: str, *, keep: str | None = None) -> int:
        """Log a user out everywhere (except the session ``keep``); returns how many ended."""

    async def purge_expired_sessions(self, now: datetime, idle_cutoff: datetime) -> int:
        """Delete sessions past ``expires_at`` or last seen before ``idle_cutoff``."""

    # -- service API keys ------------------------------------------------------------------
    async def create_service_key(self, key: ServiceKeyRecord) -> None:
        """Insert; raises :class:`AccountConflict` if the id or lookup id exists."""

    async def list_service_keys(self, user_id: str) -> list[ServiceKeyRecord]: ...

    async def resolve_service_key(self, lookup_id: str) -> tuple[ServiceKeyRecord, UserRecord] | None: ...

    async def get_service_key(self, key_id: str) -> ServiceKeyRecord | None: ...

    async def delete_service_key(self, key_id: str, *, user_id: str | None) -> bool:
        """Delete the key; with ``user_id`` only if that user owns it (``None``: any owner, for the CLI)."""

    async def touch_service_key(self, key_id: str, last_used_at: datetime) -> None: ...

    # -- external credentials --------------------------------------------------------------
    async def create_credential(self, credential: CredentialRecord) -> None: ...

    async def list_credentials(self, user_id: str) -> list[CredentialRecord]: ...

    async def find_credential(self, user_id: str, service_name: str) -> CredentialRecord | None:
        """The newest credential of ``user_id`` for ``service_name`` (case-insensitive)."""

    async def delete_credential(self, credential_id: str, *, user_id: str) -> bool: ...

    async def all_credentials(self) -> list[CredentialRecord]:
        """Every credential of every user (master-key rotation re-encrypts them)."""

    async def replace_ciphertext(self, credential_id: str, old: str, new: str) -> bool:
        """Compare-and-swap the ciphertext; ``False`` if it changed meanwhile (or is gone)."""
