"""Account-backed identity shared by every auth mode: service keys, sessions, logins, throttling.

The HTTP side of the login-based modes (login/logout/password responses and routes) is the
``comfytavern-login`` library (``libs/login``), which those auth-mode plugins depend on.

Auth-mode plugins compose :class:`AccountIdentity` instead of re-implementing secret handling:

- ``Authorization: Bearer ctsk_...`` is looked up by its indexed id, its secret compared in
  constant time against the stored HMAC, ``lastUsedAt`` refreshed at most once a minute;
- the session cookie (``HttpOnly``, ``SameSite``, ``Secure`` on request) holds a random token whose
  SHA-256 names a server-side session with idle and absolute limits;
- :meth:`AccountIdentity.check_password` verifies a password behind a
  :class:`~comfytavern_accounts.throttle.LoginThrottle` (the attempt is charged before the slow check) and
  with a dummy hash for unknown accounts; :meth:`AccountIdentity.start_session` always issues a new
  session id and drops the one the browser presented (no session fixation).
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import unicodedata
from datetime import datetime, timedelta
from typing import Literal

import anyio
import msgspec
from starlette.requests import HTTPConnection
from starlette.responses import Response

from comfytavern.auth import Principal, bearer_token, is_loopback
from comfytavern.config import ConfigError
from comfytavern.proxies import forwarded_untrusted
from comfytavern.responses import ApiError
from comfytavern.revocation import Revocation, Revocations
from comfytavern.storage.accounts import AccountStore, SessionRecord, UserChanges, UserRecord, utc_now
from comfytavern_accounts.passwords import (
    PasswordHasher,
    PasswordHasherBusy,
    new_session_token,
    parse_service_key,
    service_key_digest,
    session_digest,
)
from comfytavern_accounts.secrets import ServerSecrets
from comfytavern_accounts.throttle import LoginThrottle, ThrottleBusy, Throttled

__all__ = [
    "SESSION_SETTING_KEYS",
    "AccountIdentity",
    "AuthSettings",
    "LoginRefused",
    "LoginThrottle",
    "check_new_password",
    "check_scope",
    "check_username",
    "new_user_id",
    "refused",
    "scope_covers",
]

log = logging.getLogger("comfytavern_accounts.identity")

USERNAME_MAX = 50
_TOUCH_INTERVAL = timedelta(seconds=60)


class AuthSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``auth.settings.<mode>`` for the account-backed modes (all optional)."""

    #: A session ends after this long without a request.
    session_idle_minutes: int = 7 * 24 * 60
    #: A session ends this long after login, however active.
    session_max_days: int = 30
    #: Send the cookie with ``Secure`` (and the ``__Host-`` name prefix): set it behind HTTPS.
    cookie_secure: bool = False
    cookie_samesite: Literal["lax", "strict"] = "lax"
    #: Failed logins allowed per account and client address within the window (then 429).
    login_max_failures: int = 5
    #: Failed logins allowed per client address (all accounts) within the window (then 429).
    login_max_failures_per_ip: int = 20
    #: Failed logins per account (all addresses) within the window after which every attempt at
    #: the account is slowed by ``login_slowdown_seconds`` (never refused: see comfytavern_accounts.throttle).
    login_max_failures_per_account: int = 100
    login_slowdown_seconds: float = 2.0
    login_window_seconds: int = 900
    #: Argon2id cost for new password hashes.
    password_memory_kib: int = 65536
    password_iterations: int = 3
    password_lanes: int = 4
    #: Password checks and hashes waiting or running at once, and how long one may wait for its
    #: turn; beyond either the request gets 503 with ``Retry-After`` instead of hanging.
    password_queue_limit: int = 64
    password_queue_timeout_seconds: float = 30.0
    password_min_length: int = 8
    #: Who may do first-run set-up (the access password, the first administrator) over HTTP:
    #: ``loopback`` (only a browser on this machine) or ``any``.
    first_run_from: Literal["loopback", "any"] = "loopback"
    #: ``multi-user``: ``open`` lets anyone register; ``admin`` lets only administrators add users.
    registration: Literal["open", "admin"] = "admin"

    def validate(self, where: str) -> AuthSettings:
        checks = [
            (self.session_idle_minutes >= 1, "session_idle_minutes must be at least 1"),
            (self.session_max_days >= 1, "session_max_days must be at least 1"),
            (self.login_max_failures >= 1, "login_max_failures must be at least 1"),
            (self.login_max_failures_per_ip >= 1, "login_max_failures_per_ip must be at least 1"),
            (self.login_max_failures_per_account >= 1, "login_max_failures_per_account must be at least 1"),
            (self.login_window_seconds >= 1, "login_window_seconds must be at least 1"),
            (0 <= self.login_slowdown_seconds <= 60, "login_slowdown_seconds must be between 0 and 60"),
            (self.password_queue_limit >= 1, "password_queue_limit must be at least 1"),
            (self.password_queue_timeout_seconds > 0, "password_queue_timeout_seconds must be positive"),
            (self.password_min_length >= 1, "password_min_length must be at least 1"),
            (
                self.password_lanes >= 1 and self.password_iterations >= 1 and self.password_memory_kib >= 8 * self.password_lanes,
                "password_memory_kib must be at least 8 x password_lanes, iterations and lanes at least 1",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"{where}: {message}")
        return self

    @classmethod
    def load(cls, raw: object, where: str, *, allowed: set[str] | None = None) -> AuthSettings:
        """Validate ``raw``; ``allowed`` restricts which keys this mode accepts."""
        if isinstance(raw, dict) and allowed is not None:
            unknown = sorted(set(raw) - allowed)
            if unknown:
                raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
        try:
            return msgspec.convert(raw, cls).validate(where)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"invalid configuration at {where}: {exc}") from None


