"""Where the metrics come from: the HTTP/WebSocket middleware and the run-event feed.

Both are this plugin's: the middleware is an ``outer`` one (``register_middleware``), so requests
the host check, body limit or auth refuse are counted too; the feed runs in the plugin's lifespan.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Sequence
from typing import Any

import anyio
from anyio.abc import TaskStatus
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from comfytavern.services import METRICS
from comfytavern_server_routes.metrics import UNMATCHED, ServerMetrics

__all__ = ["MetricsMiddleware", "metrics_for", "route_templates", "run_event_metrics"]

log = logging.getLogger("comfytavern.metrics")
_CONVERTOR = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


def metrics_for(kernel: Any) -> ServerMetrics:
    """The kernel's :class:`ServerMetrics` (the ``METRICS`` service, created on first use)."""
    metrics = kernel.services.setdefault(METRICS, ServerMetrics)
    if not isinstance(metrics, ServerMetrics):  # another plugin provided METRICS first
        raise TypeError(f"the METRICS service is a {type(metrics).__qualname__}, not this plugin's ServerMetrics")
    return metrics


async def run_event_metrics(kernel: Any, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    """Feed hub events into the kernel's metrics until cancelled (started by the plugin's lifespan)."""
    metrics = metrics_for(kernel)
    statuses = {"EXECUTION_STATUS_UPDATE", "SYSTEM_QUEUE_UPDATE"}
    node_events = {"NODE_EXECUTING", "NODE_COMPLETE", "NODE_ERROR"}

    # The scheduler's own runs (events with a frame) report node durations on their final status
    # event; node events are timed one by one only for runs elsewhere (relayed, or synthetic),
    # and the hub offers no others (no call per node event of a local run).
    while True:
        subscription = kernel.hub.subscribe(max_buffer=100_000, types=statuses | node_events, unframed_types=node_events)
        task_status.started()
        task_status = anyio.TASK_STATUS_IGNORED
        with subscription:
            async for event in subscription:
                # Everything buffered since the last wake-up in one batch (a run publishes
                # thousands of events per second).
                batch = [event]
                while (more := subscription.get_nowait()) is not None:
                    batch.append(more)
                try:
                    metrics.observe_events(batch)
                except Exception:  # noqa: BLE001 - metrics must never break anything
                    log.exception("metrics: could not record a batch of %d events", len(batch))
        if not subscription.overflowed:
            return
        log.warning("metrics fell behind the event hub; some run events were not counted")


# -- HTTP ---------------------------------------------------------------------------------


def _walk(routes: Sequence[BaseRoute], prefix: str, out: dict[int, str]) -> None:
    for route in routes:
        path = prefix + str(getattr(route, "path", ""))
        if isinstance(route, Mount):
            out[id(route)] = (path or "") + "/{path}"
            _walk(route.routes, path, out)
        else:
            out[id(route)] = path


def route_templates(routes: Sequence[BaseRoute]) -> dict[int, str]:
    """``id(route) -> full path template`` for every route, nested mounts included.

    Convertors are dropped (``{id:int}`` becomes ``{id}``) so labels match the OpenAPI paths.
    """
    out: dict[int, str] = {}
    _walk(routes, "", out)
    return {key: _CONVERTOR.sub(r"{\1}", value) for key, value in out.items()}


class MetricsMiddleware:
    """Pure ASGI: counts HTTP requests by route template and status, and open WebSockets."""

    def __init__(self, app: ASGIApp, *, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._templates: dict[int, str] | None = None

    def _template(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:
            return UNMATCHED
        if self._templates is None or id(route) not in self._templates:
            app = scope.get("app")
            self._templates = route_templates(getattr(app, "routes", []) or [])
        return self._templates.get(id(route), str(getattr(route, "path", UNMATCHED)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self.metrics
        started = time.perf_counter()
        status = 500

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            method = str(scope.get("method", "GET"))
            template = self._template(scope)
            metrics.http_requests.inc(method=method, route=template, status=str(status))
            metrics.http_duration.observe(time.perf_counter() - started, method=method, route=template)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = self.metrics
        accepted = False

        # A plain function returning ``send``'s awaitable, not a coroutine of its own: it is on
        # the path of every frame a socket sends (three per node of a run).
        def tracking_send(message: Message) -> Awaitable[None]:
            nonlocal accepted
            if not accepted and message["type"] == "websocket.accept":
                accepted = True
                metrics.websocket_opened()
            return send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            if accepted:
                metrics.websocket_closed()
