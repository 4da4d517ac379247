"""Dispatches hub events to ``on_execution_event`` implementations, off the engine's hot path.

One task reads a hub subscription and calls each observer separately; a returned awaitable is
awaited with a time limit; exceptions are logged (rate-limited), counted in the hub's
``failures`` (``observer:<plugin>``) and dropped so one bad observer never affects runs or other
observers. ``SystemExit`` is isolated too: a plugin's stray ``sys.exit()`` (an argparse error...)
would otherwise end this dispatcher's task group, which is the server's.
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

from comfytavern import tracing

if TYPE_CHECKING:
    from comfytavern.kernel import Kernel

log = logging.getLogger("comfytavern.observers")

#: Seconds one observer may spend on one event.
OBSERVER_TIMEOUT = 5.0
#: Events buffered for observers before the oldest are dropped (observers must keep up).
OBSERVER_BUFFER = 100_000


async def run_observers(kernel: Kernel, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    impls = kernel.pm.hook.on_execution_event.get_hookimpls()
    if not impls:
        task_status.started()
        return
    while True:
        subscription = kernel.hub.subscribe(max_buffer=OBSERVER_BUFFER)
        task_status.started()
        task_status = anyio.TASK_STATUS_IGNORED
        with subscription:
            async for event in subscription:
                traced = tracing.enabled()
                for impl in impls:
                    info = kernel.loader.table.get(impl.plugin_name)
                    if info is None or info.status != "loaded":
                        continue
                    started = time.perf_counter()
                    await _call_one(kernel, impl, event)
                    if traced:
                        tracing.trace("on_execution_event", impl.plugin_name, started)
        if not subscription.overflowed:
            return
        log.warning("execution-event observers fell behind; events were dropped")


async def _call_one(kernel: Kernel, impl: Any, event: Any) -> None:
    try:
        result = impl.function(event)
        if inspect.isawaitable(result):
            with anyio.fail_after(OBSERVER_TIMEOUT):
                await result
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - observers must never break anything
        name = f"observer:{impl.plugin_name}"
        count = kernel.hub.record_failure(name)
        # Powers of two only: an observer that fails on every event must not flood the log.
        if count & (count - 1) == 0:
            log.error(
                "on_execution_event observer %s failed on %s (%d failure(s) so far)",
                impl.plugin_name, getattr(event, "type", "?"), count, exc_info=exc,
            )
