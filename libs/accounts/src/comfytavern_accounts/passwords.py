"""Secrets of the account-backed auth modes: password hashes, session tokens, service API keys.

- passwords: Argon2id PHC strings (``cryptography``), verified in constant time, with a dummy hash
  for unknown users so timing does not reveal which accounts exist;
- session tokens: 256 random bits; only their SHA-256 is stored (a database leak yields no session);
- service API keys: ``ctsk_<lookup id>_<secret>``; the lookup id is indexed, the secret is stored as
  an HMAC-SHA256 under a server pepper (:class:`comfytavern_accounts.secrets.ServerSecrets`) and compared
  with ``hmac.compare_digest``.

The master keyring and the pepper are :mod:`comfytavern_accounts.secrets` (the ``SECRETS``
service the auth modes and the users plugin share).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar

__all__ = [
    "PasswordHasher",
    "PasswordHasherBusy",
    "ServiceKeyParts",
    "hash_secret",
    "new_service_key",
    "new_session_token",
    "normalise_password",
    "parse_service_key",
    "service_key_digest",
    "session_digest",
]

T = TypeVar("T")

MAX_PASSWORD_CHARS = 1024
SERVICE_KEY_PREFIX = "ctsk_"
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_LOOKUP_LEN = 12
_SECRET_LEN = 43
_KEY_RE = re.compile(rf"^{SERVICE_KEY_PREFIX}([0-9A-Za-z]{{{_LOOKUP_LEN}}})_([0-9A-Za-z]{{{_SECRET_LEN}}})$")


# -- passwords -------------------------------------------------------------------------------
def normalise_password(password: str) -> bytes:
    """NFKC-normalised UTF-8 bytes, so the same password typed on two keyboards matches."""
    if len(password) > MAX_PASSWORD_CHARS:
        raise ValueError(f"password is too long (at most {MAX_PASSWORD_CHARS} characters)")
    return unicodedata.normalize("NFKC", password).encode("utf-8")


#: OpenSSL's multi-lane Argon2id deadlocks when two threads derive at once (lanes > 1, seen with
#: cryptography + OpenSSL here: both calls never return). Every derivation in the process holds
#: this lock, so concurrent logins queue instead of freezing.
_ARGON2_LOCK = threading.Lock()


class PasswordHasherBusy(Exception):
    """Too many derivations are waiting (or the one running is stuck): answer 503, retry later."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many password checks are waiting; try again shortly")
        self.retry_after = retry_after


class _Queue:
    """The derivations of one event loop: ``size`` waiting or running, ``gate`` lets one through."""

    def __init__(self) -> None:
        self.size = 0
        self.gate = anyio.Lock()
        #: The hasher's own worker thread, so anyio's shared pool (nodes use it) never delays a login.
        self.threads = anyio.CapacityLimiter(1)