SESSION_SETTING_KEYS = {
    "session_idle_minutes", "session_max_days", "cookie_secure", "cookie_samesite", "login_max_failures",
    "login_max_failures_per_ip", "login_max_failures_per_account", "login_slowdown_seconds", "login_window_seconds",
    "password_memory_kib", "password_iterations", "password_lanes", "password_queue_limit",
    "password_queue_timeout_seconds", "password_min_length", "first_run_from",
}


# -- validation of user-chosen values ---------------------------------------------------------
def check_username(value: object) -> str:
    """A display/login name: 1-50 characters after trimming, no control characters."""
    if not isinstance(value, str):
        raise ValueError("username must be a string")
    name = unicodedata.normalize("NFC", value).strip()
    if not name:
        raise ValueError("username must not be empty")
    if len(name) > USERNAME_MAX:
        raise ValueError(f"username must be at most {USERNAME_MAX} characters")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise ValueError("username must not contain control characters")
    return name


def check_new_password(value: object, min_length: int) -> str:
    if not isinstance(value, str):
        raise ValueError("password must be a string")
    if len(value) < min_length:
        raise ValueError(f"password must be at least {min_length} characters")
    if len(value) > 1024:
        raise ValueError("password must be at most 1024 characters")
    return value


def new_user_id() -> str:
    """A random, path-safe user id (``u_`` + 16 hex digits)."""
    return f"u_{secrets.token_hex(8)}"


