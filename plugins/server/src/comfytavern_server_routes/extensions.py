"""``GET /api/plugins``: the frontend extensions the later editor (Oct 2025) loads on every page.

The later backend answers every extension with a ``plugin.yaml`` as ``ExtensionInfo``; the
editor then loads the ``frontend`` entry of each enabled one. This server's plugins are Python
distributions with no browser code, so the real list is empty until a plugin declares frontend
assets. Answering it (instead of 404) lets that editor's pages load without console errors.
Public, like the original: the list holds no user data.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from comfytavern import json_response, route

__all__ = ["ExtensionFrontend", "ExtensionInfo", "extension_routes"]


class ExtensionFrontend(msgspec.Struct, kw_only=True, rename="camel"):
    """Where the editor loads an extension's browser code from."""

    entry_url: str
    style_urls: list[str] = msgspec.field(default_factory=list)
    web_root_dir: str | None = None


class ExtensionInfo(msgspec.Struct, kw_only=True, omit_defaults=True, rename="camel"):
    """One extension, in the later backend's shape."""

    name: str
    display_name: str
    version: str
    is_enabled: bool
    description: str | None = None
    config_options: list[dict[str, Any]] | None = None
    frontend: ExtensionFrontend | None = None


def frontend_extensions(kernel: Any) -> list[ExtensionInfo]:
    """Extensions with browser code; no plugin of this server has any yet."""
    return []


def extension_routes(kernel: Any) -> list[BaseRoute]:
    async def list_extensions(request: Request) -> Response:
        return json_response(frontend_extensions(kernel))

    return [
        route(
            "/api/plugins",
            list_extensions,
            summary="Frontend extensions the later editor loads (none today)",
            description=(
                "The later editor requests it on every page load. Each entry is an `ExtensionInfo` "
                "`{name, displayName, version, description?, configOptions?, isEnabled, frontend?: "
                "{entryUrl, styleUrls, webRootDir}}`. Server plugins have no browser code, so the "
                "list is `[]`; `GET /kernel/plugins` lists the server plugins themselves."
            ),
            auth="public",
            tags=["server"],
            response=list[ExtensionInfo],
        )
    ]
