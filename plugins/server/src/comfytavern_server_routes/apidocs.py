"""``GET /openapi.json`` and the offline API docs page ``GET /docs``.

The document is generated once per app from every route it serves (kernel, plugins, auth mode),
so it is always complete. The docs page is Swagger UI 5 served from the ``swagger-ui-py`` wheel
plus a small initialiser shipped here: nothing is loaded from the internet, and the online
validator badge is switched off.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute

from comfytavern import ApiError, route
from comfytavern.version import __version__
from comfytavern_server_routes.openapi import build_openapi

__all__ = ["ASSETS", "docs_routes"]

_HERE = Path(__file__).resolve().parent / "static"

_DESCRIPTION = """\
The HTTP API of ComfyTavern Server. Every route the running server serves is listed here, with the
schemas it accepts and returns (generated from the server's own types).

- Errors always have the shape `{"error": "...", "details"?: ...}`.
- Authentication: nothing in the `local` auth mode; otherwise the session cookie set by the login
  route, or `Authorization: Bearer ctsk_...` with a service API key whose scopes cover the route
  (`x-scope`).
- The WebSocket protocol of `/ws` is described in `docs/websocket.md` in the repository.
"""

_TAGS = {
    "kernel": "Health, readiness and the plugin listing.",
    "server": "OpenAPI document, API docs, metrics and restart.",
    "undocumented": "Routes that do not describe themselves (plain Starlette routes).",
    "websocket": "WebSocket endpoints (connect with a WebSocket client).",
    "frontend": "The built editor, served with a single-page-app fallback.",
}

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>ComfyTavern Server API</title>
  <link rel="stylesheet" href="docs/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png">
  <style>body { margin: 0; } .topbar { display: none; }</style>
</head>
<body>
  <noscript>This page needs JavaScript. The raw document is at <a href="openapi.json">/openapi.json</a>.</noscript>
  <div id="swagger-ui"></div>
  <script src="docs/assets/swagger-ui-bundle.js"></script>
  <script src="docs/assets/comfytavern-docs.js"></script>
</body>
</html>
"""


def _swagger_dir() -> Path | None:
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    return folder if folder.is_dir() else None


#: Files ``GET /docs/assets/{name}`` may serve: name -> (folder, media type). A fixed allow-list,
#: so the path parameter can never reach anything else on disk.
ASSETS: dict[str, tuple[str, str]] = {
    "swagger-ui.css": ("swagger", "text/css; charset=utf-8"),
    "swagger-ui-bundle.js": ("swagger", "text/javascript; charset=utf-8"),
    "favicon-32x32.png": ("swagger", "image/png"),
    "favicon-16x16.png": ("swagger", "image/png"),
    "comfytavern-docs.js": ("own", "text/javascript; charset=utf-8"),
}


def _cookie_name(auth: Any) -> str:
    """The session cookie of the selected auth mode (on the mode or on its ``identity`` helper)."""
    for holder in (auth, getattr(auth, "identity", None)):
        name = getattr(holder, "cookie_name", None)
        if isinstance(name, str) and name:
            return name
    return "ct_session"


def docs_routes(kernel: Any) -> list[BaseRoute]:
    swagger = _swagger_dir()

    def document(request: Request) -> bytes:
        cached: bytes | None = getattr(request.app.state, "comfytavern_openapi", None)
        if cached is None:
            auth = kernel.auth
            spec = build_openapi(
                request.app.routes,
                title="ComfyTavern Server",
                version=__version__,
                description=_DESCRIPTION,
                credentials_optional=kernel.config.auth.mode == "local",
                session_cookie=_cookie_name(auth),
                tag_descriptions=_TAGS,
            )
            cached = msgspec.json.encode(spec)
            request.app.state.comfytavern_openapi = cached
        return cached

    async def openapi_json(request: Request) -> Response:
        return Response(document(request), media_type="application/json")

    async def docs_page(request: Request) -> Response:
        return Response(
            _PAGE,
            media_type="text/html",
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    async def docs_asset(request: Request) -> Response:
        name = request.path_params["name"]
        entry = ASSETS.get(name)
        folder = _HERE if entry and entry[0] == "own" else swagger
        if entry is None or folder is None:
            raise ApiError(404, f"no docs asset named {name!r}")
        return FileResponse(
            folder / name,
            media_type=entry[1],
            headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
        )

    return [
        route(
            "/openapi.json",
            openapi_json,
            summary="The OpenAPI 3.1 document of every route this server serves",
            auth="public",
            tags=["server"],
            response=dict[str, Any],
        ),
        route(
            "/docs",
            docs_page,
            summary="Interactive API documentation (Swagger UI, works offline)",
            auth="public",
            tags=["server"],
            content_type="text/html",
        ),
        route(
            "/docs/assets/{name}",
            docs_asset,
            summary="Static assets of the docs page",
            auth="public",
            tags=["server"],
            content_type="*/*",
            responses={404: "No such asset"},
        ),
    ]
