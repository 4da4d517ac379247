"""comfytavern_accounts.identity and the Origin rules of comfytavern.auth (the parts without HTTP; the
throttle is in test_throttle.py)."""

from __future__ import annotations

import pytest

from comfytavern.auth import is_loopback, origin_allowed
from comfytavern.config import ConfigError
from comfytavern_accounts.identity import (
    AuthSettings,
    check_new_password,
    check_scope,
    check_username,
    new_user_id,
    scope_covers,
)


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "ok"),
    [
        ("http://localhost:5573", "127.0.0.1:3233", ["http://localhost:5573"], True),
        ("http://localhost:5573/", "127.0.0.1:3233", ["http://localhost:5573"], True),
        ("http://127.0.0.1:3233", "127.0.0.1:3233", [], True),
        ("https://ct.example.com", "ct.example.com", [], True),
        ("https://ct.example.com", "ct.example.com:443", [], True),
        ("http://evil.example", "127.0.0.1:3233", ["http://localhost:5573"], False),
        ("http://127.0.0.1:3234", "127.0.0.1:3233", [], False),
        ("null", "127.0.0.1:3233", ["http://localhost:5573"], False),
        ("", "127.0.0.1:3233", [], False),
        ("not a url", "127.0.0.1:3233", [], False),
        ("http://anything.example", "127.0.0.1:3233", ["*"], True),
    ],
)
def test_origin_allowed(origin: str, host: str, allowed: list[str], ok: bool) -> None:
    assert origin_allowed(origin, host, allowed) is ok


@pytest.mark.parametrize(
    "origin",
    ["http://a:b", "http://[::1", "http://[::1]:99999", "http://127.0.0.1:99999999999999999999", "http://127.0.0.1:-1",
     "http://127.0.0.1:3233/path", "http://user:pw@127.0.0.1:3233", "ftp://127.0.0.1:3233", "http://", "http://:3233",
     "http://127.0.0.1:3233?x", "\x00", "http://\u0000:1"],
)
def test_malformed_origins_never_match_and_never_raise(origin: str) -> None:
    for scheme in (None, "http", "ws"):
        assert origin_allowed(origin, "127.0.0.1:3233", ["http://localhost:5573"], scheme=scheme) is False
    assert origin_allowed("http://127.0.0.1:3233", origin.removeprefix("http://"), [], scheme="http") is False


@pytest.mark.parametrize(
    ("origin", "host", "scheme", "ok"),
    [
        ("http://127.0.0.1:3233", "127.0.0.1:3233", "http", True),
        ("http://127.0.0.1:3233", "127.0.0.1:3233", "ws", True),
        ("https://127.0.0.1:3233", "127.0.0.1:3233", "http", False),
        ("https://127.0.0.1:3233", "127.0.0.1:3233", "ws", False),
        ("http://127.0.0.1:3233", "127.0.0.1:3233", "https", False),
        ("https://ct.example.com", "ct.example.com", "https", True),
        ("https://ct.example.com", "ct.example.com", "wss", True),
        ("https://ct.example.com", "ct.example.com", "http", False),
        ("HTTP://LOCALHOST:3233", "localhost:3233", "http", True),
        ("http://localhost", "localhost:80", "http", True),
    ],
)
def test_same_origin_compares_the_request_scheme(origin: str, host: str, scheme: str, ok: bool) -> None:
    assert origin_allowed(origin, host, [], scheme=scheme) is ok


def test_loopback_addresses() -> None:
    for host in ("127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost", "::ffff:127.0.0.1"):
        assert is_loopback(host)
    for host in ("0.0.0.0", "192.168.1.2", "10.0.0.1", "example.com", "", None, "testclient"):
        assert not is_loopback(host)


def test_scope_rules() -> None:
    known = {"runs", "account"}
    assert check_scope("*", known) == "*"
    assert check_scope("runs:read", known) == "runs:read"
    assert check_scope("account:*", known) == "account:*"
    for bad in ("runs", "runs:delete", "RUNS:read", "nope:read", "runs:read:x"):
        with pytest.raises(ValueError):
            check_scope(bad, known)
    assert scope_covers({"*"}, "*")
    assert scope_covers({"runs:write"}, "runs:read")
    assert scope_covers({"runs:write"}, "runs:*")
    assert scope_covers({"runs:*"}, "runs:write")
    assert not scope_covers({"runs:read"}, "runs:write")
    assert not scope_covers({"runs:*"}, "*")
    assert not scope_covers({"runs:*"}, "account:read")


def test_user_input_rules() -> None:
    assert check_username("  Alice ") == "Alice"
    assert check_username("本地用户") == "本地用户"
    for bad in ("", "  ", "x" * 51, "a\tb", "a\u200bb", 3):
        with pytest.raises(ValueError):
            check_username(bad)
    assert check_new_password("12345678", 8) == "12345678"
    for bad_password in ("1234567", "x" * 1025, None):
        with pytest.raises(ValueError):
            check_new_password(bad_password, 8)
    assert new_user_id().startswith("u_") and new_user_id() != new_user_id()


def test_settings_validation_names_the_key() -> None:
    assert AuthSettings.load({}, "$.x").registration == "admin"
    with pytest.raises(ConfigError, match=r"\$\.x: unknown setting\(s\) bogus"):
        AuthSettings.load({"bogus": 1}, "$.x", allowed={"cookie_secure"})
    with pytest.raises(ConfigError, match=r"\$\.x"):
        AuthSettings.load({"cookie_samesite": "none"}, "$.x")
    with pytest.raises(ConfigError, match="login_window_seconds"):
        AuthSettings.load({"login_window_seconds": 0}, "$.x")


@pytest.mark.anyio
async def test_hash_password_with_a_full_queue_is_a_503_with_retry_after() -> None:
    """A new password hash that cannot get a turn answers 503 (not a NameError 500)."""
    from comfytavern.http import ApiError
    from comfytavern_accounts.identity import AccountIdentity
    from comfytavern_accounts.passwords import PasswordHasherBusy

    class BusyHasher:
        async def hash(self, password: str) -> str:
            raise PasswordHasherBusy(retry_after=2.0)

    identity = AccountIdentity.__new__(AccountIdentity)
    identity.hasher = BusyHasher()  # type: ignore[assignment]
    with pytest.raises(ApiError) as caught:
        await identity.hash_password("a new password")
    assert caught.value.status == 503 and caught.value.headers == {"Retry-After": "3"}
