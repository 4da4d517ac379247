"""Worker threads for sync nodes (and sync generator steps): their own bounded pool.

Why not ``anyio.to_thread.run_sync`` with its default limiter: the server's own blocking work
shares that limiter (big payloads prepared by the scheduler, file storage, character cards, node
reloads...), so sync nodes that block would stall the server itself.

Why a token is handled by hand: anyio gives a call's token back the moment the call is abandoned
(an interrupt or a node timeout cancels it) although its thread keeps running; a node that hangs
would then let threads pile up without bound, one per run. Here an abandoned call keeps its token
until its function really returns, so at most ``size`` node threads ever exist. When hung nodes
hold every token, further sync nodes wait for one (interruptibly, within their node timeout) and
the abandonments are logged with the count.

Why the token goes back with a "call soon" and not ``anyio.from_thread.run_sync``: the latter
waits for the event loop to run the call, and a loop that has stopped (the server or a test
ended while the node still ran) never does, so the thread, and the interpreter's exit that joins
it, would wait forever. A call scheduled on a stopped loop is simply never run.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Callable
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

__all__ = ["DEFAULT_NODE_THREADS", "NodeThreads"]

log = logging.getLogger("comfytavern.engine")

#: Default size of the node thread pool (``execution.node_threads``), anyio's own default.
DEFAULT_NODE_THREADS = 40


class _Call:
    """One call's hand-over between the event loop and its worker thread (under ``lock``)."""

    __slots__ = ("lock", "started", "finished", "cancelled", "abandoned", "release", "soon")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = False
        self.finished = False
        #: Cancelled before its thread started it: it never will.
        self.cancelled = False
        #: Cancelled while its function ran: the thread gives the token back when it returns.
        self.abandoned = False
        self.release: Callable[[], None] | None = None
        #: The event loop's thread-safe "run this soon" (set with ``release``).
        self.soon: Callable[[Callable[[], None]], object] | None = None

    def run(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        with self.lock:
            if self.cancelled:
                return None
            self.started = True
        try:
            return fn(*args)
        finally:
            with self.lock:
                self.finished = True
                release = self.release if self.abandoned else None
                soon = self.soon
            if release is not None and soon is not None:
                try:
                    soon(release)  # never waits (see the module docstring)
                except RuntimeError:  # the event loop is closed: nothing left to release
                    log.debug("abandoned node thread finished after its event loop", exc_info=True)


def _call_soon() -> Callable[[Callable[[], None]], object]:
    """The running event loop's thread-safe "call this soon", which never waits (asyncio, what
    the server runs on); on another anyio backend, anyio's call back into the loop, which waits."""
    try:
        return asyncio.get_running_loop().call_soon_threadsafe
    except RuntimeError:
        token = anyio.lowlevel.current_token()
        return lambda fn: anyio.from_thread.run_sync(fn, token=token)


class NodeThreads:
    """At most ``size`` threads running node code at once, abandoned ones included."""

    def __init__(self, size: int = DEFAULT_NODE_THREADS) -> None:
        if size < 1:
            raise ValueError("node thread pool size must be at least 1")
        self.size = size
        #: Abandoned calls whose function is still running (each holds a token).
        self.abandoned = 0
        self._limiter: anyio.CapacityLimiter | None = None
        self._carrier: anyio.CapacityLimiter | None = None

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        """The pool's limiter (created on first use, in the event loop that uses it)."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.size)
            # ``to_thread.run_sync`` needs a limiter; ours is taken already, so an unbounded one.
            self._carrier = anyio.CapacityLimiter(math.inf)
        return self._limiter

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in a worker thread; cancelling abandons the thread (see the module)."""
        limiter = self.limiter
        call = _Call()
        await limiter.acquire_on_behalf_of(call)
        try:
            result = await anyio.to_thread.run_sync(call.run, fn, args, abandon_on_cancel=True, limiter=self._carrier)
        except BaseException:
            with call.lock:
                running = call.started and not call.finished
                if running:
                    call.abandoned = True
                    call.release = lambda: self._release_abandoned(call)
                    call.soon = _call_soon()
                else:
                    call.cancelled = True
            if not running:
                limiter.release_on_behalf_of(call)
                raise
            self.abandoned += 1
            log.warning(
                "a sync node's worker thread was abandoned while it ran %s; %d of %d node threads are held by abandoned calls",
                getattr(fn, "__qualname__", fn), self.abandoned, self.size,
            )
            raise
        limiter.release_on_behalf_of(call)
        return result

    def _release_abandoned(self, call: _Call) -> None:
        self.abandoned -= 1
        self.limiter.release_on_behalf_of(call)
