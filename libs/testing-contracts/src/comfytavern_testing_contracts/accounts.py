"""The behaviour every :class:`~comfytavern.storage.accounts.AccountStore` backend must have.

Subclass :class:`AccountStoreContract` in a backend's tests and provide an async ``store`` fixture
that yields an opened, empty store::

    class TestMyAccounts(AccountStoreContract):
        @pytest.fixture
        async def store(self, tmp_path):
            store = MyAccountStore(...)
            await store.open()
            yield store
            await store.close()

The module needs ``pytest`` and ``anyio`` (test dependencies) and nothing else.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from comfytavern.storage.accounts import (
    AccountConflict,
    CredentialRecord,
    DisplayHint,
    ServiceKeyRecord,
    SessionRecord,
    UserChanges,
    UserRecord,
)

__all__ = ["AccountStoreContract"]

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def user(uid: str, name: str, *, at: datetime = T0, password: str | None = "$argon2id$x", admin: bool = False) -> UserRecord:
    return UserRecord(id=uid, username=name, password_hash=password, is_admin=admin, created_at=at)


def key(kid: str, uid: str, lookup: str, *, at: datetime = T0, scopes: tuple[str, ...] = ("runs:read",)) -> ServiceKeyRecord:
    return ServiceKeyRecord(
        id=kid, user_id=uid, name=f"key {kid}", lookup_id=lookup, prefix=f"ctsk_{lookup}", key_hash="h" * 64,
        scopes=scopes, created_at=at,
    )


def cred(cid: str, uid: str, service: str, *, at: datetime = T0, text: str = "v1:k:n:c") -> CredentialRecord:
    return CredentialRecord(
        id=cid, user_id=uid, service_name=service, display_name="main", display_hint=DisplayHint("sk-a", "wxyz"),
        ciphertext=text, created_at=at,
    )


def session(id_hash: str, uid: str, *, at: datetime = T0, idle_at: datetime | None = None, days: int = 30) -> SessionRecord:
    return SessionRecord(
        id_hash=id_hash, user_id=uid, created_at=at, last_seen_at=idle_at or at, expires_at=at + timedelta(days=days),
        ip="127.0.0.1", user_agent="pytest",
    )


@pytest.mark.anyio
class AccountStoreContract:
    """Inherit this; provide the ``store`` fixture (see the module docstring)."""

    # -- users -----------------------------------------------------------------------------
    async def test_create_and_get_user_round_trips_every_field(self, store: Any) -> None:
        original = user("u1", "Alice", admin=True)
        await store.create_user(original)
        assert await store.get_user("u1") == original
        assert await store.get_user("missing") is None

    async def test_usernames_are_unique_case_insensitively(self, store: Any) -> None:
        await store.create_user(user("u1", "Alice"))
        assert (await store.get_user_by_username("aLiCe")).id == "u1"
        with pytest.raises(AccountConflict) as caught:
            await store.create_user(user("u2", "ALICE"))
        assert caught.value.field == "username"
        with pytest.raises(AccountConflict) as caught:
            await store.create_user(user("u1", "Bob"))
        assert caught.value.field == "id"

    async def test_list_and_count_users(self, store: Any) -> None:
        await store.create_user(user("u2", "Second", at=T0 + timedelta(seconds=1)))
        await store.create_user(user("u1", "First"))
        await store.create_user(user("u3", "NoPassword", at=T0 + timedelta(seconds=2), password=None))
        assert [u.id for u in await store.list_users()] == ["u1", "u2", "u3"]
        assert await store.count_users() == 3
        assert await store.count_users(with_password=True) == 2

    async def test_update_user(self, store: Any) -> None:
        await store.create_user(user("u1", "Alice"))
        await store.create_user(user("u2", "Bob"))
        updated = await store.update_user("u1", UserChanges(username="Alicia", is_admin=True, password_hash=None))
        assert updated is not None
        assert (updated.username, updated.is_admin, updated.password_hash) == ("Alicia", True, None)
        assert updated.updated_at is not None and updated.updated_at.tzinfo is not None
        assert await store.get_user_by_username("alice") is None
        assert (await store.get_user_by_username("ALICIA")).id == "u1"
        with pytest.raises(AccountConflict) as caught:
            await store.update_user("u2", UserChanges(username="alicia"))
        assert caught.value.field == "username"
        assert await store.update_user("missing", UserChanges(username="x")) is None
        untouched = await store.update_user("u2", UserChanges())
        assert untouched is not None and untouched.username == "Bob"

    async def test_deleting_a_user_removes_everything_they_own(self, store: Any) -> None:
        await store.create_user(user("u1", "Alice"))
        await store.create_user(user("u2", "Bob"))
        for uid in ("u1", "u2"):
            await store.create_session(session(f"s-{uid}", uid))
            await store.create_service_key(key(f"k-{uid}", uid, f"lookup{uid}0000"))
            await store.create_credential(cred(f"c-{uid}", uid, "openai"))
        assert await store.delete_user("u1") is True
        assert await store.delete_user("u1") is False
        assert await store.resolve_session("s-u1") is None
        assert await store.get_service_key("k-u1") is None
        assert await store.list_credentials("u1") == []
        assert await store.resolve_session("s-u2") is not None
        assert await store.get_service_key("k-u2") is not None

    # -- sessions --------------------------------------------------------------------------
    async def test_sessions(self, store: Any) -> None:
        await store.create_user(user("u1", "Alice"))
        first = session("h1", "u1")
        await store.create_session(first)
        await store.create_session(session("h2", "u1"))
        found = await store.resolve_session("h1")
        assert found is not None
        assert found[0] == first and found[1].id == "u1"
        later = T0 + timedelta(hours=1)
        await store.touch_session("h1", later)
        assert (await store.resolve_session("h1"))[0].last_seen_at == later
        assert await store.delete_session("h1") is True
        assert await store.delete_session("h1") is False
        await store.create_session(session("h3", "u1"))
        assert await store.delete_user_sessions("u1", keep="h3") == 1
        assert await store.resolve_session("h2") is None
        assert await store.resolve_session("h3") is not None
        assert await store.delete_user_sessions("u1") == 1

    async def test_session_for_a_missing_user_is_refused(self, store: Any) -> None:
        with pytest.raises(AccountConflict) as caught:
            await store.create_session(session("h1", "nobody"))
        assert caught.value.field == "user_id"

    async def test_purge_expired_sessions(self, store: Any) -> None:
        await store.create_user(user("u1", "Alice"))
        now = T0 + timedelta(days=10)
        await store.create_session(session("expired", "u1", days=1))
        await store.create_session(session("idle", "u1", idle_at=T0))
        await store.create_session(session("fresh", "u1", idle_at=now - timedelta(minutes=1)))
        assert await store.purge_expired_sessions(now, now - timedelta(days=1)) == 2
        assert await store.resolve_session("fresh") is not None

    # -- service keys ----------------------------------------------------------------------
    async def test_service_keys(self, store: Any) -> None:
        await store.create_user(user("u1", "Alice"))
        await store.create_user(user("u2", "Bob"))
        older = key("k1", "u1", "AAAAAAAAAAAA", scopes=("*",))
        newer = key("k2", "u1", "BBBBBBBBBBBB", at=T0 + timedelta(seconds=1))
        await store.create_service_key(older)
        await store.create_service_key(newer)
        assert [k.id for k in await store.list_service_keys("u1")] == ["k2", "k1"]
        assert await store.list_service_keys("u2") == []
        found = await store.resolve_service_key("AAAAAAAAAAAA")
        assert found is not None and found[0] == older and found[1].id == "u1"
        assert await store.resolve_service_key("CCCCCCCCCCCC") is None
        assert await store.get_service_key("k2") == newer
        used = T0 + timedelta(minutes=5)
        await store.touch_service_key("k1", used)
        assert (await store.get_service_key("k1")).last_used_at == used
        with pytest.raises(AccountConflict) as caught:
            await store.create_service_key(key("k3", "u2", "AAAAAAAAAAAA"))
        assert caught.value.field == "lookup_id"
        assert await store.delete_service_key("k1", user_id="u2") is False
        assert await store.delete_service_key("k1", user_id="u1") is True
        assert await store.delete_service_key("k2", user_id=None) is True
        assert await store.list_service_keys("u1") == []

    async def test_same_timestamp_lists_newest_insert_first(self, store: Any) -> None:
        await store.create_user(user("u1", "Alice"))
        for index in range(3):
            await store.create_service_key(key(f"k{index}", "u1", f"LOOKUP{index:06d}"))
            await store.create_credential(cred(f"c{index}", "u1", "svc"))
        assert [k.id for k in await store.list_service_keys("u1")] == ["k2", "k1", "k0"]
        assert [c.id for c in await store.list_credentials("u1")] == ["c2", "c1", "c0"]
        assert (await store.find_credential("u1", "svc")).id == "c2"

    # -- credentials -----------------------------------------------------------------------
    async def test_credentials(self, store: Any) -> None:
        await store.create_user(user("u1", "Alice"))
        await store.create_user(user("u2", "Bob"))
        old = cred("c1", "u1", "OpenAI")
        new = cred("c2", "u1", "openai", at=T0 + timedelta(seconds=1), text="v1:k:n:newer")
        await store.create_credential(old)
        await store.create_credential(new)
        await store.create_credential(cred("c3", "u2", "openai"))
        assert [c.id for c in await store.list_credentials("u1")] == ["c2", "c1"]
        assert await store.find_credential("u1", " OPENAI ") == new
        assert (await store.find_credential("u2", "openai")).id == "c3"
        assert await store.find_credential("u1", "anthropic") is None
        assert {c.id for c in await store.all_credentials()} == {"c1", "c2", "c3"}
        assert await store.delete_credential("c1", user_id="u2") is False
        assert await store.delete_credential("c1", user_id="u1") is True
        assert await store.delete_credential("c1", user_id="u1") is False

    async def test_credential_without_optional_fields(self, store: Any) -> None:
        await store.create_user(user("u1", "Alice"))
        bare = msgspec.structs.replace(cred("c1", "u1", "svc"), display_name=None, display_hint=None)
        await store.create_credential(bare)
        assert await store.list_credentials("u1") == [bare]

    async def test_replace_ciphertext_is_compare_and_swap(self, store: Any) -> None:
        await store.create_user(user("u1", "Alice"))
        await store.create_credential(cred("c1", "u1", "svc", text="old"))
        assert await store.replace_ciphertext("c1", "stale", "new") is False
        assert await store.replace_ciphertext("c1", "old", "new") is True
        assert (await store.find_credential("u1", "svc")).ciphertext == "new"
        assert await store.replace_ciphertext("missing", "old", "new") is False
