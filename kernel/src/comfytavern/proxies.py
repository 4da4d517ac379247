"""The client's address: forwarded headers count only when a configured proxy sent them.

Why the app does this and not uvicorn: uvicorn trusts ``X-Forwarded-For`` from 127.0.0.1 by
default, so any program on the machine, or a reverse proxy there that passes the header through,
picks the client address, and with it the login throttle's counters and the "from this machine"
rule of first-run set-up. Here only peers listed in ``server.trusted_proxies`` (default: none) may
set the address (``X-Forwarded-For``) and scheme (``X-Forwarded-Proto``); the parsing is uvicorn's
own :class:`~uvicorn.middleware.proxy_headers.ProxyHeadersMiddleware` (it takes the right-most
address no trusted proxy added), and ``comfytavern serve`` switches uvicorn's default off.

A request that carries forwarding headers from a peer that is not trusted keeps the peer's address
and is marked (:func:`forwarded_untrusted`), so "this machine" checks can refuse it: it came
through a proxy that nobody configured. The first such peer is logged once, with the setting to use.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

__all__ = ["FORWARDING_HEADERS", "TrustedProxyMiddleware", "check_trusted_proxies", "forwarded_untrusted"]

log = logging.getLogger("comfytavern.proxies")

#: Headers by which a proxy says who the client is.
FORWARDING_HEADERS = frozenset({b"x-forwarded-for", b"forwarded", b"x-real-ip"})
_MARK = "comfytavern.forwarded_untrusted"
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def check_trusted_proxies(entries: Sequence[str], where: str = "$.server.trusted_proxies") -> list[_Network]:
    """Parse ``server.trusted_proxies``: IP addresses or networks (``10.0.0.0/8``); a
    :class:`ValueError` names the entry (uvicorn would silently never match a mistyped one)."""
    networks: list[_Network] = []
    for index, entry in enumerate(entries):
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=True))
        except ValueError:
            raise ValueError(
                f"{where}[{index}]: {entry!r} is not an IP address or network (e.g. 10.0.0.2 or 10.0.0.0/8)"
            ) from None
    return networks


class TrustedProxyMiddleware:
    """Pure ASGI; outermost, so logs, limits and auth all see the same client address."""

    def __init__(self, app: ASGIApp, *, trusted: Sequence[str] = ()) -> None:
        self.app = app
        self.networks = check_trusted_proxies(trusted)
        self.forwarding: ASGIApp = (
            ProxyHeadersMiddleware(app, trusted_hosts=[str(n) for n in self.networks])  # type: ignore[arg-type,assignment]
            if self.networks
            else app
        )
        self._warned: set[str] = set()

    def _trusted(self, host: str | None) -> bool:
        try:
            address = ipaddress.ip_address(host or "")
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        peer = client[0] if client else None
        if self._trusted(peer):
            await self.forwarding(scope, receive, send)
            return
        if any(name in FORWARDING_HEADERS for name, _ in scope.get("headers", ())):
            scope[_MARK] = True
            if peer is not None and peer not in self._warned and len(self._warned) < 64:
                self._warned.add(peer)
                log.warning(
                    "a request from %s carries forwarding headers (X-Forwarded-For...), which are ignored: "
                    "if a reverse proxy runs there, list it in server.trusted_proxies",
                    peer,
                )
        await self.app(scope, receive, send)


def forwarded_untrusted(conn: HTTPConnection) -> bool:
    """Whether the request carried forwarding headers from a peer that is not a trusted proxy."""
    return bool(conn.scope.get(_MARK))
