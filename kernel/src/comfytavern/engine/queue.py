"""The seam between the scheduler and a shared run queue (several instances, worker processes).

By default (no ``RUN_QUEUE`` service is provided) the scheduler runs every accepted run in
this process: its own FIFO queue, ``execution.max_concurrent_workflows`` at once. A plugin that
provides a :class:`RunQueue` as the ``RUN_QUEUE`` service before the scheduler starts (its
``lifespan`` hook runs first) changes only *where* runs execute and *where* status comes from:

- :meth:`Scheduler.submit` still validates the payload here (errors are immediate) and announces
  the run, then hands it to :meth:`RunQueue.enqueue` instead of its local FIFO;
- whichever process claims it calls :meth:`Scheduler.run_claimed`, which executes it with the same
  engine, publishing the same events on that process's hub and saving the same records;
- queries for runs that are not in this process (status, wait, interrupt, listings) go to the
  queue, which answers from shared state.

Ownership checks stay in the scheduler: the queue answers for any run, the scheduler decides who
may see it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from comfytavern.auth import Principal
    from comfytavern.engine.payload import ExecutionPayload
    from comfytavern.engine.scheduler import Scheduler
    from comfytavern.storage.runs import RunRecord

__all__ = ["RunQueue"]


@runtime_checkable
class RunQueue(Protocol):
    async def attach(self, scheduler: Scheduler, task_group: TaskGroup) -> None:
        """Called when the scheduler starts. From now on the queue may call
        :meth:`Scheduler.run_claimed`; its background tasks go in ``task_group`` (the scheduler's),
        which is cancelled when the scheduler stops: a task that must outlive that moment (to
        record the runs being interrupted) shields itself until :meth:`stopped`."""

    async def detach(self) -> None:
        """Called first thing when the scheduler stops: claim no new runs (running ones finish or
        are interrupted by the scheduler's shutdown)."""

    async def stopped(self) -> None:
        """Called last when the scheduler stops (runs ended, history flushed): publish what is
        left and end the background tasks."""

    async def enqueue(self, record: RunRecord, payload: ExecutionPayload, user: Principal) -> None:
        """Queue an accepted run (``record`` is its ``queued`` record, already in the run store).
        Raising marks the run failed."""

    async def get(self, prompt_id: str) -> RunRecord | None:
        """The current record of a run not executing in this process, or ``None`` when the shared
        state does not know it (the scheduler then reads the run store)."""

    async def interrupt(self, prompt_id: str, wait: float) -> bool:
        """Interrupt a run wherever it is; ``False`` when it is unknown or already finished.
        Waits up to ``wait`` seconds for it to end."""

    async def wait(self, prompt_id: str, timeout: float) -> None:
        """Return when the run has finished, or after ``timeout`` seconds."""

    def executions(self) -> list[tuple[str, dict[str, Any]]]:
        """Recently seen queued and running runs of every instance: ``("running"|"pending", info)``
        where ``info`` is :meth:`ActiveRun.info`-shaped (``promptId``, ``status``, ``ownerId``...)."""

    def counts(self) -> dict[str, int]:
        """``{"runningExecutions": n, "pendingExecutions": m}`` across every instance."""

    def watchable(self, prompt_id: str) -> bool:
        """Whether the run is known to be queued or running elsewhere (its events will arrive on
        this process's hub). Synchronous: answered from what the queue has seen recently."""
