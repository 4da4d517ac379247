"""The distributed run queue as the scheduler sees it (:class:`comfytavern.engine.queue.RunQueue`)
and as the Redis queue sees the engine (:class:`~comfytavern_distributed.queue.Executor`).

One :class:`DistributedRuns` per process (server instance or ``comfytavern worker``), published at
the ``RUN_QUEUE`` service by the plugin's lifespan before the scheduler starts.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
from anyio.abc import TaskGroup
from redis.asyncio import Redis
from redis.exceptions import RedisError

from comfytavern import HubEvent, Principal
from comfytavern.engine.encoding import safe_encoder
from comfytavern.engine.payload import ExecutionPayload
from comfytavern.revocation import Revocation
from comfytavern.storage.runs import FINAL_STATUSES, RunRecord
from comfytavern_distributed.bus import EventBridge
from comfytavern_distributed.keys import Keys
from comfytavern_distributed.queue import WORKER_LOST, QueuedRun, RedisRunQueue, RunOutcome, RunState
from comfytavern_distributed.settings import DistributedSettings, default_instance_id

if TYPE_CHECKING:
    from comfytavern.engine.scheduler import Scheduler
    from comfytavern.kernel import Kernel

__all__ = ["DistributedRuns", "JobRequest", "RedisUnavailable", "SYSTEM"]

log = logging.getLogger("comfytavern.distributed")

#: Who interrupts a run on behalf of another instance (the user was checked there).
SYSTEM = Principal(id="system:distributed", username="distributed", is_admin=True, via="internal")

#: How often the list of active runs (for ``/api/executions`` and queue counts) is refreshed.
CACHE_REFRESH_SECONDS = 1.0
#: How often the executing process publishes a snapshot of each running run (for status queries).
SNAPSHOT_SECONDS = 0.25
#: How often the run store is compared with the shared queue (see :meth:`DistributedRuns.reconcile`).
RECONCILE_SECONDS = 60.0
#: Runs younger than this are never considered lost by the reconciliation.
RECONCILE_MIN_AGE_SECONDS = 60.0
#: Longest wait, at shutdown, for the runs being executed here to be recorded and events sent.
STOP_GRACE_SECONDS = 10.0


class RedisUnavailable(RuntimeError):
    """Redis could not be reached at start-up."""


class JobRequest(msgspec.Struct, kw_only=True):
    """What the submitting instance hands to the executing one (``QueuedRun.request``)."""

    payload: ExecutionPayload
    user: Principal
    source: str = "http"


_record_encoder = safe_encoder
_record_decoder = msgspec.json.Decoder(RunRecord)


def _now_ms() -> int:
    return int(time.time() * 1000)


def lost_error(worker: str | None) -> dict[str, Any]:
    return {
        "message": (
            f"the worker executing this run ({worker or 'unknown'}) stopped renewing its lease; "
            "the run was not re-run (worker_lost)"
        ),
        "code": WORKER_LOST,
        "worker": worker,
    }


class DistributedRuns:
    def __init__(
        self,
        kernel: Kernel,
        settings: DistributedSettings,
        *,
        execute: bool | None = None,
        serves_clients: bool = True,
    ) -> None:
        self.kernel = kernel
        self.settings = settings
        self.instance_id = settings.instance_id or default_instance_id()
        self.execute_here = settings.execute if execute is None else execute
        self.max_concurrency = settings.max_concurrency or kernel.config.execution.max_concurrent_workflows
        self.redis = Redis.from_url(settings.redis_url, health_check_interval=30, socket_keepalive=True)
        self.keys = Keys(settings.prefix)
        self.queue = RedisRunQueue(
            self.redis,
            self.keys,
            self.instance_id,
            lease_seconds=settings.lease_seconds,
            heartbeat_seconds=settings.heartbeat_seconds,
            janitor_seconds=settings.janitor_seconds,
            stream_maxlen=settings.stream_maxlen,
            state_ttl_seconds=settings.state_ttl_seconds,
        )
        self.bridge = EventBridge(
            self.redis,
            self.keys,
            kernel.hub,
            self.instance_id,
            window=settings.coalesce_ms / 1000,
            max_chars=settings.coalesce_chars,
            on_cancel=self._on_cancel,
            on_remote_event=self._on_remote_event,
            receive_events=serves_clients,
            on_revocation=self._remote_revocation,
        )
        self._stop_relay: Any = None
        self.scheduler: Scheduler | None = None
        self._consumer_done: anyio.Event | None = None
        self._consumer_scope: anyio.CancelScope | None = None
        self._bridge_stop: anyio.Event | None = None
        self._bridge_done: anyio.Event | None = None
        #: Queued and running runs of every instance seen recently, by id.
        self._active: dict[str, RunState] = {}
        self._waiters: dict[str, anyio.Event] = {}
        self._snapshots: dict[str, bytes] = {}

    # -- life-cycle ------------------------------------------------------------------------
    async def open(self) -> None:
        """At start-up (the plugin's lifespan): fail clearly when Redis is unreachable."""
        try:
            with anyio.fail_after(10):
                await self.redis.ping()
                await self.queue.ensure_group()
        except (RedisError, OSError, TimeoutError) as exc:
            await self.redis.aclose()
            raise RedisUnavailable(f"cannot reach Redis at {self.settings.redis_url}: {exc}") from None
        # From now on (servers, workers and CLI commands alike) ended credentials reach every instance.
        self._stop_relay = self.kernel.revocations.listen(self._relay_revocation)

    async def close(self) -> None:
        if self._stop_relay is not None:
            self._stop_relay()
            self._stop_relay = None
        await self.redis.aclose()

    async def _relay_revocation(self, revocation: Revocation, origin: str | None) -> None:
        if origin is None:  # announced here: relay it (a relayed one came from the bus)
            await self.bridge.publish_revocation(revocation)

    async def _remote_revocation(self, revocation: Revocation, origin: str) -> None:
        await self.kernel.revocations.announce(revocation, origin=origin)

    # -- RunQueue (called by the scheduler) ------------------------------------------------
    async def attach(self, scheduler: Scheduler, task_group: TaskGroup) -> None:
        self.scheduler = scheduler
        stop = self._bridge_stop = anyio.Event()
        done = self._bridge_done = anyio.Event()

        async def bridge(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
            try:
                await self.bridge.run(stop=stop, task_status=task_status)
            finally:
                done.set()

        await task_group.start(bridge)
        await task_group.start(self.queue.janitor, self)
        task_group.start_soon(self._refresh_loop)
        task_group.start_soon(self._reconcile_loop)
        if self.execute_here:
            self._consumer_done = anyio.Event()
            self._consumer_scope = anyio.CancelScope(shield=True)
            await task_group.start(self._consume)
        log.info(
            "distributed execution on %s (prefix %r) as %s: %s",
            self.settings.redis_url.split("@")[-1],
            self.settings.prefix,
            self.instance_id,
            f"executing up to {self.max_concurrency} runs at once" if self.execute_here else "not executing runs",
        )

    async def _consume(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Shielded: during the engine's shutdown it keeps leases alive and records how the runs
        it was executing ended; it returns once they have (or :meth:`stopped` gives up)."""
        assert self._consumer_scope is not None and self._consumer_done is not None
        try:
            with self._consumer_scope:
                await self.queue.consume(self, self.max_concurrency, task_status=task_status)
        finally:
            self._consumer_done.set()

    async def detach(self) -> None:
        self.queue.stop_reading()

    async def stopped(self) -> None:
        self.queue.stop_reading()
        try:
            if self._consumer_done is not None:
                with anyio.move_on_after(STOP_GRACE_SECONDS):
                    await self._consumer_done.wait()
        finally:
            # Even when the caller's own time limit cuts the wait short, the shielded tasks must
            # be told to end, or the scheduler's task group would wait for them forever.
            if self._consumer_scope is not None:
                self._consumer_scope.cancel()
            if self._bridge_stop is not None:
                self._bridge_stop.set()
        if self._bridge_done is not None:
            with anyio.move_on_after(STOP_GRACE_SECONDS):
                await self._bridge_done.wait()
        self.scheduler = None

    async def enqueue(self, record: RunRecord, payload: ExecutionPayload, user: Principal) -> None:
        # The scheduler stored ``record`` before acknowledging the run, so a run the shared
        # queue hands out always has a record the executing process's records replace.
        job = QueuedRun(
            run_id=record.prompt_id,
            owner_id=user.id,
            request=JobRequest(payload=payload, user=user, source=record.source),
            submitted_at=record.submitted_at / 1000,
            origin=self.instance_id,
            workflow_id=record.workflow_id,
            workflow_name=record.workflow_name,
        )
        await self.queue.submit(job)
        self._active[record.prompt_id] = RunState(
            run_id=record.prompt_id,
            status="queued",
            owner_id=user.id,
            submitted_at=record.submitted_at / 1000,
            started_at=None,
            finished_at=None,
            worker=None,
            origin=self.instance_id,
            error=None,
            workflow_id=record.workflow_id,
            workflow_name=record.workflow_name,
            snapshot=None,
        )

    async def get(self, prompt_id: str) -> RunRecord | None:
        state = await self.queue.state(prompt_id)
        if state is None:
            self._active.pop(prompt_id, None)
            return None
        stored = await self._store().get(prompt_id)
        if state.finished:
            self._active.pop(prompt_id, None)
            if stored is not None and not stored.finished:
                # The shared state is ahead of the store (a janitor is writing the record now).
                error = lost_error(state.worker) if state.error == WORKER_LOST else None
                return msgspec.structs.replace(
                    stored,
                    status=state.status,  # type: ignore[arg-type]
                    finished_at=int((state.finished_at or time.time()) * 1000),
                    error_info=error or stored.error_info,
                )
            return stored
        self._active[prompt_id] = state
        base: RunRecord | None = None
        if state.snapshot:
            try:
                base = _record_decoder.decode(state.snapshot)
            except (msgspec.DecodeError, msgspec.ValidationError):
                base = None
        if base is None:
            base = stored
        if base is None:
            return RunRecord(
                prompt_id=prompt_id,
                owner_id=state.owner_id,
                status=state.status,  # type: ignore[arg-type]
                submitted_at=int(state.submitted_at * 1000),
                workflow_id=state.workflow_id,
                workflow_name=state.workflow_name,
            )
        started = int(state.started_at * 1000) if state.started_at else base.started_at
        return msgspec.structs.replace(base, status=state.status, started_at=started)  # type: ignore[arg-type]

    async def interrupt(self, prompt_id: str, wait: float) -> bool:
        previous = await self.queue.interrupt(prompt_id)
        if previous == "queued":
            await self._record_interrupted_before_start(prompt_id)
            return True
        if previous == "running":
            if wait > 0:
                await self.wait(prompt_id, wait)
            return True
        return False

    async def wait(self, prompt_id: str, timeout: float) -> None:
        with anyio.move_on_after(timeout):
            interval = 0.5
            while True:
                state = await self.queue.state(prompt_id)
                if state is None or state.finished:
                    return
                event = self._waiters.setdefault(prompt_id, anyio.Event())
                with anyio.move_on_after(interval):
                    await event.wait()
                if event.is_set():
                    # The final event arrived; the shared state follows within milliseconds.
                    interval = 0.02
        self._waiters.pop(prompt_id, None)

    def executions(self) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        for state in sorted(self._active.values(), key=lambda s: s.submitted_at):
            info: dict[str, Any] = {
                "promptId": state.run_id,
                "status": state.status,
                "submittedAt": int(state.submitted_at * 1000),
            }
            if state.workflow_id:
                info["workflowId"] = state.workflow_id
            if state.workflow_name:
                info["workflowName"] = state.workflow_name
            info["ownerId"] = state.owner_id
            if state.worker:
                info["worker"] = state.worker
            out.append(("running" if state.status == "running" else "pending", info))
        return out

    def counts(self) -> dict[str, int]:
        running = sum(1 for s in self._active.values() if s.status == "running")
        return {"runningExecutions": running, "pendingExecutions": len(self._active) - running}

    def watchable(self, prompt_id: str) -> bool:
        return prompt_id in self._active

    # -- Executor (called by the Redis queue) ----------------------------------------------
    async def execute(self, job: QueuedRun) -> RunOutcome:
        scheduler = self.scheduler
        if scheduler is None:
            return RunOutcome(status="error", error="the engine of this process is not running")
        request = msgspec.convert(job.request, JobRequest)
        # Other instances learn that the run ended only once its final record is stored and its
        # shared state is final (:meth:`ended`), so none of them can answer ``running`` after it.
        self.bridge.hold(job.run_id)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._snapshot_loop, scheduler, job.run_id)
            try:
                record = await scheduler.run_claimed(
                    job.run_id,
                    request.payload,
                    request.user,
                    source=request.source,
                    submitted_at=int(job.submitted_at * 1000),
                )
            finally:
                tg.cancel_scope.cancel()
        self._snapshots.pop(job.run_id, None)
        if job.run_id in self.queue.lost_here:
            # Another process declared this run lost while it ran here; keep its verdict.
            state = await self.queue.state(job.run_id)
            await self._store().save(
                msgspec.structs.replace(record, status="error", error_info=lost_error(state.worker if state else self.instance_id))
            )
        error = record.error_info.get("message") if record.error_info else None
        return RunOutcome(status=record.status, error=str(error) if error else None)

    async def ended(self, run_id: str) -> None:
        await self.bridge.release(run_id)

    async def interrupt_run(self, run_id: str, reason: str) -> None:
        """Interrupt a run if it executes here (an interrupt request, or its lease was lost)."""
        scheduler = self.scheduler
        if scheduler is not None and run_id in self.queue.running:
            log.info("interrupting run %s here (%s)", run_id, reason)
            await scheduler.interrupt(run_id, SYSTEM, wait=0)

    async def record_lost(self, job: QueuedRun, state: RunState) -> None:
        store = self._store()
        base: RunRecord | None = None
        if state.snapshot:
            try:
                base = _record_decoder.decode(state.snapshot)
            except (msgspec.DecodeError, msgspec.ValidationError):
                base = None
        base = base or await store.get(job.run_id)
        if base is None:
            base = RunRecord(prompt_id=job.run_id, owner_id=job.owner_id, status="running", submitted_at=int(job.submitted_at * 1000))
        error = lost_error(state.worker)
        node_status = {
            node_id: entry if entry.get("status") in ("complete", "error", "skipped", "bypassed")
            else {**entry, "status": "interrupted", "reason": WORKER_LOST}
            for node_id, entry in base.node_status.items()
        }
        record = msgspec.structs.replace(
            base,
            status="error",
            started_at=base.started_at or (int(state.started_at * 1000) if state.started_at else None),
            finished_at=int((state.finished_at or time.time()) * 1000),
            node_status=node_status,
            error_info=error,
        )
        await store.save(record)
        self._active.pop(job.run_id, None)
        await self.bridge.publish_now(
            [HubEvent("EXECUTION_STATUS_UPDATE", {"promptId": job.run_id, "status": "error", "errorInfo": error}, job.run_id, job.owner_id)]
        )

    # -- internals -------------------------------------------------------------------------
    def _store(self) -> Any:
        if self.scheduler is not None:
            return self.scheduler.store
        return self.kernel.storage.runs

    async def _record_interrupted_before_start(self, prompt_id: str) -> None:
        store = self._store()
        record = await store.get(prompt_id)
        state = await self.queue.state(prompt_id)
        self._active.pop(prompt_id, None)
        if record is None and state is None:
            return
        if record is None:
            assert state is not None
            record = RunRecord(prompt_id=prompt_id, owner_id=state.owner_id, status="queued", submitted_at=int(state.submitted_at * 1000))
        record = msgspec.structs.replace(
            record,
            status="interrupted",
            finished_at=_now_ms(),
            node_status={k: {**v, "status": "interrupted"} for k, v in record.node_status.items()},
        )
        await store.save(record)
        self.kernel.hub.emit(
            "EXECUTION_STATUS_UPDATE",
            {"promptId": prompt_id, "status": "interrupted"},
            prompt_id=prompt_id,
            owner_id=record.owner_id,
        )
        self.kernel.hub.emit("SYSTEM_QUEUE_UPDATE", self.counts())

    async def _on_cancel(self, run_id: str) -> None:
        await self.interrupt_run(run_id, "interrupt")

    def _on_remote_event(self, event: HubEvent) -> None:
        if event.type != "EXECUTION_STATUS_UPDATE" or not isinstance(event.payload, dict):
            return
        status = event.payload.get("status")
        prompt_id = event.prompt_id
        if prompt_id is None:
            return
        if status in FINAL_STATUSES:
            self._active.pop(prompt_id, None)
            waiter = self._waiters.get(prompt_id)
            if waiter is not None:
                waiter.set()
            # As a single server does after every run: the editor shows the queue from it.
            self.kernel.hub.emit("SYSTEM_QUEUE_UPDATE", self.counts())
        elif status in ("queued", "running"):
            known = self._active.get(prompt_id)
            if known is not None:
                self._active[prompt_id] = _with_status(known, status)
            elif event.owner_id is not None:
                self._active[prompt_id] = RunState(
                    run_id=prompt_id, status=status, owner_id=event.owner_id, submitted_at=time.time(),
                    started_at=None, finished_at=None, worker=None, origin=None, error=None,
                    workflow_id=None, workflow_name=None, snapshot=None,
                )

    async def _reconcile_loop(self) -> None:
        while True:
            try:
                await self.reconcile()
            except (RedisError, OSError) as exc:
                log.warning("could not compare the run store with the shared queue: %s", exc)
            except Exception:  # noqa: BLE001 - a store hiccup must not stop this process
                log.exception("could not compare the run store with the shared queue")
            await anyio.sleep(RECONCILE_SECONDS)

    async def reconcile(self, *, min_age_seconds: float = RECONCILE_MIN_AGE_SECONDS) -> list[str]:
        """End runs the store still shows queued/running but the shared queue no longer knows
        (Redis lost its data): they can never run or finish. Returns their ids.

        Only runs older than ``min_age_seconds`` are considered, so a run being submitted right
        now (its record is stored just before it is queued) is never touched.
        """
        store = self._store()
        horizon = _now_ms() - int(min_age_seconds * 1000)
        ended: list[str] = []
        offset, page = 0, 200
        limit = self.kernel.config.execution.history_size + 1000
        while offset < limit:
            records = await store.list(owner_id=None, limit=page, offset=offset)
            if not records:
                break
            offset += len(records)
            for summary in records:
                if summary.finished or summary.submitted_at > horizon:
                    continue
                if await self.queue.state(summary.prompt_id) is not None:
                    continue
                record = await store.get(summary.prompt_id)
                if record is None or record.finished:
                    continue
                error = {
                    "message": "the shared queue (Redis) lost this run's state, so it cannot run or finish (queue_lost)",
                    "code": "queue_lost",
                }
                await store.save(
                    msgspec.structs.replace(
                        record,
                        status="error",
                        finished_at=_now_ms(),
                        error_info=error,
                        node_status={k: {**v, "status": "interrupted"} if v.get("status") in ("pending", "running") else v
                                     for k, v in record.node_status.items()},
                    )
                )
                ended.append(record.prompt_id)
                log.error("run %s: %s", record.prompt_id, error["message"])
        return ended

    async def _refresh_loop(self) -> None:
        while True:
            try:
                states = await self.queue.active()
                self._active = {s.run_id: s for s in states}
            except (RedisError, OSError) as exc:
                log.warning("could not refresh the list of active runs: %s", exc)
            await anyio.sleep(CACHE_REFRESH_SECONDS)

    async def _snapshot_loop(self, scheduler: Scheduler, run_id: str) -> None:
        """Publish the live record of a run executing here, when it changed."""
        while True:
            await anyio.sleep(SNAPSHOT_SECONDS)
            run = scheduler.active(run_id, SYSTEM)
            if run is None:
                continue
            data = _record_encoder.encode(run.record())
            if self._snapshots.get(run_id) == data:
                continue
            try:
                await self.queue.set_snapshot(run_id, data)
                self._snapshots[run_id] = data
            except (RedisError, OSError) as exc:
                log.warning("could not publish the state of run %s: %s", run_id, exc)


def _with_status(state: RunState, status: str) -> RunState:
    from dataclasses import replace

    return replace(state, status=status)
