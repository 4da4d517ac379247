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
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from comfytavern import CliCommand, ServiceKey, ServiceUse, hookimpl, json_response, provides, route, uses
from comfytavern.services import RUN_QUEUE, SCHEDULER
from comfytavern_distributed.settings import DistributedSettings, parse_settings

if TYPE_CHECKING:
    from comfytavern_distributed.service import DistributedRuns

log = logging.getLogger("comfytavern.distributed")

__all__ = ["DISTRIBUTED_RUNS", "WORKER_SETTINGS", "settings_of"]

#: This plugin's own view of the active runs (status route, worker); the kernel's scheduler sees
#: the same object as the ``RUN_QUEUE`` service.
DISTRIBUTED_RUNS: ServiceKey[DistributedRuns] = ServiceKey("distributed.runs", "the active DistributedRuns")
#: Set by ``comfytavern worker`` before the kernel starts: settings forced on for a worker.
WORKER_SETTINGS: ServiceKey[DistributedSettings] = ServiceKey(
    "distributed.worker_settings", "settings forced on by comfytavern worker"
)


@hookimpl
def register_services() -> list[ServiceUse]:
    return [provides(RUN_QUEUE), provides(DISTRIBUTED_RUNS), provides(WORKER_SETTINGS), uses(SCHEDULER)]


def settings_of(kernel: Any) -> DistributedSettings:
    forced = kernel.services.lookup(WORKER_SETTINGS)
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

    runs = DistributedRuns(kernel, settings, serves_clients=WORKER_SETTINGS not in kernel.services)
    if kernel.config.storage.runs in (None, "sqlite"):
        log.warning(
            "distributed execution with storage.runs = %r: the run history is not shared between "
            "instances; use \"postgres\" (docs/deployment.md)",
            kernel.config.storage.runs,
        )
    await runs.open()
    if SCHEDULER in kernel.services:
        raise RuntimeError("the scheduler started before the distributed plugin's lifespan")
    kernel.services.provide(RUN_QUEUE, runs)
    kernel.services.provide(DISTRIBUTED_RUNS, runs)
    try:
        yield
    finally:
        kernel.services.withdraw(RUN_QUEUE, runs)
        kernel.services.withdraw(DISTRIBUTED_RUNS, runs)
        await runs.close()


@hookimpl
def lifespan(kernel: Any) -> contextlib.AbstractAsyncContextManager[None]:
    return _lifespan(kernel)


@hookimpl
def register_routes(kernel: Any) -> list[BaseRoute]:
    async def status(request: Request) -> Response:
        runs = kernel.services.lookup(DISTRIBUTED_RUNS)
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
