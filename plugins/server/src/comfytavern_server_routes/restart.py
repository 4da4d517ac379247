"""Graceful in-place restart of a ``comfytavern serve`` process (``POST /api/server/restart``).

Sequence, after the route has already answered 202:

1. the scheduler (the ``SCHEDULER`` service) stops accepting runs and finishes or
   interrupts the running ones per ``execution.on_shutdown``, bounded by
   ``execution.shutdown_timeout_seconds``; it records the ones it cuts off as interrupted;
2. uvicorn is asked to exit: it stops accepting, closes idle keep-alive connections and
   WebSockets (close code 1012, "service restart"), waits for in-flight requests, then runs the
   lifespan shutdown (plugins, stores). Its listening sockets stay open meanwhile, answered by a
   stand-in (:mod:`comfytavern.handoff`: 409 for another restart, 503 otherwise), so no
   connection is refused;
3. once ``server.run()`` has returned, the CLI calls the ``RESTART_REQUESTED`` service
   (:meth:`RestartController.exec_`, provided when the restart is claimed), which replaces the process with the same command line
   (``os.execv``): same PID, fresh interpreter, freshly loaded plugins and configuration; the
   listening sockets are inherited and served again by the new process.

The controller exists only under ``comfytavern serve``: it is built on the first request from the
``UVICORN_SERVER`` service the CLI provides (with ``--reload`` or another ASGI server there is none,
and the route answers 409). The scheduler side is duck-typed so the kernel works with any scheduler: if it has
``async shutdown(*, mode, timeout, reason)`` that is awaited; otherwise ``stop_accepting()``
(sync or async) is called if present. Either way the scheduler's lifespan exit is the backstop.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio

from comfytavern import handoff
from comfytavern.services import RESTART_REQUESTED, SCHEDULER, UVICORN_SERVER, ServiceKey

if TYPE_CHECKING:
    from comfytavern.kernel import Kernel

__all__ = ["RESTART", "RestartController", "RestartUnavailable", "restart_command", "restart_controller"]

log = logging.getLogger("comfytavern.restart")


#: After the server stopped accepting: time for requests already on their way to be read.
ACCEPTED_GRACE_SECONDS = 0.2


class RestartUnavailable(Exception):
    """The server cannot restart itself (not run by ``comfytavern serve``, or already restarting)."""


def restart_command() -> list[str]:
    """The interpreter plus the exact arguments this process was started with."""
    original = list(getattr(sys, "orig_argv", []) or [])
    if original:
        return [sys.executable, *original[1:]]
    return [sys.executable, *sys.argv]


class RestartController:
    """One per serving process (the private ``RESTART`` service), around ``comfytavern serve``'s server."""

    def __init__(self, kernel: Kernel, server: Any, *, command: Sequence[str] | None = None) -> None:
        self.kernel = kernel
        self.server = server
        self.command = list(command) if command is not None else restart_command()
        self.requested = False
        self.requested_by: str | None = None
        #: The listening sockets kept for the new process, and the stand-in answering on them.
        self._sockets: list[Any] = []
        self._stand_in: handoff.StandIn | None = None

    def claim(self, requested_by: str) -> None:
        """Reserve the restart (raises if one is already under way); call before answering 202."""
        if self.requested:
            raise RestartUnavailable("a restart is already in progress")
        self.requested = True
        self.requested_by = requested_by
        self.kernel.services.provide(RESTART_REQUESTED, self.exec_)

    async def run(self) -> None:
        """Drain runs, then ask uvicorn to stop. Runs after the 202 response was sent."""
        log.warning("server restart requested by %s", self.requested_by or "unknown")
        try:
            await self._drain_runs()
        except Exception:  # noqa: BLE001 - a failing drain must not prevent the restart
            log.exception("restart: the scheduler failed to drain; the lifespan shutdown will interrupt runs")
        try:
            self._sockets, self._stand_in = handoff.begin(self.server)
        except OSError:  # without them the new process binds anew
            log.exception("restart: could not keep the listening sockets; connections are refused until the new process serves")
        if self._stand_in is not None:
            # Requests on connections accepted just before are read and dispatched first, so
            # uvicorn's shutdown does not take them for idle ones and close them unanswered.
            await anyio.sleep(ACCEPTED_GRACE_SECONDS)
        self.server.should_exit = True

    async def _drain_runs(self) -> None:
        scheduler = self.kernel.services.lookup(SCHEDULER)
        if scheduler is None:
            return
        execution = self.kernel.config.execution
        mode, timeout = execution.on_shutdown, execution.shutdown_timeout_seconds
        shutdown = getattr(scheduler, "shutdown", None)
        if shutdown is not None and inspect.iscoroutinefunction(shutdown):
            with anyio.move_on_after(timeout + 5.0) as scope:
                result = await shutdown(mode=mode, timeout=timeout, reason="server restart")
            if scope.cancelled_caught:
                log.error("restart: scheduler.shutdown did not return within %.1f s", timeout + 5.0)
            elif result:
                log.warning("restart: runs affected by the restart (%s): %s", mode, result)
            return
        stop = getattr(scheduler, "stop_accepting", None)
        if stop is not None:
            outcome = stop()
            if inspect.isawaitable(outcome):
                await outcome

    def exec_(self) -> None:
        """Replace this process with the same command line (called by the CLI after uvicorn stopped)."""
        log.warning("restarting: exec %s", " ".join(self.command))
        for handler in logging.getLogger().handlers:
            try:
                handler.flush()
            except Exception:  # noqa: BLE001
                pass
        sys.stdout.flush()
        sys.stderr.flush()
        if self._stand_in is not None:
            self._stand_in.stop()
        if self._sockets:
            handoff.export_for_exec(self._sockets)
        os.execv(self.command[0], self.command)


#: This plugin's restart controller (private: only ``POST /api/server/restart`` uses it).
RESTART: ServiceKey[RestartController] = ServiceKey("restart", "restarts the serving process (comfytavern serve)")


def restart_controller(kernel: Kernel) -> RestartController | None:
    """The controller of this process, built on first use; ``None`` when not run by ``comfytavern serve``."""
    controller = kernel.services.lookup(RESTART)
    if controller is None:
        server = kernel.services.lookup(UVICORN_SERVER)
        if server is None:
            return None
        controller = kernel.services.setdefault(RESTART, lambda: RestartController(kernel, server))
    return controller
