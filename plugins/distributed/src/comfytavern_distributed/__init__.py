"""Distributed execution for ComfyTavern: runs queued on a Redis Stream and executed by any server
instance or by ``comfytavern worker`` processes; leases with heartbeats (a dead worker's runs end
``worker_lost``); events and interrupts across instances over Redis pub/sub.

Off unless ``plugins.settings.distributed.enabled`` is true (the in-process engine is the
default). See docs/deployment.md.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from comfytavern import CliCommand, hookimpl, json_response, route
from comfytavern_distributed.settings import DistributedSettings, parse_settings

log = logging.getLogger("comfytavern.distributed")

__all__ = ["RUN_QUEUE_SERVICE", "WORKER_SETTINGS_SERVICE", "settings_of"]

#: Where the active :class:`~comfytavern_distributed.service.DistributedRuns` is published.
RUN_QUEUE_SERVICE = "run_queue"
#: Set by ``comfytavern worker`` before the kernel starts: settings forced on for a worker.
WORKER_SETTINGS_SERVICE = "distributed.worker_settings"


def settings_of(kernel: Any) -> DistributedSettings:
    forced = kernel.services.get(WORKER_SETTINGS_SERVICE)
    if isinstance(forced, DistributedSettings):
        return forced
    return parse_settings(dict(kernel.config.plugins.settings.get("distributed", {})))


@contextlib.asynccontextmanager
async def _lifespan(kernel: Any) -> AsyncIterator[None]:
    # Settings are read here, not in the hook, so a bad configuration stops start-up.
    settings = settings_of(kernel)
    if not settings.enabled:
        yield
        return
    from comfytavern_distributed.service import DistributedRuns

    runs = DistributedRuns(kernel, settings, serves_clients=WORKER_SETTINGS_SERVICE not in kernel.services)
    if kernel.config.storage.runs in (None, "sqlite"):
        log.warning(
            "distributed execution with storage.runs = %r: the run history is not shared between "
            "instances; use \"postgres\" (docs/deployment.md)",
            kernel.config.storage.runs,
        )
    await runs.open()
    if "scheduler" in kernel.services:
        raise RuntimeError("the scheduler started before the distributed plugin's lifespan")
    kernel.services[RUN_QUEUE_SERVICE] = runs
    try:
        yield
    finally:
        if kernel.services.get(RUN_QUEUE_SERVICE) is runs:
            del kernel.services[RUN_QUEUE_SERVICE]
        await runs.close()


@hookimpl
def lifespan(kernel: Any) -> contextlib.AbstractAsyncContextManager[None]:
    return _lifespan(kernel)


@hookimpl
def register_routes(kernel: Any) -> list[BaseRoute]:
    async def status(request: Request) -> Response:
        runs = kernel.services.get(RUN_QUEUE_SERVICE)
        if runs is None:
            return json_response({"enabled": False})
        return json_response(
            {
                "enabled": True,
                "instanceId": runs.instance_id,
                "executes": runs.execute_here,
                "maxConcurrency": runs.max_concurrency,
                "prefix": runs.settings.prefix,
                "workers": await runs.queue.workers(),
                "active": [info for _, info in runs.executions()],
                "events": {"sent": runs.bridge.sent_events, "received": runs.bridge.received_events, "merged": runs.bridge.coalescer.merged},
            }
        )

    return [
        route(
            "/api/distributed/status",
            status,
            summary="Distributed execution: this instance, live workers and active runs of every instance",
            auth="admin",
            scope="server",
            tags=["distributed"],
        )
    ]


@hookimpl
def register_commands(kernel: Any) -> list[CliCommand]:
    from comfytavern_distributed.worker import configure_worker, run_worker

    return [
        CliCommand(
            "worker",
            "execute queued runs from Redis (distributed execution; no HTTP)",
            run=run_worker,
            configure=configure_worker,
        )
    ]
