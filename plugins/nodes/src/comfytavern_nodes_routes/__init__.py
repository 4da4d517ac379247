"""Node routes: the definitions the editor reads, hot reload, and node client scripts.

- ``GET /api/nodes``: the live registry snapshot as a JSON array, with an ETag (304 on
  ``If-None-Match``).
- ``POST /api/nodes/reload``: re-scan entry points and custom folders, re-import changed code,
  swap the registry; broadcasts ``NODES_RELOADED {success, message, count}``.
- ``GET /api/nodes/{namespace}/{type}/client-script/{path}`` and the legacy
  ``GET /client-scripts/{path}``: a pack's ``.js`` files.

See ``docs/node-packs.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

from comfytavern import hookimpl, route
from comfytavern_nodes_routes.listing import ReloadResult, list_nodes_endpoint, reload_endpoint
from comfytavern_nodes_routes.scripts import legacy_script_endpoint, node_script_endpoint

if TYPE_CHECKING:
    from comfytavern.kernel import Kernel

__all__ = ["register_routes"]

_TAGS = ["nodes"]


@hookimpl
def register_scope_groups() -> list[str]:
    return ["nodes"]


@hookimpl
def register_routes(kernel: Kernel) -> list[BaseRoute]:
    return [
        route(
            "/api/nodes",
            list_nodes_endpoint(kernel),
            summary="Every node definition (JSON array); ETag, 304 on If-None-Match",
            auth="user",
            scope="nodes",
            tags=_TAGS,
            responses={304: "Not modified (the ETag matches)"},
        ),
        route(
            "/api/nodes/reload",
            reload_endpoint(kernel),
            methods=["POST"],
            summary="Re-scan node packs and folders, re-import changed code, swap the registry",
            description=(
                "Broadcasts NODES_RELOADED to every WebSocket client. A pack that fails to load is "
                "listed in the message and in GET /kernel/plugins; the others still load."
            ),
            auth="admin",
            scope="nodes",
            response=ReloadResult,
            responses={500: "The reload failed; the previous definitions stay live"},
            tags=_TAGS,
        ),
        route(
            "/api/nodes/{namespace}/{type}/client-script/{path:path}",
            node_script_endpoint(kernel),
            summary="A node's client script (ES module, .js only)",
            auth="public",
            responses={400: "Not a .js path, or the path leaves the pack folder", 404: "Unknown node or file"},
            content_type="application/javascript",
            tags=_TAGS,
        ),
        route(
            "/client-scripts/{path:path}",
            legacy_script_endpoint(kernel),
            summary="Legacy client-script URL: <pack folder>/client-scripts/<path>",
            auth="public",
            responses={400: "Not a .js path, or the path leaves the pack folder", 404: "No pack has this file"},
            content_type="application/javascript",
            tags=_TAGS,
        ),
    ]