# -- identity ---------------------------------------------------------------------------------
class LoginRefused(Exception):
    """A login was refused; ``status`` is 401 (wrong credentials), 429 (throttled) or 503 (the
    password queue is full)."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


class AccountIdentity:
    """Resolves callers from the accounts store and manages their sessions."""

    def __init__(
        self, store: AccountStore, secrets_: ServerSecrets, settings: AuthSettings, *, revocations: Revocations | None = None
    ) -> None:
        self.store = store
        self.secrets = secrets_
        self.settings = settings
        #: Where ended sessions are announced (``kernel.revocations``), so open sockets close.
        self.revocations = revocations if revocations is not None else Revocations()
        self.hasher = PasswordHasher(
            memory_kib=settings.password_memory_kib,
            iterations=settings.password_iterations,
            lanes=settings.password_lanes,
            queue_limit=settings.password_queue_limit,
            queue_timeout=settings.password_queue_timeout_seconds,
        )
        self.throttle = LoginThrottle(
            per_account_ip=settings.login_max_failures,
            per_ip=settings.login_max_failures_per_ip,
            per_account=settings.login_max_failures_per_account,
            window=float(settings.login_window_seconds),
            slowdown=settings.login_slowdown_seconds,
        )

    # -- cookies ---------------------------------------------------------------------------
    @property
    def cookie_name(self) -> str:
        return "__Host-ct_session" if self.settings.cookie_secure else "ct_session"

    def set_cookie(self, response: Response, token: str) -> None:
        response.set_cookie(
            self.cookie_name,
            token,
            max_age=self.settings.session_max_days * 86400,
            path="/",
            secure=self.settings.cookie_secure,
            httponly=True,
            samesite=self.settings.cookie_samesite,
        )

    def clear_cookie(self, response: Response) -> None:
        response.delete_cookie(
            self.cookie_name,
            path="/",
            secure=self.settings.cookie_secure,
            httponly=True,
            samesite=self.settings.cookie_samesite,
        )

    # -- resolving callers -----------------------------------------------------------------
    async def authenticate(self, conn: HTTPConnection) -> Principal | None | Literal[False]:
        """A key or session principal; ``None`` if the caller presented nothing; ``False`` if
        it presented a credential that is not valid (the caller must then get no fallback)."""
        token = bearer_token(conn)
        if token is not None:
            principal = await self.from_service_key(token)
            return principal if principal is not None else False
        cookie = conn.cookies.get(self.cookie_name)
        if cookie:
            return await self.from_session(cookie)
        return None

    async def from_service_key(self, token: str) -> Principal | None:
        parts = parse_service_key(token)
        if parts is None:
            return None
        found = await self.store.resolve_service_key(parts.lookup_id)
        if found is None:
            return None
        key, user = found
        digest = service_key_digest(await self.secrets.pepper(), parts.secret)
        if not hmac.compare_digest(digest, key.key_hash):
            return None
        now = utc_now()
        if key.last_used_at is None or now - key.last_used_at >= _TOUCH_INTERVAL:
            await self.store.touch_service_key(key.id, now)
        return Principal(
            id=user.id,
            username=user.username,
            is_admin=user.is_admin,
            via="key",
            scopes=frozenset(key.scopes),
            key_id=key.id,
        )

    def _session_valid(self, session: SessionRecord, now: datetime) -> bool:
        idle = timedelta(minutes=self.settings.session_idle_minutes)
        return session.expires_at > now and session.last_seen_at + idle > now

    async def from_session(self, token: str) -> Principal | None:
        if len(token) > 256:
            return None
        id_hash = session_digest(token)
        found = await self.store.resolve_session(id_hash)
        if found is None:
            return None
        session, user = found
        now = utc_now()
        if not self._session_valid(session, now):
            await self.store.delete_session(id_hash)
            return None
        if now - session.last_seen_at >= _TOUCH_INTERVAL:
            await self.store.touch_session(id_hash, now)
        return Principal(id=user.id, username=user.username, is_admin=user.is_admin, via="session", session_id=id_hash)

    # -- logging in and out ----------------------------------------------------------------
    def may_do_first_run(self, conn: HTTPConnection) -> bool:
        """``first_run_from`` ``loopback``: the client is this machine, and not a request relayed
        by a proxy nobody listed in ``server.trusted_proxies`` (its clients could be anyone)."""
        if self.settings.first_run_from == "any":
            return True
        return is_loopback(conn.client.host if conn.client else None) and not forwarded_untrusted(conn)

    async def check_password(self, conn: HTTPConnection, account: str, user: UserRecord | None, password: str) -> UserRecord:
        """The user if ``password`` is theirs; raises :class:`LoginRefused` (401/429/503) otherwise.

        The throttle admits the attempt before the (slow) check and counts it when it ends, so
        parallel guesses cannot all slip under the limit (see :mod:`comfytavern_accounts.throttle`). An
        outdated stored hash is replaced after a success.
        """
        ip = conn.client.host if conn.client else "unknown"
        try:
            attempt = await self.throttle.begin(
                account.casefold(), ip, timeout=self.settings.password_queue_timeout_seconds
            )
        except Throttled as exc:
            raise LoginRefused(429, "too many failed login attempts; try again later", exc.retry_after) from None
        except ThrottleBusy as exc:
            raise LoginRefused(503, str(exc), exc.retry_after) from None
        encoded = user.password_hash if user is not None else None
        outcome: Literal["failed", "succeeded", "abandoned"] = "abandoned"
        try:
            if attempt.delay:
                await anyio.sleep(attempt.delay)
            try:
                ok = await self.hasher.verify(password, encoded)
            except PasswordHasherBusy as exc:
                raise LoginRefused(503, str(exc), exc.retry_after) from None
            if not ok or user is None:
                outcome = "failed"
                raise LoginRefused(401, "invalid username or password" if account else "invalid password")
            outcome = "succeeded"
        finally:
            # Abandoned (503, or the caller went away before learning the answer): not counted.
            self.throttle.finish(attempt, outcome)
        if encoded is not None and self.hasher.needs_rehash(encoded):
            try:
                await self.store.update_user(user.id, UserChanges(password_hash=await self.hasher.hash(password)))
            except PasswordHasherBusy:
                log.info("password hash of %s not upgraded now (the password queue is full); next login", user.id)
        return user

    async def hash_password(self, password: str) -> str:
        """A new hash for ``password``; a full password queue becomes HTTP 503 with ``Retry-After``."""
        try:
            return await self.hasher.hash(password)
        except PasswordHasherBusy as exc:
            raise refused(LoginRefused(503, str(exc), exc.retry_after)) from None

    async def start_session(self, conn: HTTPConnection, user_id: str) -> str:
        """A brand-new session for ``user_id`` (any session the caller presented is ended)."""
        old = conn.cookies.get(self.cookie_name)
        if old and await self.store.delete_session(session_digest(old)):
            await self.revocations.announce(Revocation.session(session_digest(old)))
        now = utc_now()
        await self.store.purge_expired_sessions(now, now - timedelta(minutes=self.settings.session_idle_minutes))
        token = new_session_token()
        await self.store.create_session(
            SessionRecord(
                id_hash=session_digest(token),
                user_id=user_id,
                created_at=now,
                last_seen_at=now,
                expires_at=now + timedelta(days=self.settings.session_max_days),
                ip=conn.client.host if conn.client else None,
                user_agent=(conn.headers.get("user-agent") or "")[:256] or None,
            )
        )
        return token

    async def end_session(self, conn: HTTPConnection) -> bool:
        token = conn.cookies.get(self.cookie_name)
        if not token or len(token) > 256:
            return False
        if not await self.store.delete_session(session_digest(token)):
            return False
        await self.revocations.announce(Revocation.session(session_digest(token)))
        return True


_SCOPE_RE = re.compile(r"^(\*|[a-z][a-z0-9_-]{0,31}:(read|write|\*))$")


def scope_covers(granted: frozenset[str] | set[str], wanted: str) -> bool:
    """Whether holding ``granted`` includes ``wanted`` (a key may not mint a stronger key)."""
    if "*" in granted:
        return True
    if wanted == "*":
        return False
    group, _, level = wanted.partition(":")
    if f"{group}:*" in granted:
        return True
    if level == "*":
        return f"{group}:write" in granted
    if level == "read":
        return wanted in granted or f"{group}:write" in granted
    return wanted in granted


def check_scope(value: str, known_groups: set[str]) -> str:
    """Validate one scope string against the grammar and the known groups."""
    if not _SCOPE_RE.match(value):
        raise ValueError(f"scope {value!r} is not valid (use '*', '<group>:read', '<group>:write' or '<group>:*')")
    group = value.split(":", 1)[0]
    if value != "*" and group not in known_groups:
        raise ValueError(f"unknown scope group {group!r} (known: {', '.join(sorted(known_groups))})")
    return value


def refused(exc: LoginRefused, *, wrong_status: int = 401) -> Exception:
    """The :class:`~comfytavern.http.ApiError` for a refused login (429 and 503 carry ``Retry-After``)."""
    if exc.status in (429, 503):
        seconds = max(1, int(exc.retry_after or 1) + 1)
        return ApiError(exc.status, exc.message, {"retryAfterSeconds": seconds}, headers={"Retry-After": str(seconds)})
    return ApiError(wrong_status, exc.message)
