"""Plugin ``server-routes``: what an operator and an API client need from the server itself.

- ``GET /openapi.json``: OpenAPI 3.1 for every route served (see :mod:`comfytavern_server_routes.openapi`);
- ``GET /docs``: interactive API docs, fully offline;
- ``POST /api/server/restart``: graceful in-place restart (admin; see :mod:`comfytavern.restart`);
- ``GET /metrics``: Prometheus metrics (see :mod:`comfytavern.metrics`);
- ``GET /``: a home page (name, version, auth mode, links) when no editor is served there;
- ``GET /api/plugins``: the frontend extensions the later editor loads (see :mod:`.extensions`).

Settings: ``plugins.settings["server-routes"]`` = :class:`ServerRoutesSettings`.
"""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute

from comfytavern import ServiceUse, hookimpl, uses
from comfytavern.services import METRICS, RESTART
from comfytavern_server_routes.admin import RestartAccepted, ServerRoutesSettings, admin_routes, may_read_metrics
from comfytavern_server_routes.apidocs import docs_routes
from comfytavern_server_routes.extensions import extension_routes
from comfytavern_server_routes.home import home_routes

__all__ = ["RestartAccepted", "ServerRoutesSettings", "may_read_metrics", "register_routes"]

SETTINGS_KEY = "server-routes"


@hookimpl
def register_services() -> list[ServiceUse]:
    return [uses(RESTART), uses(METRICS)]


@hookimpl
def register_scope_groups() -> list[str]:
    return ["server"]


@hookimpl
def register_routes(kernel: Any) -> list[BaseRoute]:
    settings = kernel.plugin_settings(SETTINGS_KEY, ServerRoutesSettings)
    return [*docs_routes(kernel), *admin_routes(kernel, settings), *extension_routes(kernel),
            *home_routes(kernel, public_metrics=settings.public_metrics)]
