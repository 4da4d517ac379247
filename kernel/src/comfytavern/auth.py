"""Identity: who is calling, the interface every auth mode implements, and the one middleware.

The kernel installs ONE middleware that asks the configured auth mode to authenticate each
HTTP/WebSocket connection and stores the resulting :class:`Principal` in the ASGI scope. Routes
declare what they need (see :mod:`comfytavern.http`); the route wrapper enforces it.

The middleware also refuses cross-site use of ambient credentials (the browser sends cookies, and
in the ``local`` mode the network position itself is the credential):

- an unsafe HTTP request (POST, PUT, PATCH, DELETE) that carries no ``Authorization`` header is
  refused with 403 when its ``Origin`` is neither this server's own origin nor one of
  ``server.cors_origins`` (``Origin: null`` never matches), or, without an ``Origin``, when
  ``Sec-Fetch-Site`` says ``cross-site``;
- a WebSocket handshake is refused (HTTP 403) under the same rule, whatever the method.

Requests without ``Origin`` and ``Sec-Fetch-Site`` (scripts, curl, server-to-server) pass: they do
not come from a browser page, so they carry no ambient credential an attacker could borrow.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit

import msgspec
from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from comfytavern.responses import ApiError, error_response

__all__ = [
    "PRINCIPAL_SCOPE_KEY",
    "UNSAFE_METHODS",
    "AuthBackend",
    "AuthMiddleware",
    "AuthStatus",
    "AuthStatusProvider",
    "Principal",
    "bearer_token",
    "current_principal",
    "is_loopback",
    "optional_principal",
    "origin_allowed",
    "scope_refusal",
    "websocket_principal",
]

PRINCIPAL_SCOPE_KEY = "comfytavern.principal"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The authenticated caller.

    ``via`` says how: ``local`` (no-login single user), ``session`` (cookie), ``key`` (service API
    key). Only key principals are limited by ``scopes``; ``"*"`` grants every scope.
    ``username`` is informational (for logs); ``id`` is what owns data.
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


def scope_refusal(principal: Principal, scope: str) -> str | None:
    """Why ``principal`` may not act under ``scope`` (``None`` if it may).

    The one wording of a missing scope, shared by the HTTP routes (403) and the WebSocket messages
    (an ``error`` reply), so both refuse the same key the same way.
    """
    if principal.has_scope(scope):
        return None
    return f"this API key lacks the scope {scope!r}"


@runtime_checkable
class AuthBackend(Protocol):
    """What an auth mode's factory returns.

    ``authenticate`` must be fast and must not raise for a bad credential (return ``None``; a route
    that needs a user then answers 401). ``routes`` are the mode's own routes (login, logout...),
    mounted only when the mode is selected. A mode may also implement
    :class:`AuthStatusProvider` so ``GET /api/auth/current`` can describe it.
    """

    name: str

    async def authenticate(self, conn: HTTPConnection) -> Principal | None: ...

    def routes(self) -> Sequence[BaseRoute]: ...


class AuthStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What the editor needs to know about the mode (turned into its ``UserContext``)."""

    #: ``True`` for accounts with usernames (the editor's ``MultiUser`` context).
    multi_user: bool = False
    #: A login is needed before anything user-scoped works.
    password_required: bool = False
    #: ``local-password`` with no password set yet (first run).
    password_setup_required: bool = False
    #: ``multi-user`` with no account yet: the first registration creates the administrator.
    admin_registration_required: bool = False
    #: ``multi-user``: anyone may register (otherwise only administrators create accounts).
    registration_open: bool = False


@runtime_checkable
class AuthStatusProvider(Protocol):
    async def status(self) -> AuthStatus: ...


def optional_principal(conn: HTTPConnection) -> Principal | None:
    return conn.scope.get(PRINCIPAL_SCOPE_KEY)


def current_principal(conn: HTTPConnection) -> Principal:
    """The caller; raises 401 when nobody is authenticated."""
    principal: Principal | None = conn.scope.get(PRINCIPAL_SCOPE_KEY)
    if principal is None:
        raise ApiError(401, "authentication required")
    return principal


async def websocket_principal(websocket: Any) -> Principal | None:
    """The WebSocket's caller; when nobody is authenticated the handshake is refused (the client
    sees HTTP 403) and ``None`` is returned. Call it before ``accept()``::

        principal = await websocket_principal(websocket)
        if principal is None:
            return
        await websocket.accept()
    """
    principal: Principal | None = websocket.scope.get(PRINCIPAL_SCOPE_KEY)
    if principal is None:
        await websocket.close(code=1008, reason="authentication required")
    return principal