class PasswordHasher:
    """Argon2id with fixed parameters; ``needs_rehash`` tells when a stored hash is outdated.

    Defaults are RFC 9106's second recommendation (64 MiB, 3 passes, 4 lanes). Hashing is slow on
    purpose, so the async methods run it in a worker thread, one derivation at a time
    (``_ARGON2_LOCK``; this also bounds the memory concurrent logins take). Waiting derivations
    form a bounded queue: when ``queue_limit`` are already waiting or running, or a wait exceeds
    ``queue_timeout`` seconds (a flood, or a derivation that never returns), the call raises
    :class:`PasswordHasherBusy` instead of waiting forever, so a login answers 503 rather than
    hanging. The hasher's own thread limiter keeps derivations out of anyio's shared worker pool.
    """

    def __init__(
        self,
        *,
        memory_kib: int = 65536,
        iterations: int = 3,
        lanes: int = 4,
        queue_limit: int = 64,
        queue_timeout: float = 30.0,
    ) -> None:
        if memory_kib < 8 * lanes or iterations < 1 or lanes < 1:
            raise ValueError("invalid Argon2id parameters")
        if queue_limit < 1 or queue_timeout <= 0:
            raise ValueError("the password queue needs a limit of at least 1 and a positive timeout")
        self.memory_kib = memory_kib
        self.iterations = iterations
        self.lanes = lanes
        self.queue_limit = queue_limit
        self.queue_timeout = queue_timeout
        #: One queue per event loop (a test may drive one server from two loops; anyio primitives
        #: belong to one loop). Across loops and instances ``_ARGON2_LOCK`` still serialises.
        self._queues: RunVar[_Queue] = RunVar(f"ct-argon2-queue-{id(self)}")
        #: Running estimate of one derivation's duration (seconds), for ``Retry-After``.
        self._seconds = 0.25
        self._dummy: str | None = None

    def _kdf(self) -> Any:
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

        return Argon2id(
            salt=os.urandom(16),
            length=32,
            iterations=self.iterations,
            lanes=self.lanes,
            memory_cost=self.memory_kib,
        )

    def hash_sync(self, password: str) -> str:
        kdf = self._kdf()
        with _ARGON2_LOCK:
            return str(kdf.derive_phc_encoded(normalise_password(password)))

    def verify_sync(self, password: str, encoded: str | None) -> bool:
        """True when ``password`` matches; an unknown user (``None``) costs the same time."""
        from cryptography.exceptions import InvalidKey
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

        try:
            candidate = normalise_password(password)
        except ValueError:
            return False
        if encoded is None:
            # Unknown user: do the same work against a throw-away hash, then fail.
            if self._dummy is None:
                self._dummy = self.hash_sync(secrets.token_urlsafe(16))
            try:
                with _ARGON2_LOCK:
                    Argon2id.verify_phc_encoded(candidate, self._dummy)
            except (InvalidKey, ValueError):
                pass
            return False
        try:
            with _ARGON2_LOCK:
                Argon2id.verify_phc_encoded(candidate, encoded)
        except (InvalidKey, ValueError):
            return False
        return True

    def needs_rehash(self, encoded: str) -> bool:
        return f"$m={self.memory_kib},t={self.iterations},p={self.lanes}$" not in encoded

    def _queue(self) -> _Queue:
        try:
            return self._queues.get()
        except LookupError:
            queue = _Queue()
            self._queues.set(queue)
            return queue

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        queue = self._queue()
        if queue.size >= self.queue_limit:
            raise PasswordHasherBusy(max(1.0, queue.size * self._seconds))
        queue.size += 1
        try:
            try:
                with anyio.fail_after(self.queue_timeout):
                    await queue.gate.acquire()
            except TimeoutError:
                raise PasswordHasherBusy(max(1.0, queue.size * self._seconds)) from None
            try:
                started = time.monotonic()
                result = await anyio.to_thread.run_sync(func, *args, limiter=queue.threads)
                self._seconds = 0.8 * self._seconds + 0.2 * (time.monotonic() - started)
                return result
            finally:
                queue.gate.release()
        finally:
            queue.size -= 1

    async def hash(self, password: str) -> str:
        """A new PHC string; raises :class:`PasswordHasherBusy` when the queue is full or stuck."""
        return await self._run(self.hash_sync, password)

    async def verify(self, password: str, encoded: str | None) -> bool:
        """See :meth:`verify_sync`; raises :class:`PasswordHasherBusy` like :meth:`hash`."""
        return await self._run(self.verify_sync, password, encoded)


# -- sessions --------------------------------------------------------------------------------
def new_session_token() -> str:
    """A fresh 256-bit session token for the cookie."""
    return secrets.token_urlsafe(32)


def session_digest(token: str) -> str:
    """What the database stores for a session: SHA-256 of the token (hex)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# -- service API keys ------------------------------------------------------------------------
def _base62(n_chars: int) -> str:
    return "".join(secrets.choice(_B62) for _ in range(n_chars))


@dataclass(frozen=True)
class ServiceKeyParts:
    """A freshly minted key: ``token`` is shown once; ``lookup_id`` and ``prefix`` are stored."""

    lookup_id: str
    secret: str

    @property
    def token(self) -> str:
        return f"{SERVICE_KEY_PREFIX}{self.lookup_id}_{self.secret}"

    @property
    def prefix(self) -> str:
        """Displayed in key listings so a person can tell keys apart."""
        return f"{SERVICE_KEY_PREFIX}{self.lookup_id}"


def new_service_key() -> ServiceKeyParts:
    """12 base62 characters of lookup id and 43 of secret (about 256 bits)."""
    return ServiceKeyParts(_base62(_LOOKUP_LEN), _base62(_SECRET_LEN))


def parse_service_key(token: str) -> ServiceKeyParts | None:
    """Split a presented key, or ``None`` when it is not in the ``ctsk_`` format."""
    match = _KEY_RE.match(token.strip())
    if match is None:
        return None
    return ServiceKeyParts(match.group(1), match.group(2))


def service_key_digest(pepper: bytes, secret: str) -> str:
    """HMAC-SHA256(pepper, secret): fast is right here, the secret has 256 bits of entropy."""
    return hmac.new(pepper, secret.encode("ascii"), hashlib.sha256).hexdigest()


def hash_secret(value: str) -> str:
    """A plain SHA-256 hex digest (for values that are already high-entropy)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()
