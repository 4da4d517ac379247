"""Starlette app assembly: middleware, the one JSON error shape, kernel routes, plugin routes."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from comfytavern.auth import AuthMiddleware
from comfytavern.hosts import HostCheckMiddleware, effective_allowed_hosts
from comfytavern.http import ApiError, error_response, json_response, route
from comfytavern.kernel import Kernel
from comfytavern.logs import RequestContextMiddleware
from comfytavern.proxies import TrustedProxyMiddleware
from comfytavern.version import __version__

__all__ = ["create_app", "kernel_routes"]

log = logging.getLogger("comfytavern.app")

CORS_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
#: When this process started (``startedAt`` in ``/healthz``; changes after a restart).
_STARTED = time.time()
STARTED_AT = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(_STARTED)) + f".{int(_STARTED * 1000) % 1000:03d}Z"


class BodyLimitMiddleware:
    """413 for bodies above the limit, whether announced by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await error_response(400, "invalid Content-Length header")(scope, receive, send)
                    return
                if declared > self.max_bytes:
                    await _too_large(self.max_bytes)(scope, receive, send)
                    return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await _too_large(self.max_bytes)(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def _too_large(limit: int) -> Response:
    return error_response(413, f"request body too large (limit {limit} bytes)")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, exc.details, exc.headers)


def _allowed_methods(request: Request) -> list[str]:
    """The methods of every route documented at this path, for the ``Allow`` header of a 405.

    Starlette names only the first route that matched the path, but a path is often served by one
    route per method. As in OpenAPI, routes with a fixed path (``/api/characters/import``) take
    precedence over templates that also match it (``/api/characters/{characterId}``).
    """
    scope = {**request.scope, "method": "\x00"}  # no route serves it: every path match is partial
    matching = [
        item
        for item in request.app.router.routes
        if isinstance(item, Route) and item.methods and item.matches(scope)[0] is not Match.NONE
    ]
    fixed = [item for item in matching if "{" not in item.path]
    return sorted({method for item in fixed or matching for method in item.methods or ()})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        message = f"no route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed for {request.url.path}"
        allowed = _allowed_methods(request)
        if allowed:
            headers["Allow"] = ", ".join(allowed)
    else:
        message = exc.detail
    return error_response(exc.status_code, message, headers=headers or None)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal server error")


def kernel_routes(kernel: Kernel) -> list[BaseRoute]:
    """Health, readiness and the plugin listing. ``/kernel/...`` cannot clash with ``/api/...``."""

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok", "version": __version__, "startedAt": STARTED_AT})

    async def readyz(request: Request) -> Response:
        if not kernel.ready:
            return json_response({"status": "starting"}, status=503)
        return json_response({"status": "ready", "nodes": len(kernel.registry.current)})

    async def plugins(request: Request) -> Response:
        return json_response(
            {"plugins": kernel.plugin_rows(), "services": kernel.service_catalog.rows(), "kernelVersion": __version__}
        )

    return [
        route("/healthz", healthz, summary="Liveness probe", auth="public", tags=["kernel"]),
        route("/readyz", readyz, summary="Readiness probe (503 while starting)", auth="public", tags=["kernel"]),
        route(
            "/kernel/plugins",
            plugins,
            summary="Every plugin and node pack with kind, distribution, version, status and error",
            auth="user",
            scope="server",
            tags=["kernel"],
        ),
    ]


def create_app(kernel: Kernel) -> Starlette:
    """Assemble the ASGI app. Plugin routes are collected here, once."""
    cfg = kernel.config

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with kernel.lifespan():
            yield

    plugin_middleware = kernel.plugin_middleware()
    outer = [Middleware(m.cls, **m.options) for m in plugin_middleware["outer"]]
    inner = [Middleware(m.cls, **m.options) for m in plugin_middleware["inner"]]
    middleware = [
        # Outermost first: the client address (forwarded only by trusted proxies) for everything
        # below, then request id + access log, then plugins' outer middleware (metrics), so they
        # see every response.
        Middleware(TrustedProxyMiddleware, trusted=cfg.server.trusted_proxies),
        Middleware(RequestContextMiddleware),
        *outer,
        Middleware(HostCheckMiddleware, allowed=effective_allowed_hosts(cfg)),
        Middleware(BodyLimitMiddleware, max_bytes=cfg.server.max_body_bytes),
        Middleware(
            CORSMiddleware,
            allow_origins=list(cfg.server.cors_origins),
            allow_credentials=True,
            allow_methods=CORS_METHODS,
            allow_headers=["Content-Type", "Authorization", "X-Request-Id"],
            expose_headers=["ETag", "X-Request-Id"],
            max_age=600,
        ),
        Middleware(AuthMiddleware, backend_getter=lambda: kernel.auth),
        # Innermost: plugins' middleware that sees only what auth let through (body translations).
        *inner,
    ]
    routes = kernel_routes(kernel) + kernel.plugin_routes()
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _server_error,
        },
        lifespan=lifespan,
    )
    app.state.kernel = kernel
    return app