def bearer_token(conn: HTTPConnection) -> str | None:
    """The token of an ``Authorization: Bearer`` header (``""`` for a malformed header, ``None`` if absent)."""
    header = conn.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return ""
    return token.strip()


_LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}


def is_loopback(host: str | None) -> bool:
    """True for addresses on this machine (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    if not host:
        return False
    host = host.strip("[]")
    return host in _LOOPBACK_HOSTS or host.startswith("127.") or host.startswith("::ffff:127.")


_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_WEB_SCHEMES = {"ws": "http", "wss": "https"}


def _origin_parts(origin: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of ``scheme://host[:port]`` (``ws``/``wss`` as ``http``/``https``);
    ``None`` for anything malformed (bad port, broken IPv6 literal, a path, credentials...)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    return _WEB_SCHEMES.get(scheme, scheme), parts.hostname, port or _DEFAULT_PORTS[scheme]


def origin_allowed(
    origin: str, host_header: str | None, allowed: Iterable[str], *, scheme: str | None = None
) -> bool:
    """Is a browser ``Origin`` trusted: this server itself, or listed in ``server.cors_origins``?

    Same-origin means the same scheme, host and port as the request: ``scheme`` is the request's
    (``http``/``https``, ``ws``/``wss``; behind a TLS-terminating proxy it is ``https`` only when
    the proxy's ``X-Forwarded-Proto`` is trusted, else list the public origin in
    ``server.cors_origins``), host and port come from the ``Host`` header. ``scheme=None`` compares
    host and port only. ``null`` and malformed origins or ``Host`` headers never match.
    """
    origin = origin.strip()
    if not origin or origin == "null":
        return False
    allowed = list(allowed)
    if "*" in allowed or origin.rstrip("/") in {a.rstrip("/") for a in allowed}:
        return True
    theirs = _origin_parts(origin)
    if theirs is None or not host_header:
        return False
    request_scheme = theirs[0] if scheme is None else _WEB_SCHEMES.get(scheme.lower(), scheme.lower())
    ours = _origin_parts(f"{request_scheme}://{host_header.strip()}")
    return ours is not None and theirs == ours


def _cross_site(conn: HTTPConnection, allowed: Iterable[str]) -> str | None:
    """Why the request counts as cross-site (``None`` when it does not)."""
    origin = conn.headers.get("origin")
    if origin is not None:
        if origin_allowed(origin, conn.headers.get("host"), allowed, scheme=conn.scope.get("scheme", "http")):
            return None
        if origin.strip() != "null" and _origin_parts(origin) is None:
            return f"malformed Origin header {origin[:200]!r}"
        return f"Origin {origin[:200]!r} is not allowed (add it to server.cors_origins)"
    if conn.headers.get("sec-fetch-site", "").lower() == "cross-site":
        return "cross-site request without an Origin"
    return None


class AuthMiddleware:
    """Pure ASGI middleware: resolves the principal once per connection via the selected mode,
    and refuses cross-site use of ambient credentials (module docstring).

    ``allowed_origins`` defaults to the running kernel's ``server.cors_origins``.
    """

    def __init__(self, app: ASGIApp, *, backend_getter: Any, allowed_origins: Sequence[str] | None = None) -> None:
        self.app = app
        self._backend_getter = backend_getter
        self._allowed = allowed_origins

    def _allowed_origins(self, scope: Scope) -> Sequence[str]:
        if self._allowed is not None:
            return self._allowed
        app = scope.get("app")
        kernel = getattr(getattr(app, "state", None), "kernel", None)
        config = getattr(kernel, "config", None)
        return list(config.server.cors_origins) if config is not None else []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope, receive)
        ambient = "authorization" not in conn.headers
        if ambient and (scope["type"] == "websocket" or scope.get("method") in UNSAFE_METHODS):
            reason = _cross_site(conn, self._allowed_origins(scope))
            if reason is not None:
                await _refuse(scope, receive, send, reason)
                return
        if PRINCIPAL_SCOPE_KEY not in scope:
            backend: AuthBackend | None = self._backend_getter()
            principal = None
            if backend is not None:
                principal = await backend.authenticate(conn)
            scope[PRINCIPAL_SCOPE_KEY] = principal
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, reason: str) -> None:
    if scope["type"] == "websocket":
        from starlette.websockets import WebSocket

        # Closing before accepting makes the server answer the handshake with HTTP 403.
        ws = WebSocket(scope, receive, send)
        await ws.close(code=1008, reason="cross-site WebSocket refused")
        return
    await error_response(403, "cross-site request refused", {"reason": reason})(scope, receive, send)
