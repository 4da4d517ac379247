"""Plugin ``static-frontend``: serve the built ComfyTavern editor from this server (one origin).

Off unless ``plugins.settings["static-frontend"].dist`` names the editor's build folder (the
``dist`` folder with ``index.html`` and ``assets/``). Then every ``GET`` that no other route
answers is served from that folder:

- an existing file is served with ``ETag``/``Last-Modified`` (``304`` on revalidation);
- hashed build output under ``assets/`` is cached for a year (``immutable``); ``index.html`` and
  the fallback are ``no-cache`` so a new build is picked up at once; other files are ``no-cache``
  too unless ``max_age`` says otherwise;
- a history-mode route of the editor (``/home``, ``/projects/p1/editor/wf``: no file extension, or
  a browser asking for HTML) falls back to ``index.html``;
- API-like paths (``/api``, ``/ws``, ``/kernel``, ``/openapi.json``, ``/docs``, ``/metrics``,
  ``/healthz``, ``/readyz``, plus ``exclude``) never fall back: they get the JSON 404;
- ``..`` segments, backslashes and NUL are rejected, and files reached through symlinks that leave
  the folder are not served.

The mount is flagged ``fallback = True`` so the kernel places it after every other route.

With ``editor.dialect: "auto"`` the plugin also tells the kernel which editor it serves
(``detect_editor_dialect``): :func:`comfytavern_static_frontend.recognise.recognise_build` reads the build's
scripts for the auth-mode names only one era of the editor contains.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocketClose

from comfytavern import ConfigError, RouteDoc, hookimpl
from comfytavern.http import error_response
from comfytavern_static_frontend.recognise import recognise_build

__all__ = ["FrontendSettings", "SpaFiles", "detect_editor_dialect", "frontend_route", "register_routes"]

SETTINGS_KEY = "static-frontend"
IMMUTABLE_CACHE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
#: Paths that belong to the server, never to the editor.
RESERVED_PREFIXES = ("/api", "/ws", "/kernel", "/openapi.json", "/docs", "/metrics", "/healthz", "/readyz")


class FrontendSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``plugins.settings["static-frontend"]``."""

    #: The editor's build folder (absolute, or relative to the config file's folder); unset = off.
    dist: str | None = None
    #: The single-page app's entry document inside ``dist``.
    index: str = "index.html"
    #: Folders (relative to ``dist``) whose files have content hashes in their names.
    immutable: list[str] = msgspec.field(default_factory=lambda: ["assets/"])
    #: Extra path prefixes that must never fall back to ``index.html``.
    exclude: list[str] = msgspec.field(default_factory=list)
    #: ``Cache-Control`` max-age in seconds for other files; 0 means ``no-cache`` (revalidate).
    max_age: int = 0


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path or "/"


def _under(path: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/") or "/"
    return path == prefix or path.startswith(prefix + "/")


class SpaFiles:
    """The ASGI app behind the frontend mount (see the module docstring for the rules)."""

    def __init__(self, dist: Path, settings: FrontendSettings) -> None:
        self.dist = dist
        self.settings = settings
        self.static = StaticFiles(directory=dist, follow_symlink=False)
        self.index = os.path.normpath(settings.index)
        self.immutable = tuple(p.strip("/") + "/" for p in settings.immutable if p.strip("/"))
        self.reserved = (*RESERVED_PREFIXES, *("/" + p.strip("/") for p in settings.exclude if p.strip("/")))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await WebSocketClose()(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        response = await self.respond(scope)
        await response(scope, receive, send)

    def _not_found(self, scope: Scope) -> Response:
        return error_response(404, f"no route for {scope['method']} {scope['path']}")

    async def respond(self, scope: Scope) -> Response:
        path = _route_path(scope)
        method = scope["method"]
        if method not in ("GET", "HEAD") or any(_under(path, p) for p in self.reserved):
            return self._not_found(scope)
        segments = path.split("/")
        if ".." in segments or "\\" in path or "\x00" in path:
            return error_response(404, "not found")
        relative = os.path.normpath(os.path.join(*segments)) if path.strip("/") else "."
        posix = relative.replace(os.sep, "/")
        immutable = any(posix.startswith(prefix) for prefix in self.immutable)
        try:
            response = await self.static.get_response(relative, scope)
            is_index = posix == self.index
        except HTTPException as exc:
            if exc.status_code != 404 or immutable or not self._wants_app(scope, segments[-1]):
                return self._not_found(scope) if exc.status_code == 404 else error_response(exc.status_code, str(exc.detail))
            try:
                response = await self.static.get_response(self.index, scope)
            except HTTPException:
                return error_response(404, f"the frontend build has no {self.index}")
            is_index = True
        if is_index:
            response.headers["Cache-Control"] = NO_CACHE
        elif immutable:
            response.headers["Cache-Control"] = IMMUTABLE_CACHE
        elif self.settings.max_age > 0:
            response.headers["Cache-Control"] = f"public, max-age={self.settings.max_age}"
        else:
            response.headers["Cache-Control"] = NO_CACHE
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @staticmethod
    def _wants_app(scope: Scope, last_segment: str) -> bool:
        """A history-mode route: no file extension, or a browser navigation asking for HTML."""
        if "." not in last_segment:
            return True
        for name, value in scope.get("headers", ()):
            if name == b"accept":
                return b"text/html" in value
        return False


def frontend_route(dist: Path, settings: FrontendSettings) -> Mount:
    mount = Mount("/", app=SpaFiles(dist, settings), name="frontend")
    mount.fallback = True  # type: ignore[attr-defined]
    mount.doc = RouteDoc(  # type: ignore[attr-defined]
        summary="The built editor: static files, single-page-app fallback to index.html",
        description=(
            "Served only when `plugins.settings.static-frontend.dist` is set. Paths under /api, /ws, "
            "/kernel, /docs and the probes never fall back."
        ),
        auth="public",
        tags=["frontend"],
        content_type="text/html",
        responses={304: "Not modified (ETag / Last-Modified revalidation)", 404: "No such file"},
    )
    return mount


def _resolve_dist(kernel: Any, settings: FrontendSettings) -> Path:
    assert settings.dist is not None
    dist = Path(settings.dist).expanduser()
    if not dist.is_absolute():
        dist = Path(kernel.config.base_dir) / dist
    dist = dist.resolve()
    key = f"$.plugins.settings.{SETTINGS_KEY}"
    if not dist.is_dir():
        raise ConfigError(f"{key}.dist: {dist} is not a folder (build the editor first)")
    index = dist / settings.index
    if not index.is_file():
        raise ConfigError(f"{key}.index: {index} does not exist")
    if ".." in Path(settings.index).parts or Path(settings.index).is_absolute():
        raise ConfigError(f"{key}.index: must be a file name inside dist")
    return dist


@hookimpl
def register_routes(kernel: Any) -> list[BaseRoute]:
    settings = kernel.plugin_settings(SETTINGS_KEY, FrontendSettings)
    if not settings.dist:
        return []
    if settings.max_age < 0:
        raise ConfigError(f"$.plugins.settings.{SETTINGS_KEY}.max_age: must not be negative")
    return [frontend_route(_resolve_dist(kernel, settings), settings)]


@hookimpl
def detect_editor_dialect(kernel: Any) -> str | None:
    """The dialect of the served build; ``None`` when off or misconfigured (``register_routes``
    reports configuration errors)."""
    try:
        settings = kernel.plugin_settings(SETTINGS_KEY, FrontendSettings)
        if not settings.dist:
            return None
        return recognise_build(_resolve_dist(kernel, settings), settings.index)
    except (ConfigError, OSError):
        return None
