"""``GET /``: a small page saying what this server is, for the first person who opens it.

Without it a browser pointed at the server got ``{"error": "no route for GET /"}``. The page names
the server and its version, the auth mode, links the API docs, the OpenAPI document, the metrics
and the probes, and says how to serve the editor from here. A client asking for JSON
(``Accept: application/json``) gets the same facts as JSON.

The route is ``fallback = 2``: it comes after every other route, the static frontend's catch-all
included, so when the static-frontend plugin serves an editor, ``/`` stays the editor's.
"""

from __future__ import annotations

import html
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute

from comfytavern import json_response, route
from comfytavern.version import __version__

__all__ = ["HomeInfo", "home_routes", "prefers_json"]

NAME = "ComfyTavern Server"
FRONTEND_PLUGIN = "static-frontend"


class HomeInfo(msgspec.Struct, rename="camel"):
    """The JSON form of the home page."""

    name: str
    version: str
    auth_mode: str
    links: dict[str, str]
    #: How to serve the editor from this server (the page is only answered when none is).
    editor_help: str


def prefers_json(accept: str) -> bool:
    """True when the ``Accept`` header ranks ``application/json`` above ``text/html``."""
    ranks: dict[str, float] = {}
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        media = fields[0].lower()
        quality = 1.0
        for field in fields[1:]:
            if field.startswith("q="):
                try:
                    quality = float(field[2:])
                except ValueError:
                    quality = 0.0
        if media:
            ranks[media] = max(quality, ranks.get(media, 0.0))
    json_rank = ranks.get("application/json", 0.0)
    html_rank = max(ranks.get("text/html", 0.0), ranks.get("text/*", 0.0))
    return json_rank > 0 and json_rank > html_rank


_EDITOR_HELP = (
    "To serve the ComfyTavern editor from this server, build it (apps/frontend-vueflow in the "
    "ComfyTavern repository) and point the static-frontend plugin at the build folder in "
    'config.json: {"plugins": {"settings": {"static-frontend": {"dist": "/path/to/dist"}}}}, '
    "then restart; see docs/operations.md, \"Serving the editor\"."
)

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{name} {version}</title>
  <style>
    body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 42rem; margin: 3rem auto; padding: 0 1rem; color: #222; }}
    code, pre {{ background: #f3f3f3; border-radius: 4px; padding: 0.1rem 0.3rem; }}
    pre {{ padding: 0.6rem; overflow-x: auto; }}
    .note {{ color: #8a4b00; }}
  </style>
</head>
<body>
  <h1>{name}</h1>
  <p>Version <strong>{version}</strong> · auth mode <code>{auth_mode}</code></p>
  <h2>API</h2>
  <ul>
    <li><a href="docs">/docs</a> — interactive API reference</li>
    <li><a href="openapi.json">/openapi.json</a> — the OpenAPI 3.1 document</li>
    <li><a href="metrics">/metrics</a> — Prometheus metrics ({metrics_access})</li>
    <li><a href="healthz">/healthz</a> and <a href="readyz">/readyz</a> — health probes</li>
  </ul>
  <h2>The editor</h2>
  <p>No editor is served from this address.{frontend_note} To serve the ComfyTavern editor here,
  build it (<code>apps/frontend-vueflow</code> in the ComfyTavern repository) and point the
  <code>static-frontend</code> plugin at the build folder in <code>config.json</code>:</p>
  <pre>{{"plugins": {{"settings": {{"static-frontend": {{"dist": "/path/to/frontend-vueflow/dist"}}}}}}}}</pre>
  <p>Then restart the server and open this page again (see <code>docs/operations.md</code>,
  "Serving the editor"). Check the configuration first with <code>comfytavern check-config</code>.</p>
</body>
</html>
"""


def home_routes(kernel: Any, *, public_metrics: bool) -> list[BaseRoute]:
    metrics_access = "public" if public_metrics else "administrators, or API keys with server:read"

    def frontend_note() -> str:
        row = next((r for r in kernel.plugin_rows() if r["name"] == FRONTEND_PLUGIN), None)
        if row is None:
            return " The static-frontend plugin is not installed."
        if row["status"] == "error":
            return (
                ' <span class="note">The static-frontend plugin reports an error: run '
                "<code>comfytavern plugins</code> or <code>comfytavern check-config</code>.</span>"
            )
        return ""

    async def home(request: Request) -> Response:
        mode = kernel.config.auth.mode
        if prefers_json(request.headers.get("accept", "")):
            info = HomeInfo(
                name=NAME,
                version=__version__,
                auth_mode=mode,
                links={"docs": "/docs", "openapi": "/openapi.json", "metrics": "/metrics",
                       "health": "/healthz", "ready": "/readyz"},
                editor_help=_EDITOR_HELP,
            )
            response = json_response(info)
        else:
            page = _PAGE.format(
                name=NAME,
                version=html.escape(__version__),
                auth_mode=html.escape(mode),
                metrics_access=metrics_access,
                frontend_note=frontend_note(),
            )
            response = HTMLResponse(page, headers={"Cache-Control": "no-cache"})
        response.headers["Vary"] = "Accept"
        return response

    home_route = route(
        "/",
        home,
        summary="What this server is: name, version, auth mode, links (HTML, or JSON on request)",
        description=(
            "An HTML page for browsers; `Accept: application/json` gets `HomeInfo`. Only served when "
            "no editor is: the static-frontend plugin's editor keeps `/`."
        ),
        auth="public",
        tags=["server"],
        response=HomeInfo,
        response_alternatives={"text/html": str},
    )
    home_route.fallback = 2  # type: ignore[attr-defined]
    return [home_route]
