"""``GET /api/nodes`` (cached per snapshot, ETag/304) and ``POST /api/nodes/reload``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from comfytavern import json_response
from comfytavern.nodes.reload import NodeReloadError

if TYPE_CHECKING:
    from comfytavern.kernel import Kernel

__all__ = ["Endpoint", "ReloadResult", "etag_matches", "list_nodes_endpoint", "reload_endpoint"]

log = logging.getLogger("comfytavern.nodes.routes")

Endpoint = Callable[[Request], Awaitable[Response]]

#: Browsers must revalidate (cheap with the ETag) so a reload is seen at once.
_CACHE_HEADERS = {"Cache-Control": "no-cache"}


class ReloadResult(msgspec.Struct, omit_defaults=True):
    """Body of ``POST /api/nodes/reload`` and payload of the ``NODES_RELOADED`` message."""

    success: bool
    message: str
    count: int
    error: str | None = None


def etag_matches(header: str | None, etag: str) -> bool:
    """``If-None-Match`` semantics: a list of (possibly weak) tags, or ``*``."""
    if not header:
        return False
    for token in header.split(","):
        tag = token.strip()
        if tag == "*":
            return True
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag == etag:
            return True
    return False


def list_nodes_endpoint(kernel: Kernel) -> Endpoint:
    async def list_nodes(request: Request) -> Response:
        """The live snapshot's definitions, encoded once per snapshot (never a server path)."""
        registry = kernel.registry.current
        headers = {"ETag": registry.etag, **_CACHE_HEADERS}
        if etag_matches(request.headers.get("if-none-match"), registry.etag):
            return Response(status_code=304, headers=headers)
        return Response(registry.definitions_json, media_type="application/json", headers=headers)

    return list_nodes


def reload_endpoint(kernel: Kernel) -> Endpoint:
    async def reload_nodes(request: Request) -> Response:
        """Re-scan and swap; every WebSocket client hears ``NODES_RELOADED`` either way."""
        try:
            report = await kernel.reload_nodes_async()
        except NodeReloadError as exc:
            count = len(kernel.registry.current)
            message = "Failed to reload nodes; the previous node definitions are still in use."
            log.error("node reload failed: %s", exc)
            kernel.hub.emit("NODES_RELOADED", {"success": False, "message": f"{message} {exc}", "count": count})
            return json_response(ReloadResult(False, message, count, str(exc)), status=500)
        result = ReloadResult(True, report.message, report.count)
        kernel.hub.emit("NODES_RELOADED", {"success": True, "message": result.message, "count": result.count})
        return json_response(result)

    return reload_nodes
