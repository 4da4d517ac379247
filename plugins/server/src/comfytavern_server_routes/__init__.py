"""Plugin ``server-routes``: what an operator and an API client need from the server itself.

- ``GET /openapi.json``: OpenAPI 3.1 for every route served (see :mod:`comfytavern_server_routes.openapi`);
- ``GET /docs``: interactive API docs, fully offline;
- ``POST /api/server/restart``: graceful in-place restart (admin; see :mod:`.restart`);
- ``GET /metrics``: Prometheus metrics, counted by this plugin's middleware and run-event feed
  (see :mod:`.metrics`; other plugins add series through the ``METRICS`` service);
- ``GET /``: a home page (name, version, auth mode, links) when no editor is served there;
- ``GET /api/plugins``: the frontend extensions the later editor loads (see :mod:`.extensions`).

Settings: ``plugins.settings["server-routes"]`` = :class:`ServerRoutesSettings`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.routing import BaseRoute

from comfytavern import HttpMiddleware, ServiceUse, hookimpl, provides, uses
from comfytavern.services import METRICS, RESTART_REQUESTED, SCHEDULER, UVICORN_SERVER
from comfytavern_server_routes.admin import RestartAccepted, ServerRoutesSettings, admin_routes, may_read_metrics
from comfytavern_server_routes.apidocs import docs_routes
from comfytavern_server_routes.extensions import extension_routes
from comfytavern_server_routes.home import home_routes
from comfytavern_server_routes.metrics_feed import MetricsMiddleware, metrics_for, run_event_metrics
from comfytavern_server_routes.restart import RESTART

__all__ = ["RestartAccepted", "ServerRoutesSettings", "may_read_metrics", "register_routes"]

SETTINGS_KEY = "server-routes"


@hookimpl
def register_services() -> list[ServiceUse]:
    return [provides(METRICS), provides(RESTART), provides(RESTART_REQUESTED), uses(UVICORN_SERVER), uses(SCHEDULER)]


@hookimpl
def register_middleware(kernel: Any) -> list[HttpMiddleware]:
    # Outer: requests refused by the host check, body limit or auth are counted too.
    return [HttpMiddleware(MetricsMiddleware, {"metrics": metrics_for(kernel)}, layer="outer")]


@hookimpl
def lifespan(kernel: Any) -> contextlib.AbstractAsyncContextManager[None]:
    @contextlib.asynccontextmanager
    async def run() -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            await tg.start(run_event_metrics, kernel)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()

    return run()


@hookimpl
def register_scope_groups() -> list[str]:
    return ["server"]


@hookimpl
def register_routes(kernel: Any) -> list[BaseRoute]:
    settings = kernel.plugin_settings(SETTINGS_KEY, ServerRoutesSettings)
    return [*docs_routes(kernel), *admin_routes(kernel, settings), *extension_routes(kernel),
            *home_routes(kernel, public_metrics=settings.public_metrics)]
