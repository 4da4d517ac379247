"""SSRF guard for user-supplied base URLs.

In multi-user mode a user must not make the server call its own loopback services, the cloud
metadata address or the private network. The host is resolved off the event loop
(``anyio.getaddrinfo``) and EVERY address must be public (or allowlisted by the operator): one
bad address refuses the URL, so round-robin DNS cannot slip a private target in.

DNS rebinding (a name that resolves to a public address for the check and a private one for the
connection) is closed differently per scheme:

* ``http``: the request is pinned to the vetted address (the URL carries the IP, the ``Host``
  header the original name), so no second lookup happens;
* ``https``: the connection uses the name for SNI and certificate checks; a rebound internal
  host cannot present a valid certificate for the attacker's name, so the handshake fails
  before any request byte is sent.

Redirects are never followed (the client is built with ``follow_redirects=False``).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from comfytavern_nodes_llm.errors import LlmConfigError, UnsafeBaseUrl
from comfytavern_nodes_llm.lazy import lazy_import

if TYPE_CHECKING:
    import httpx
else:  # loaded when a request is made, not at server start (see .lazy)
    httpx = lazy_import("httpx")

__all__ = ["RequestTarget", "address_is_forbidden", "guard_url", "parse_allowlist", "pinned_target"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class RequestTarget:
    """Where to send one request: the URL to connect to, plus headers/extensions that keep the
    original host name for ``Host`` (and TLS SNI) when the URL was pinned to an address."""

    url: httpx.URL
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, str] = field(default_factory=dict)


def parse_allowlist(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    networks: list[IPNetwork] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise LlmConfigError(
                f"$.plugins.settings.llm.private_base_url_allowlist: {entry!r} is not an IP "
                "address or CIDR network"
            ) from None
    return tuple(networks)


def _normalise(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
    return ip


def address_is_forbidden(ip: IPAddress, allowlist: Sequence[IPNetwork] = ()) -> bool:
    """True for loopback, private (RFC 1918, ULA), link-local (incl. 169.254.169.254), shared,
    reserved, multicast and unspecified addresses that no allowlist entry covers."""
    for candidate in {ip, _normalise(ip)}:
        if any(candidate.version == net.version and candidate in net for net in allowlist):
            return False
    ip = _normalise(ip)
    return bool(
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


async def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
        return [ip]
    except ValueError:
        pass
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise LlmConfigError(f"cannot resolve the LLM host {host!r}: {exc.strerror or exc}") from None
    out: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0]).split("%", 1)[0]
        ip = ipaddress.ip_address(address)
        if ip not in out:
            out.append(ip)
    if not out:
        raise LlmConfigError(f"cannot resolve the LLM host {host!r}: no addresses")
    return out


def pinned_target(url: httpx.URL, ip: IPAddress) -> RequestTarget:
    """``url`` rewritten to connect to ``ip`` while keeping the name in ``Host`` and for SNI."""
    host = url.host
    default_port = {"http": 80, "https": 443}.get(url.scheme)
    host_header = host if url.port in (None, default_port) else f"{host}:{url.port}"
    pinned = url.copy_with(host=str(ip))
    return RequestTarget(pinned, headers={"Host": host_header}, extensions={"sni_hostname": host})


async def guard_url(
    url: httpx.URL, *, enforce: bool, allowlist: Sequence[IPNetwork] = ()
) -> RequestTarget:
    """Check ``url`` and say where to send the request.

    With ``enforce`` false (single-user modes, or the operator allows private URLs) the URL is
    used as it is. Otherwise the host is resolved and refused if any address is not public.
    """
    if not enforce:
        return RequestTarget(url)
    host = url.host
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = await _resolve(host, port)
    bad = [ip for ip in addresses if address_is_forbidden(ip, allowlist)]
    if bad:
        raise UnsafeBaseUrl(
            f"base URL host {host!r} resolves to a non-public address ({bad[0]}); this server "
            "refuses loopback, private and link-local targets in multi-user mode. An administrator "
            "can allow them with plugins.settings.llm.allow_private_base_urls or "
            "private_base_url_allowlist."
        )
    if url.scheme != "http":
        return RequestTarget(url)
    v4 = [ip for ip in addresses if ip.version == 4]
    return pinned_target(url, (v4 or addresses)[0])
