"""Host-header check: the defence against DNS rebinding.

A page on a hostile domain whose name resolves to 127.0.0.1 is same-origin with itself, so CORS
and Origin checks never fire for it; only the ``Host`` header shows the request was meant for
another name. A server listening on loopback therefore answers only to loopback host names unless
``server.allowed_hosts`` says otherwise.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from comfytavern.config import Config
from comfytavern.http import error_response

__all__ = ["HostCheckMiddleware", "effective_allowed_hosts", "host_allowed"]

LOOPBACK_NAMES = ("localhost", "*.localhost")


def _is_loopback_address(value: str) -> bool:
    try:
        return ipaddress.ip_address(value.strip("[]")).is_loopback
    except ValueError:
        return False


def effective_allowed_hosts(config: Config) -> list[str] | None:
    """The configured list, or for ``null``: loopback names when listening on loopback, else any."""
    if config.server.allowed_hosts is not None:
        return list(config.server.allowed_hosts)
    host = config.server.host
    if host == "localhost" or _is_loopback_address(host):
        return [*LOOPBACK_NAMES, "loopback-addresses"]
    return None


def _split_host(header: str) -> str:
    if header.startswith("["):
        return header[: header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def host_allowed(host_header: str, allowed: Sequence[str]) -> bool:
    host = _split_host(host_header.strip().lower()).rstrip(".")
    if not host:
        return False
    for pattern in allowed:
        if pattern == "*" or pattern == host:
            return True
        if pattern == "loopback-addresses" and _is_loopback_address(host):
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
    return False


class HostCheckMiddleware:
    """400 (HTTP) or a refused handshake (WebSocket) when the Host header is not allowed."""

    def __init__(self, app: ASGIApp, *, allowed: Sequence[str] | None) -> None:
        self.app = app
        self.allowed = None if allowed is None else [a.lower() for a in allowed]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.allowed is None or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = ""
        for name, value in scope.get("headers", ()):
            if name == b"host":
                host = value.decode("latin-1")
                break
        if host_allowed(host, self.allowed):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "host not allowed"})
            return
        await error_response(400, f"host {host!r} is not allowed (see server.allowed_hosts)")(scope, receive, send)
