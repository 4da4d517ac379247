"""Plugin ``executions``: the HTTP routes and the WebSocket ``/ws`` over the kernel's scheduler.

Routes: ``POST /api/prompt``, ``GET /api/executions``, ``GET /api/prompt/{id}`` (optionally
waiting), ``GET /api/prompt/{id}/events`` (server-sent events), ``POST|DELETE /api/interrupt/{id}``,
``GET /api/history``, ``GET /api/system_stats``, ``POST /api/projects/{p}/workflows/{w}/run`` (a
stored workflow by reference) and the editor's WebSocket ``/ws``.
See ``docs/executions.md`` and ``docs/websocket.md``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.routing import BaseRoute

from comfytavern import ServiceUse, hookimpl, requires, uses
from comfytavern.services import SCHEDULER, WS_EVENT_TRANSLATOR
from comfytavern_executions.http_api import http_routes
from comfytavern_executions.settings import ExecutionsSettings
from comfytavern_executions.workflow_run import workflow_routes
from comfytavern_executions.ws import websocket_routes
from comfytavern_executions.ws_fanout import fanout_for

name = "executions"


@hookimpl
def register_services() -> list[ServiceUse]:
    return [requires(SCHEDULER), uses(WS_EVENT_TRANSLATOR)]


@hookimpl
def register_scope_groups() -> list[str]:
    return ["runs"]


@hookimpl
def register_routes(kernel: Any) -> list[BaseRoute]:
    settings = kernel.plugin_settings("executions", ExecutionsSettings)
    return [*http_routes(kernel, settings), *workflow_routes(kernel, settings), *websocket_routes(kernel, settings)]


@hookimpl
def lifespan(kernel: Any) -> contextlib.AbstractAsyncContextManager[None]:
    return _fanout(kernel)


@contextlib.asynccontextmanager
async def _fanout(kernel: Any) -> AsyncIterator[None]:
    """Runs the WebSocket fanout's queue-update coalescer while the server runs."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(fanout_for(kernel).run)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()
