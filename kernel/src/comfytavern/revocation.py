"""Credential revocation: how long-lived connections learn that the identity they opened with ended.

An HTTP request is authenticated once and is over in a moment; a WebSocket lives for hours, so a
key deleted, a logout, a password change or a deleted account must reach the sockets opened
before. Two mechanisms, both here so every auth mode and every long-lived route share them:

- :class:`Revocations` (``kernel.revocations``) carries *announcements*: whoever ends a
  credential (the account routes, the auth modes' logout and password change, the CLI) calls
  :meth:`Revocations.announce`; listeners (the ``/ws`` sockets; the distributed plugin, which
  relays announcements to the other instances) act on them at once.
- :func:`reauthenticate` *re-checks* a connection's credential with the auth mode, exactly as a new
  request would be checked. A socket does it before every message it acts on, which covers what no
  announcement reaches (a change made by another process without a shared bus, an expired
  session, a row deleted by hand).

Hand-written (no library offers it): it is a list of callbacks and one comparison.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

import anyio
import msgspec
from starlette.requests import HTTPConnection

from comfytavern.auth import AuthBackend, Principal

__all__ = ["Revocation", "RevocationListener", "Revocations", "reauthenticate"]

log = logging.getLogger("comfytavern.revocation")

#: How long one listener may take to act on an announcement (a relay to Redis, say).
LISTENER_TIMEOUT = 5.0


class Revocation(msgspec.Struct, frozen=True, kw_only=True):
    """One credential (or every credential of a kind) that stopped being valid.

    ``kind``: ``key`` (the service key ``credential_id``), ``session`` (the session whose id hash is
    ``credential_id``), ``sessions`` (every login session of ``user_id``: a password change) or
    ``user`` (the account ``user_id`` is gone: every credential of it). ``user_id`` may be ``None``
    for ``key`` and ``session`` when the announcer does not know it (ids are unique anyway).
    Also the wire format between instances.
    """

    kind: Literal["key", "session", "sessions", "user"]
    user_id: str | None = None
    credential_id: str | None = None

    @classmethod
    def key(cls, key_id: str, user_id: str | None = None) -> Revocation:
        return cls(kind="key", user_id=user_id, credential_id=key_id)

    @classmethod
    def session(cls, session_id: str, user_id: str | None = None) -> Revocation:
        return cls(kind="session", user_id=user_id, credential_id=session_id)

    @classmethod
    def sessions(cls, user_id: str) -> Revocation:
        return cls(kind="sessions", user_id=user_id)

    @classmethod
    def user(cls, user_id: str) -> Revocation:
        return cls(kind="user", user_id=user_id)

    def covers(self, principal: Principal) -> bool:
        """Whether ``principal`` was authenticated with a credential this revocation ended."""
        if self.user_id is not None and principal.id != self.user_id:
            return False
        if self.kind == "user":
            return self.user_id is not None
        if self.kind == "sessions":
            return self.user_id is not None and principal.via == "session"
        if self.kind == "key":
            return principal.via == "key" and principal.key_id is not None and principal.key_id == self.credential_id
        return principal.via == "session" and principal.session_id is not None and principal.session_id == self.credential_id


#: ``listener(revocation, origin)``; ``origin`` is ``None`` for an announcement made in this
#: process, else the id of the process it was relayed from. May be sync or async.
RevocationListener = Callable[[Revocation, str | None], Awaitable[None] | None]


class Revocations:
    """The kernel's announcement board (``kernel.revocations``; also the ``REVOCATIONS`` service)."""

    def __init__(self) -> None:
        self._listeners: list[RevocationListener] = []

    def listen(self, listener: RevocationListener) -> Callable[[], None]:
        """Call ``listener`` for every announcement from now on; returns the function that stops it."""
        self._listeners.append(listener)

        def stop() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return stop

    async def announce(self, revocation: Revocation, *, origin: str | None = None) -> None:
        """Tell every listener, after the credential was removed from storage.

        Never raises: a failing or slow listener is logged and skipped, because the logout or key
        deletion that announces has already happened and must still answer.
        """
        for listener in tuple(self._listeners):
            try:
                result = listener(revocation, origin)
                if inspect.isawaitable(result):
                    with anyio.move_on_after(LISTENER_TIMEOUT) as scope:
                        await result
                    if scope.cancelled_caught:
                        log.warning("a revocation listener took more than %.0f s; skipped", LISTENER_TIMEOUT)
            except Exception:  # noqa: BLE001 - one bad listener must not stop the others
                log.exception("revocation listener failed for %s", revocation)

    @property
    def listener_count(self) -> int:
        return len(self._listeners)


async def reauthenticate(backend: AuthBackend | None, conn: HTTPConnection, principal: Principal) -> Principal | None:
    """The caller of ``conn`` now, if it is still ``principal``'s credential; ``None`` if not.

    The auth mode authenticates the connection's original headers again (the cookie, the
    ``Authorization`` header, ...), exactly as for a new request. The result must be the same user
    through the same credential (same ``via``, key id and session id); fresher details (username,
    administrator flag) are taken from it.
    """
    if backend is None:
        return None
    fresh = await backend.authenticate(conn)
    if not isinstance(fresh, Principal):
        return None
    same = (
        fresh.id == principal.id
        and fresh.via == principal.via
        and fresh.key_id == principal.key_id
        and fresh.session_id == principal.session_id
    )
    return fresh if same else None
