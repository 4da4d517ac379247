"""Identity: who is calling, and the interface every auth mode implements.

The kernel installs ONE middleware that asks the configured auth mode to authenticate each
HTTP/WebSocket connection and stores the resulting :class:`Principal` in the ASGI scope. Routes
declare what they need (see :mod:`comfytavern.http`); the route wrapper enforces it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec
from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "PRINCIPAL_SCOPE_KEY",
    "AuthBackend",
    "AuthMiddleware",
    "Principal",
    "current_principal",
    "optional_principal",
]

PRINCIPAL_SCOPE_KEY = "comfytavern.principal"


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The authenticated caller.

    ``via`` says how: ``local`` (no-login single user), ``session`` (cookie), ``key`` (service API
    key). Only key principals are limited by ``scopes``; ``"*"`` grants every scope.
    """

    id: str
    username: str
    is_admin: bool = False
    via: Literal["local", "session", "key", "internal"] = "local"
    scopes: frozenset[str] = frozenset({"*"})
    session_id: str | None = None
    key_id: str | None = None

    def has_scope(self, scope: str) -> bool:
        if self.via != "key" or "*" in self.scopes:
            return True
        group = scope.split(":", 1)[0]
        return scope in self.scopes or f"{group}:*" in self.scopes or (
            scope.endswith(":read") and f"{group}:write" in self.scopes
        )


@runtime_checkable
class AuthBackend(Protocol):
    """What an auth mode's factory returns.

    ``authenticate`` must be fast and must not raise for a bad credential (return ``None``; a route
    that needs a user then answers 401). ``routes`` are the mode's own routes (login, logout...),
    mounted only when the mode is selected. ``user_context`` answers ``GET /api/auth/current``.
    """

    name: str

    async def authenticate(self, conn: HTTPConnection) -> Principal | None: ...

    def routes(self) -> Sequence[BaseRoute]: ...


def optional_principal(conn: HTTPConnection) -> Principal | None:
    return conn.scope.get(PRINCIPAL_SCOPE_KEY)


def current_principal(conn: HTTPConnection) -> Principal:
    """The caller; raises 401 when nobody is authenticated."""
    from comfytavern.http import ApiError

    principal = conn.scope.get(PRINCIPAL_SCOPE_KEY)
    if principal is None:
        raise ApiError(401, "authentication required")
    return principal


class AuthMiddleware:
    """Pure ASGI middleware: resolves the principal once per connection via the selected mode."""

    def __init__(self, app: ASGIApp, *, backend_getter: Any) -> None:
        self.app = app
        self._backend_getter = backend_getter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and PRINCIPAL_SCOPE_KEY not in scope:
            backend: AuthBackend | None = self._backend_getter()
            principal = None
            if backend is not None:
                principal = await backend.authenticate(HTTPConnection(scope, receive))
            scope[PRINCIPAL_SCOPE_KEY] = principal
        await self.app(scope, receive, send)
