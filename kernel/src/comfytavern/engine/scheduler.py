"""The scheduler: FIFO queue, ``max_concurrent_workflows`` runs at once, per-user ownership,
live status, event replay, and the persisted bounded history.

It is kernel mechanism: the kernel's lifespan starts one and publishes it as
the ``SCHEDULER`` service (``kernel.services.require(SCHEDULER)``). Routes (HTTP, WebSocket) are thin layers over it.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup, TaskStatus

from comfytavern.auth import Principal
from comfytavern.engine.active import REPLAY_MAX_BYTES, ActiveRun, new_prompt_id, now_ms, replay_record
from comfytavern.engine.executor import Execution, ExecutionSettings
from comfytavern.engine.graph import Limits, PreparedGraph
from comfytavern.engine.groups import expand_groups, has_groups
from comfytavern.engine.issues import WorkflowInvalid
from comfytavern.engine.payload import ExecutionPayload
from comfytavern.engine.retained import RecentRuns
from comfytavern.engine.threads import NodeThreads
from comfytavern.engine.validation import prepare_checked
from comfytavern.events import EventHub, HubEvent
from comfytavern.logs import run_context
from comfytavern.nodes.registry import RegistryHolder
from comfytavern.services import RUN_QUEUE, Services
from comfytavern.storage.runs import FINAL_STATUSES, MemoryRunStore, RunRecord, RunStore

if TYPE_CHECKING:
    from comfytavern.engine.queue import RunQueue
    from comfytavern.kernel import Kernel

__all__ = ["ActiveRun", "RunNotRecorded", "Scheduler", "SchedulerClosed", "new_prompt_id", "replay_record"]

log = logging.getLogger("comfytavern.scheduler")

#: Bytes of encoded records of finished runs kept in memory (``execution.recent_runs_max_bytes``).
RECENT_RUNS_MAX_BYTES = 8 * 1024 * 1024
#: Payloads with more nodes than this are prepared in a worker thread.
THREAD_PREPARE_THRESHOLD = 2_000


class SchedulerClosed(RuntimeError):
    """The server is shutting down and accepts no new runs."""


class RunNotRecorded(SchedulerClosed):
    """The run store did not take a new run's record, so the run is refused: a ``promptId`` is
    handed out only once its record would survive a crash (callers answer it like a closed
    scheduler, 503)."""


#: Longest wait for the store to take a new run's record before the run is refused.
ACCEPT_RECORD_TIMEOUT = 30.0


class Scheduler:
    """Admits runs FIFO up to ``max_concurrent`` at once. Use as ``async with scheduler:``."""

    def __init__(
        self,
        *,
        hub: EventHub,
        registry: RegistryHolder,
        services: Services | None = None,
        store: RunStore | None = None,
        projects: Any = None,
        max_concurrent: int = 5,
        history_size: int = 500,
        settings: ExecutionSettings | None = None,
        limits: Limits | None = None,
        on_shutdown: str = "interrupt",
        shutdown_timeout: float = 10.0,
        history_write_timeout: float = 10.0,
        run_queue: RunQueue | None = None,
        replay_max_bytes: int = REPLAY_MAX_BYTES,
        recent_runs_max_bytes: int = RECENT_RUNS_MAX_BYTES,
    ) -> None:
        self.hub = hub
        self.replay_max_bytes = replay_max_bytes
        #: A shared queue (the ``RUN_QUEUE`` service): runs then execute wherever it sends
        #: them; ``None`` = in this process (see :mod:`comfytavern.engine.queue`).
        self.run_queue = run_queue
        self.registry = registry
        self.services = services if services is not None else Services()
        self.store: RunStore = store if store is not None else MemoryRunStore()
        self.projects = projects
        self.max_concurrent = max_concurrent
        self.history_size = history_size
        self.settings = settings or ExecutionSettings()
        self.limits = limits or Limits()
        self.on_shutdown = on_shutdown
        self.shutdown_timeout = shutdown_timeout
        #: Longest a store call of the history writer may take; at shutdown, also the time the
        #: writer has in all for the records still queued (what is left is logged, not written).
        self.history_write_timeout = history_write_timeout
        self._runs: dict[str, ActiveRun] = {}
        self._running: dict[str, ActiveRun] = {}
        self._queue: deque[ActiveRun] = deque()
        #: Finished runs' records until (and a while after) the writer has stored them.
        self._recent = RecentRuns(recent_runs_max_bytes, max(50, min(history_size, 1000)))
        self._tg: TaskGroup | None = None
        self._closing = False
        self._write_send: Any = None
        self._enqueued = 0
        self._written = 0
        self._written_event = anyio.Event()
        self._writer_scope: anyio.CancelScope | None = None
        self._writer_deadline = float("inf")
        self._writer_done = False

    @classmethod
    def from_kernel(cls, kernel: Kernel) -> Scheduler:
        cfg = kernel.config.execution
        return cls(
            hub=kernel.hub,
            registry=kernel.registry,
            services=kernel.services,
            store=kernel.storage.runs if kernel.storage.has("runs") else None,
            projects=kernel.storage.projects if kernel.storage.has("projects") else None,
            max_concurrent=cfg.max_concurrent_workflows,
            history_size=cfg.history_size,
            settings=ExecutionSettings(node_timeout=cfg.node_timeout_seconds, node_threads=NodeThreads(cfg.node_threads)),
            limits=Limits(max_nodes=cfg.max_nodes, max_edges=cfg.max_edges),
            on_shutdown=cfg.on_shutdown,
            shutdown_timeout=cfg.shutdown_timeout_seconds,
            history_write_timeout=cfg.history_write_timeout_seconds,
            run_queue=kernel.services.lookup(RUN_QUEUE),
            replay_max_bytes=cfg.replay_max_bytes,
            recent_runs_max_bytes=cfg.recent_runs_max_bytes,
        )

    # -- life-cycle ---------------------------------------------------------------------------
    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled (start it with ``await task_group.start(scheduler.serve)``).

        On cancellation it shuts down in a shielded scope: queued runs and, depending on
        ``on_shutdown``, running runs are recorded as interrupted and the history is flushed.
        """
        # With a shared queue the store is shared too: unfinished records may be live runs of
        # other processes (the queue's janitor ends those whose worker died).
        fixed = await self.store.interrupt_unfinished(now_ms()) if self.run_queue is None else 0
        if fixed:
            log.warning("%d run(s) left unfinished by the previous process are now recorded as interrupted", fixed)
        async with anyio.create_task_group() as tg:
            self._tg = tg
            send, receive = anyio.create_memory_object_stream[RunRecord](max_buffer_size=100_000)
            self._write_send = send
            tg.start_soon(self._writer, receive)
            if self.run_queue is not None:
                await self.run_queue.attach(self, tg)
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                with anyio.CancelScope(shield=True):
                    await self._shutdown()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Scheduler]:
        """``async with scheduler.running():`` serves for the duration of the block (tests, tools)."""
        async with anyio.create_task_group() as tg:
            await tg.start(self.serve)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()

    async def _shutdown(self) -> None:
        self._closing = True
        try:
            if self.run_queue is not None:
                with anyio.move_on_after(self.shutdown_timeout):
                    await self.run_queue.detach()
            await self._drain(self.on_shutdown, self.shutdown_timeout)
        finally:
            if self.run_queue is not None:
                with anyio.move_on_after(self.shutdown_timeout):
                    await self.run_queue.stopped()
            if self._write_send is not None:
                self._write_send.close()
            # The writer is shielded from the server's cancellation; this is its deadline.
            self._writer_deadline = anyio.current_time() + self.history_write_timeout
            if self._writer_scope is not None:
                self._writer_scope.deadline = self._writer_deadline
            self._tg = None

    def stop_accepting(self) -> None:
        """Refuse new runs from now on (``submit`` raises :class:`SchedulerClosed`)."""
        self._closing = True

    async def shutdown(self, *, mode: str | None = None, timeout: float | None = None, reason: str = "shutdown") -> list[str]:
        """Stop accepting runs, then ``finish`` (bounded by ``timeout``) or ``interrupt`` the running
        ones; queued runs are interrupted. Returns the ids of the runs that were cut off. Used by a
        graceful restart; the serve loop's own shutdown is the backstop."""
        self._closing = True
        cut = await self._drain(mode or self.on_shutdown, self.shutdown_timeout if timeout is None else timeout)
        if cut:
            log.warning("%s: %d run(s) interrupted: %s", reason, len(cut), ", ".join(cut))
        return cut

    async def _drain(self, mode: str, timeout: float) -> list[str]:
        cut: list[str] = []
        for run in list(self._queue):
            self._queue.remove(run)
            cut.append(run.prompt_id)
            self._finish(run, "interrupted", dequeue=False)
        if self._running and mode == "finish":
            with anyio.move_on_after(timeout):
                for run in list(self._running.values()):
                    await run.done.wait()
        for run in list(self._running.values()):
            cut.append(run.prompt_id)
            run.cancel_requested = True
            if run.scope is not None:
                run.scope.cancel()
        with anyio.move_on_after(timeout):
            for run in list(self._running.values()):
                await run.done.wait()
            await self.flush()
        return cut

    async def _writer(self, receive: Any) -> None:
        # Shielded: the history must be written even while the server is being cancelled; but a
        # hung store must not hold the shutdown forever, so ``_shutdown`` gives this scope a
        # deadline, and every store call has its own (``history_write_timeout``).
        current: list[RunRecord] = []
        with anyio.CancelScope(shield=True, deadline=self._writer_deadline) as scope:
            self._writer_scope = scope
            await self._write_all(receive, current)
        lost = [f"{r.prompt_id} ({r.status})" for r in current]
        while True:
            try:
                record = receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            lost.append(f"{record.prompt_id} ({record.status})")
        receive.close()
        self._writer_done = True
        self._written_event.set()
        if lost:
            log.error(
                "run history: the store did not take %d record(s) within %g s of the shutdown; not written: %s",
                len(lost), self.history_write_timeout, ", ".join(lost),
            )

    async def _write_all(self, receive: Any, current: list[RunRecord]) -> None:
        timeout = self.history_write_timeout
        async for record in receive:
            current.append(record)
            saved = False
            with anyio.move_on_after(timeout):
                try:
                    await self.store.save(record)
                    saved = True
                    if record.status in FINAL_STATUSES:
                        await self.store.trim(self.history_size)
                except Exception:  # noqa: BLE001 - history must never break runs
                    log.exception("could not save run %s to the history", record.prompt_id)
                    saved = True  # reported above
            if not saved:
                log.error(
                    "run history: the store did not save run %s (%s) within %g s; record not written",
                    record.prompt_id, record.status, timeout,
                )
            current.clear()
            self._written += 1
            # Wake every flusher waiting now, then give later ones a fresh event.
            written, self._written_event = self._written_event, anyio.Event()
            written.set()

    def _persist(self, record: RunRecord) -> None:
        if self._write_send is None:
            return
        try:
            self._write_send.send_nowait(record)
            self._enqueued += 1
        except anyio.WouldBlock:
            log.error("run history writer is saturated; run %s (%s) not saved", record.prompt_id, record.status)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            log.error("run history writer has stopped; run %s (%s) not saved", record.prompt_id, record.status)

    async def _record_accepted(self, record: RunRecord, *, refuse: bool = True) -> None:
        """Store a new run's first record now, before its id is acknowledged to anybody.

        Written directly, not through the history writer: the writer's queue may hold many
        records, and an id must not wait for all of them. Raises :class:`RunNotRecorded` (with
        ``refuse``) when the store fails or does not answer within ``ACCEPT_RECORD_TIMEOUT``.
        """
        try:
            with anyio.fail_after(ACCEPT_RECORD_TIMEOUT):
                await self.store.save(record)
        except Exception as exc:  # noqa: BLE001 - any store failure means the id cannot be given
            log.exception("could not record new run %s; it is refused", record.prompt_id)
            if refuse:
                raise RunNotRecorded("the run history is unavailable; the run was not accepted") from exc

    async def flush(self) -> None:
        """Wait until every record handed to the writer is stored."""
        target = self._enqueued
        while self._written < target and not self._writer_done:
            await self._written_event.wait()

    # -- submission ---------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closing or self._tg is None:
            raise SchedulerClosed("the server is shutting down")

    async def prepare(self, payload: ExecutionPayload, user: Principal) -> PreparedGraph:
        """Expand node groups, then validate (input values too) and precompute (raises :class:`WorkflowInvalid`)."""
        if has_groups(payload):
            project_id = payload.metadata.get("projectId")
            payload = await expand_groups(
                payload,
                self.projects,
                user_id=user.id,
                project_id=project_id if isinstance(project_id, str) else None,
            )
        registry = self.registry.current
        if len(payload.nodes) > THREAD_PREPARE_THRESHOLD:
            return await anyio.to_thread.run_sync(prepare_checked, payload, registry, self.limits)
        return prepare_checked(payload, registry, self.limits)

    async def submit(
        self,
        payload: ExecutionPayload,
        user: Principal,
        *,
        source: str = "http",
        on_accepted: Callable[[str], None] | None = None,
        reject_invalid: bool = True,
    ) -> str:
        """Queue a run and return its ``promptId``.

        ``on_accepted(prompt_id)`` is called before any event of the run is published (the
        WebSocket sends ``PROMPT_ACCEPTED_RESPONSE`` from it, so that message is always first).
        An invalid workflow raises :class:`WorkflowInvalid` when ``reject_invalid``; otherwise it is
        accepted and recorded as a failed run with one ``NODE_ERROR`` per offending node.
        """
        self._check_open()
        prompt_id = new_prompt_id()
        try:
            graph = await self.prepare(payload, user)
        except WorkflowInvalid as exc:
            if reject_invalid:
                raise
            self._check_open()
            await self._reject(prompt_id, payload, user, source, exc, on_accepted)
            return prompt_id
        # ``prepare`` awaits (node groups are read from storage, big payloads go to a thread): a
        # shutdown may have drained the queue meanwhile, and a run accepted now would never run.
        self._check_open()
        run = ActiveRun(prompt_id, user, graph, source, self.hub, self.replay_max_bytes)
        # Stored before anything acknowledges it (the caller's answer, ``on_accepted``, any
        # event): an id handed out must survive a crash. The run is not visible here yet, so no
        # later record of it can be overtaken by this one.
        await self._record_accepted(run.record())
        if self._closing or self._tg is None:
            run.status, run.finished_at = "interrupted", now_ms()
            await self._record_accepted(run.record(), refuse=False)
            raise SchedulerClosed("the server is shutting down")
        if self.run_queue is not None:
            await self._enqueue(run, payload, on_accepted)
            return prompt_id
        self._runs[prompt_id] = run
        if on_accepted is not None:
            on_accepted(prompt_id)
        if len(self._running) < self.max_concurrent:
            self._start(run)
        else:
            self._queue.append(run)
            run.emit("EXECUTION_STATUS_UPDATE", {"promptId": prompt_id, "status": "queued"})
        self._persist(run.record())
        return prompt_id

    async def _enqueue(
        self, run: ActiveRun, payload: ExecutionPayload, on_accepted: Callable[[str], None] | None
    ) -> None:
        """Hand an accepted run to the shared queue (its ``queued`` record is already stored, so no
        later record written by the executing process can be overwritten by it)."""
        assert self.run_queue is not None
        if on_accepted is not None:
            on_accepted(run.prompt_id)
        run.emit("EXECUTION_STATUS_UPDATE", {"promptId": run.prompt_id, "status": "queued"})
        try:
            await self.run_queue.enqueue(run.record(), payload, run.owner)
        except Exception as exc:  # noqa: BLE001 - the run was announced: end it visibly
            log.exception("could not queue run %s", run.prompt_id)
            run.error_info = {"message": f"could not queue the run: {exc}"}
            self._finish(run, "error", dequeue=False)

    async def run_claimed(
        self, prompt_id: str, payload: ExecutionPayload, user: Principal, *, source: str, submitted_at: int
    ) -> RunRecord:
        """Execute, here and now, a run this process claimed from the shared queue (the queue
        bounds how many run at once); returns its final record once it is stored."""
        self._check_open()
        try:
            graph = await self.prepare(payload, user)
        except WorkflowInvalid as exc:
            self._check_open()
            await self._reject(prompt_id, payload, user, source, exc, None)
            record = self._recent.get(prompt_id)
            assert record is not None  # just remembered by ``_reject``
            return record
        self._check_open()  # as in ``submit``: a shutdown may have begun while preparing
        run = ActiveRun(prompt_id, user, graph, source, self.hub, self.replay_max_bytes)
        run.submitted_at = submitted_at
        self._runs[prompt_id] = run
        self._start(run)
        await run.done.wait()
        await self.flush()
        return self._recent.get(prompt_id) or run.record()

    async def _reject(
        self,
        prompt_id: str,
        payload: ExecutionPayload,
        user: Principal,
        source: str,
        exc: WorkflowInvalid,
        on_accepted: Callable[[str], None] | None,
    ) -> None:
        owner_id = user.id
        now = now_ms()
        by_node: dict[str, list[str]] = {}
        for issue in exc.issues:
            if issue.node_id is not None:
                by_node.setdefault(issue.node_id, []).append(issue.message)
        error_info = {"message": exc.message, **exc.details()}
        workflow_id = payload.workflow_id or payload.metadata.get("workflowId")
        name = payload.metadata.get("workflowName")
        record = RunRecord(
            prompt_id=prompt_id,
            owner_id=owner_id,
            status="error",
            submitted_at=now,
            finished_at=now,
            source=source,
            workflow_id=workflow_id if isinstance(workflow_id, str) else None,
            workflow_name=name if isinstance(name, str) else None,
            node_count=len(payload.nodes),
            node_status={node_id: {"status": "error", "error": "; ".join(m)} for node_id, m in by_node.items()},
            error_info=error_info,
        )
        # Its only record, stored before the id is handed out (as for any accepted run).
        await self._record_accepted(record)
        self._remember(record)
        if on_accepted is not None:
            on_accepted(prompt_id)
        for node_id, messages in by_node.items():
            message = "; ".join(messages)
            self.hub.emit(
                "NODE_ERROR",
                {
                    "promptId": prompt_id,
                    "nodeId": node_id,
                    "errorDetails": message,
                    "errorInfo": {"message": message, "type": "ValidationError"},
                },
                prompt_id=prompt_id,
                owner_id=owner_id,
            )
        self.hub.emit(
            "EXECUTION_STATUS_UPDATE",
            {"promptId": prompt_id, "status": "error", "errorInfo": error_info},
            prompt_id=prompt_id,
            owner_id=owner_id,
        )
        self.hub.emit("SYSTEM_QUEUE_UPDATE", self.queue_counts())

    def _start(self, run: ActiveRun) -> None:
        assert self._tg is not None
        run.status = "running"
        run.started_at = now_ms()
        self._running[run.prompt_id] = run
        run.emit("EXECUTION_STATUS_UPDATE", {"promptId": run.prompt_id, "status": "running"})
        self._tg.start_soon(self._run, run)

    async def _run(self, run: ActiveRun) -> None:
        execution = Execution(
            run.graph,
            prompt_id=run.prompt_id,
            user=run.owner,
            emit=run.emit,
            services=self.services,
            settings=self.settings,
        )
        run.execution = execution
        status = "complete"
        # Shielded from the server's own cancellation: only ``interrupt`` or the shutdown policy
        # (which cancel this scope) stop a run, and the run is always recorded.
        with anyio.CancelScope(shield=True) as scope:
            run.scope = scope
            if run.cancel_requested:
                scope.cancel()
            try:
                with run_context(run.prompt_id):
                    await execution.run()
            except Exception as exc:  # noqa: BLE001 - an engine bug must not kill the scheduler
                log.exception("run %s failed inside the engine", run.prompt_id)
                status = "error"
                run.error_info = {"message": f"Internal engine error: {exc}"}
        if scope.cancelled_caught or run.cancel_requested:
            status = "interrupted"
            execution._mark_interrupted()
        elif status == "complete" and execution.failed:
            status = "error"
            run.error_info = execution.error_summary()
        self._finish(run, status)

    def _finish(self, run: ActiveRun, status: str, *, dequeue: bool = True) -> None:
        run.status = status
        run.finished_at = now_ms()
        payload: dict[str, Any] = {"promptId": run.prompt_id, "status": status}
        if status == "error" and run.error_info is not None:
            payload["errorInfo"] = run.error_info
        execution = run.execution
        run.emit("EXECUTION_STATUS_UPDATE", payload, execution.node_durations if execution is not None else None)
        self._running.pop(run.prompt_id, None)
        self._runs.pop(run.prompt_id, None)
        record = run.record()
        self._remember(record)
        self._persist(record)
        run.end_log()
        run.done.set()
        if dequeue:
            while self._queue and len(self._running) < self.max_concurrent and not self._closing:
                self._start(self._queue.popleft())
        self.hub.emit("SYSTEM_QUEUE_UPDATE", self.queue_counts())

    def _remember(self, record: RunRecord) -> None:
        self._recent.put(record)

    # -- control ------------------------------------------------------------------------------
    @staticmethod
    def visible(owner_id: str, user: Principal) -> bool:
        return user.is_admin or owner_id == user.id

    def active(self, prompt_id: str, user: Principal) -> ActiveRun | None:
        run = self._runs.get(prompt_id)
        if run is None or not self.visible(run.owner.id, user):
            return None
        return run

    async def interrupt(self, prompt_id: str, user: Principal, *, wait: float = 2.0) -> bool:
        """Cancel a queued or running run of ``user`` (admins: any). False when there is none."""
        run = self.active(prompt_id, user)
        if run is None and self.run_queue is not None and prompt_id not in self._runs:
            remote = await self.run_queue.get(prompt_id)
            if remote is None or remote.finished or not self.visible(remote.owner_id, user):
                return False
            return await self.run_queue.interrupt(prompt_id, wait)
        if run is None or run.status in FINAL_STATUSES:
            return False
        if run.status == "queued":
            self._queue.remove(run)
            self._finish(run, "interrupted")
            return True
        run.cancel_requested = True
        if run.scope is not None:
            run.scope.cancel()
        with anyio.move_on_after(wait):
            await run.done.wait()
        return True

    async def wait(self, prompt_id: str, user: Principal, timeout: float) -> RunRecord | None:
        """The run's record once it has finished, or its current state after ``timeout`` seconds."""
        run = self.active(prompt_id, user)
        if run is not None:
            with anyio.move_on_after(timeout):
                await run.done.wait()
        elif self.run_queue is not None and prompt_id not in self._runs:
            remote = await self.run_queue.get(prompt_id)
            if remote is not None and not remote.finished and self.visible(remote.owner_id, user):
                await self.run_queue.wait(prompt_id, timeout)
        return await self.get(prompt_id, user)

    # -- queries ------------------------------------------------------------------------------
    async def get(self, prompt_id: str, user: Principal) -> RunRecord | None:
        run = self.active(prompt_id, user)
        if run is not None:
            return run.record()
        record = self._recent.get(prompt_id)
        if record is None and self.run_queue is not None and prompt_id not in self._runs:
            record = await self.run_queue.get(prompt_id)
        if record is None:
            record = await self.store.get(prompt_id)
        if record is None or not self.visible(record.owner_id, user):
            return None
        return record

    def queue_counts(self) -> dict[str, int]:
        if self.run_queue is not None:
            return self.run_queue.counts()
        return {"runningExecutions": len(self._running), "pendingExecutions": len(self._queue)}

    def stats(self) -> dict[str, int]:
        return {"maxConcurrentWorkflows": self.max_concurrent, **self.queue_counts()}

    def executions(self, user: Principal) -> dict[str, list[dict[str, Any]]]:
        out = {
            "running": [r.info() for r in self._running.values() if self.visible(r.owner.id, user)],
            "pending": [r.info() for r in self._queue if self.visible(r.owner.id, user)],
        }
        if self.run_queue is not None:
            for kind, info in self.run_queue.executions():
                if info["promptId"] not in self._runs and self.visible(info.get("ownerId", ""), user):
                    out[kind].append(info)
        return out

    def watchable(self, prompt_id: str, user: Principal) -> bool:
        """Whether live events of this run may still arrive on this process's hub."""
        if self.active(prompt_id, user) is not None:
            return True
        return self.run_queue is not None and prompt_id not in self._runs and self.run_queue.watchable(prompt_id)

    async def history(self, user: Principal, *, limit: int = 50, offset: int = 0) -> tuple[list[RunRecord], int]:
        await self.flush()
        owner = None if user.is_admin else user.id
        return await self.store.list(owner_id=owner, limit=limit, offset=offset), await self.store.count(owner_id=owner)

    async def replay(self, prompt_id: str, user: Principal) -> list[HubEvent] | None:
        """Events so far for a run the user may see: the live log of an active run, or a
        synthesized summary (final node states, interface outputs, final status) of a finished one.

        For an active run this returns without awaiting, so a caller that registers its interest
        right after gets every later event exactly once.
        """
        run = self.active(prompt_id, user)
        if run is not None:
            log = run.log
            return log.events(prompt_id, run.owner.id) if log is not None else []
        record = await self.get(prompt_id, user)
        if record is None:
            return None
        return replay_record(record)
