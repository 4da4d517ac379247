"""``POST /api/server/restart`` and ``GET /metrics``: the operator's routes."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from comfytavern import ApiError, current_principal, optional_principal, route
from comfytavern_server_routes.metrics import CONTENT_TYPE
from comfytavern_server_routes.metrics_feed import metrics_for
from comfytavern_server_routes.restart import RestartUnavailable, restart_controller

__all__ = ["RestartAccepted", "ServerRoutesSettings", "admin_routes", "may_read_metrics"]

#: Explicit key scopes that open ``/metrics`` to a non-administrator's API key.
METRICS_SCOPES = frozenset({"server:read", "server:write", "server:*"})


class ServerRoutesSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``plugins.settings["server-routes"]``."""

    #: Serve ``/metrics`` without credentials (only for a scraper on a private network).
    public_metrics: bool = False


class RestartAccepted(msgspec.Struct):
    """The original backend's answer shape, kept for the editor."""

    success: bool
    message: str


def may_read_metrics(principal: Any) -> bool:
    """An administrator, or an API key granted a ``server`` scope explicitly (not via ``*``)."""
    if principal is None:
        return False
    if principal.is_admin:
        return True
    return principal.via == "key" and bool(METRICS_SCOPES & set(principal.scopes))


def admin_routes(kernel: Any, settings: ServerRoutesSettings) -> list[BaseRoute]:
    async def restart(request: Request) -> Response:
        controller = restart_controller(kernel)
        if controller is None:
            raise ApiError(
                409,
                "restart is only available when the server runs under `comfytavern serve` "
                "(not with --reload or another ASGI server)",
            )
        principal = current_principal(request)
        try:
            controller.claim(principal.username)
        except RestartUnavailable as exc:
            raise ApiError(409, str(exc)) from None
        body = msgspec.json.encode(RestartAccepted(True, "Server is restarting..."))
        # The task runs after the 202 has been sent: drain runs, stop uvicorn, then the CLI re-execs.
        return Response(body, 202, media_type="application/json", background=BackgroundTask(controller.run))

    async def metrics(request: Request) -> Response:
        if not settings.public_metrics:
            principal = optional_principal(request)
            if principal is None:
                raise ApiError(401, "authentication required")
            if not may_read_metrics(principal):
                raise ApiError(403, "metrics are for administrators and API keys with the scope 'server:read'")
        return Response(metrics_for(kernel).render(), media_type=CONTENT_TYPE)

    return [
        route(
            "/api/server/restart",
            restart,
            methods=["POST"],
            summary="Restart the server process (graceful; answers 202 first)",
            description=(
                "Stops accepting runs, finishes or interrupts running ones per `execution.on_shutdown` "
                "(recording them), closes connections, then re-executes the same command line. Only "
                "available under `comfytavern serve` (409 otherwise). Poll `GET /healthz` until "
                "`startedAt` changes to see the new process."
            ),
            auth="admin",
            scope="server",
            tags=["server"],
            status=202,
            response=RestartAccepted,
            responses={202: "Restart accepted; the process restarts after this response", 409: "Restart unavailable or already in progress"},
        ),
        route(
            "/metrics",
            metrics,
            summary="Prometheus metrics (text exposition format 0.0.4)",
            description=(
                "Administrators, or API keys granted `server:read` explicitly. With "
                "`plugins.settings.server-routes.public_metrics` it needs no credentials."
            ),
            auth="public" if settings.public_metrics else "user",
            scope=None if settings.public_metrics else "server",
            tags=["server"],
            content_type="text/plain",
        ),
    ]
