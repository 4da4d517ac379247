"""Runs on a Redis Stream: submission, claiming with a lease, heartbeats, and the janitor.

Life of a run (every transition is one atomic Lua script on the run's state hash, so two processes
can never both "own" a transition):

1. ``submit``: the state hash gets ``status=queued``; the run id joins the active set; one entry is
   added to the stream ``<prefix>:runs``.
2. A process with free capacity reads it with ``XREADGROUP`` (consumer group ``executors``) and
   *claims* it: ``queued -> running`` plus a lease key ``<prefix>:lease:<id>`` holding its id with a
   TTL of ``lease_seconds``. A run interrupted while queued is not claimed; its entry is acknowledged.
3. While it runs, one heartbeat task per process renews the leases of all its runs.
4. ``finish`` (only by the lease holder): ``running -> complete|error|interrupted``, lease deleted,
   entry acknowledged and deleted; then :meth:`Executor.ended` (the run's final event goes out).
5. The janitor (in every process) looks at entries delivered longer than a lease ago and still
   unacknowledged. If the lease is gone, the worker died: the run becomes ``error`` with reason
   ``worker_lost``; it is **not** re-run (node calls such as LLM requests cost money and are not
   idempotent; running it again is the user's decision).

Nothing here knows about the engine: execution, interruption and the record of a lost run are
callbacks (:class:`Executor`).

A failed read of the stream is retried after a delay doubling from 0.2 s to 5 s, written inline
(three lines in the read loop): the loop runs for the life of the process and must keep its
capacity bookkeeping between attempts, which a retry library's decorator around one call cannot.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import msgspec
from anyio.abc import TaskGroup, TaskStatus
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from comfytavern_distributed.keys import GROUP, Keys

__all__ = [
    "WORKER_LOST",
    "Executor",
    "QueuedRun",
    "RedisRunQueue",
    "RunOutcome",
    "RunState",
]

log = logging.getLogger("comfytavern.distributed.queue")

#: The error code of a run whose worker stopped heart-beating.
WORKER_LOST = "worker_lost"

TERMINAL = frozenset({"complete", "error", "interrupted"})


class QueuedRun(msgspec.Struct, kw_only=True):
    """One stream entry: everything a worker needs to execute the run."""

    run_id: str
    owner_id: str
    #: The engine's request (the execution payload and run options), opaque to the queue.
    request: Any
    submitted_at: float
    #: Id of the process that accepted the submission.
    origin: str
    #: Shown in listings of active runs.
    workflow_id: str | None = None
    workflow_name: str | None = None


class RunOutcome(msgspec.Struct, kw_only=True):
    status: str
    error: str | None = None


@dataclass(frozen=True)
class RunState:
    """The shared state of a queued, running or recently finished run."""

    run_id: str
    status: str
    owner_id: str
    submitted_at: float
    started_at: float | None
    finished_at: float | None
    worker: str | None
    origin: str | None
    error: str | None
    workflow_id: str | None
    workflow_name: str | None
    #: The executing engine's latest snapshot of the run (JSON bytes), if it published one.
    snapshot: bytes | None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


class Executor(Protocol):
    """What the queue needs from the engine of this process."""

    async def execute(self, job: QueuedRun) -> RunOutcome:
        """Run ``job`` to the end here (events go to the local hub); return how it ended."""

    async def interrupt_run(self, run_id: str, reason: str) -> None:
        """Cancel the run if it executes in this process (``reason``: ``interrupt`` or ``worker_lost``)."""

    async def record_lost(self, job: QueuedRun, state: RunState) -> None:
        """Persist and announce a run that ended ``worker_lost`` (called by exactly one janitor)."""

    async def ended(self, run_id: str) -> None:
        """Called after :meth:`execute` once the run's shared state is final (or could not be
        made so): its final event may now be published to other processes."""


_job_encoder = msgspec.json.Encoder()
_job_decoder = msgspec.json.Decoder(QueuedRun)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _now_ms() -> int:
    return int(time.time() * 1000)


_CLAIM = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if status ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[1], 'started_at', ARGV[3])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
"""

# 1 = renewed, 2 = not claimed yet, 0 = lost. A lease that lapsed while nobody declared the run lost
# (a stalled event loop) is taken back: the janitor checks the lease in one atomic step too.
_HEARTBEAT = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then return 0 end
local status = redis.call('HGET', KEYS[2], 'status')
if status == 'queued' then return 2 end
if status == 'running' and redis.call('HGET', KEYS[2], 'worker') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

_FINISH = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' or redis.call('HGET', KEYS[1], 'worker') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'finished_at', ARGV[3], 'error', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[6])
return 1
"""

# 0 = the lease is alive; 1 = declared lost now; 2 = already final (just acknowledge);
# 3 = delivered but never claimed (the reader stopped before claiming): safe to queue again.
_LOST = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' then return 3 end
if status ~= 'running' then return 2 end
redis.call('HSET', KEYS[1], 'status', 'error', 'error', ARGV[4], 'finished_at', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[3])
return 1
"""

_INTERRUPT_QUEUED = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'interrupted', 'finished_at', ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  redis.call('ZREM', KEYS[2], ARGV[3])
end
return status
"""


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _float(value: Any) -> float | None:
    text = _text(value)
    return float(text) / 1000 if text else None


#: The state fields listings need (everything but the snapshot).
_LIST_FIELDS = [
    "status", "owner_id", "submitted_at", "started_at", "finished_at", "worker", "origin", "error",
    "workflow_id", "workflow_name",
]


def _state_from_hash(run_id: str, raw: Mapping[Any, Any]) -> RunState | None:
    if not raw or b"status" not in raw:
        return None
    return RunState(
        run_id=run_id,
        status=_text(raw[b"status"]) or "",
        owner_id=_text(raw.get(b"owner_id")) or "",
        submitted_at=_float(raw.get(b"submitted_at")) or 0.0,
        started_at=_float(raw.get(b"started_at")),
        finished_at=_float(raw.get(b"finished_at")),
        worker=_text(raw.get(b"worker")) or None,
        origin=_text(raw.get(b"origin")) or None,
        error=_text(raw.get(b"error")) or None,
        workflow_id=_text(raw.get(b"workflow_id")) or None,
        workflow_name=_text(raw.get(b"workflow_name")) or None,
        snapshot=raw.get(b"snapshot") or None,
    )


class RedisRunQueue:
    """The shared queue and run state; one per process (server instance or worker)."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        instance_id: str,
        *,
        lease_seconds: float,
        heartbeat_seconds: float,
        janitor_seconds: float,
        stream_maxlen: int,
        state_ttl_seconds: int,
        block_seconds: float = 2.0,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.instance_id = instance_id
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.janitor_seconds = janitor_seconds
        self.stream_maxlen = stream_maxlen
        self.state_ttl_seconds = state_ttl_seconds
        self.block_seconds = block_seconds
        self._claim = redis.register_script(_CLAIM)
        self._heartbeat = redis.register_script(_HEARTBEAT)
        self._finish = redis.register_script(_FINISH)
        self._lost = redis.register_script(_LOST)
        self._interrupt_queued = redis.register_script(_INTERRUPT_QUEUED)
        #: Runs executing in this process -> their stream entry id.
        self.running: dict[str, Any] = {}
        self._capacity_changed = anyio.Event()
        #: Runs whose lease this process lost (declared ``worker_lost`` elsewhere).
        self.lost_here: set[str] = set()
        self._read_scope: anyio.CancelScope | None = None
        self._stopping = False

    # -- setup -----------------------------------------------------------------------------
    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.keys.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # -- submission and shared state -------------------------------------------------------
    async def submit(self, job: QueuedRun) -> bytes:
        """Queue ``job``; returns its stream entry id."""
        state = self.keys.state(job.run_id)
        submitted = int(job.submitted_at * 1000)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                state,
                mapping={
                    "status": "queued",
                    "owner_id": job.owner_id,
                    "submitted_at": submitted,
                    "origin": job.origin,
                    "workflow_id": job.workflow_id or "",
                    "workflow_name": job.workflow_name or "",
                },
            )
            pipe.zadd(self.keys.active, {job.run_id: submitted})
            pipe.xadd(
                self.keys.stream, {"job": _job_encoder.encode(job)}, maxlen=self.stream_maxlen, approximate=True
            )
            results = await pipe.execute()
        entry: bytes = results[-1]
        return entry

    async def state(self, run_id: str) -> RunState | None:
        return _state_from_hash(run_id, await self.redis.hgetall(self.keys.state(run_id)))

    async def active(self) -> list[RunState]:
        """Queued and running runs of every instance, oldest first."""
        ids = [_text(i) or "" for i in await self.redis.zrange(self.keys.active, 0, -1)]
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for run_id in ids:
                pipe.hmget(self.keys.state(run_id), _LIST_FIELDS)
            rows = await pipe.execute()
        out: list[RunState] = []
        stale: list[str] = []
        for run_id, values in zip(ids, rows, strict=True):
            raw = {k.encode(): v for k, v in zip(_LIST_FIELDS, values, strict=True) if v is not None}
            state = _state_from_hash(run_id, raw)
            if state is None or state.finished:
                stale.append(run_id)
            else:
                out.append(state)
        if stale:
            await self.redis.zrem(self.keys.active, *stale)
        return out

    async def set_snapshot(self, run_id: str, snapshot: bytes) -> None:
        """Store the executing engine's view of the run, for status queries on other instances."""
        await self.redis.hset(self.keys.state(run_id), "snapshot", snapshot)

    async def interrupt(self, run_id: str) -> str | None:
        """Interrupt anywhere: a queued run ends now; a running one is cancelled by its worker.

        Returns the status the run had (``queued``, ``running``, a final status) or ``None`` if unknown.
        """
        status = _text(
            await self._interrupt_queued(
                keys=[self.keys.state(run_id), self.keys.active],
                args=[_now_ms(), self.state_ttl_seconds, run_id],
            )
        )
        if status == "running":
            await self.redis.publish(self.keys.cancel, run_id)
        return status

    async def workers(self) -> dict[str, float]:
        """Executing processes seen within two leases -> seconds since their last heartbeat."""
        now = time.time()
        horizon = _now_ms() - _ms(2 * self.lease_seconds)
        rows: list[tuple[Any, float]] = await self.redis.zrangebyscore(  # type: ignore[assignment]
            self.keys.workers, horizon, "+inf", withscores=True
        )
        return {(_text(k) or ""): round(now - float(score) / 1000, 3) for k, score in rows}

    # -- executing -------------------------------------------------------------------------
    async def consume(
        self,
        executor: Executor,
        max_concurrency: int,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Claim and execute runs, at most ``max_concurrency`` at once.

        Returns after :meth:`stop_reading` once the runs it started have finished (the engine's
        shutdown interrupts them), then leaves the consumer group.
        """
        await self.ensure_group()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._heartbeats, executor)
            with anyio.CancelScope() as self._read_scope:
                task_status.started()
                await self._read_loop(tg, executor, max_concurrency)
            while self.running:
                self._capacity_changed = anyio.Event()
                await self._capacity_changed.wait()
            tg.cancel_scope.cancel()
        await self.leave()

    def stop_reading(self) -> None:
        """Claim nothing more (runs in progress go on); used when the engine stops."""
        self._stopping = True
        if self._read_scope is not None:
            self._read_scope.cancel()

    async def _read_loop(self, tg: TaskGroup, executor: Executor, max_concurrency: int) -> None:
        delay = 0.2
        while not self._stopping:
            free = max_concurrency - len(self.running)
            if free <= 0:
                self._capacity_changed = anyio.Event()
                await self._capacity_changed.wait()
                continue
            try:
                response = await self.redis.xreadgroup(
                    GROUP,
                    self.instance_id,
                    {self.keys.stream: ">"},
                    count=free,
                    block=_ms(self.block_seconds),
                )
                delay = 0.2
            except (RedisError, OSError) as exc:
                log.warning("reading the run queue failed (%s); retrying in %.1f s", exc, delay)
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            streams: list[Any] = response or []  # type: ignore[assignment]
            for _stream, entries in streams:
                for entry_id, fields in entries:
                    job = self._decode(entry_id, fields)
                    if job is None:
                        await self._ack(entry_id)
                        continue
                    # Reserve the slot before yielding control, so the next read counts it.
                    self.running[job.run_id] = entry_id
                    tg.start_soon(self._execute, executor, job, entry_id)

    def _decode(self, entry_id: Any, fields: Mapping[Any, Any] | None) -> QueuedRun | None:
        try:
            return _job_decoder.decode((fields or {})[b"job"])
        except (KeyError, TypeError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("dropped malformed run-queue entry %s: %s", _text(entry_id), exc)
            return None

    async def _execute(self, executor: Executor, job: QueuedRun, entry_id: Any) -> None:
        try:
            if self._stopping:
                await self._requeue(entry_id, job)  # read just as the engine stops: nothing ran
                return
            claimed = await self._claim(
                keys=[self.keys.state(job.run_id), self.keys.lease(job.run_id)],
                args=[self.instance_id, _ms(self.lease_seconds), _now_ms()],
            )
            if claimed != 1:
                # Interrupted while queued (0) or its state expired (-1): nothing to run.
                await self._ack(entry_id)
                return
            try:
                outcome = await executor.execute(job)
            except Exception as exc:  # noqa: BLE001 - the engine reports run failures itself
                log.exception("run %s failed inside the executor", job.run_id)
                outcome = RunOutcome(status="error", error=str(exc) or type(exc).__name__)
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await self._finish_run(job, entry_id, outcome)
        finally:
            self.running.pop(job.run_id, None)
            self.lost_here.discard(job.run_id)
            self._capacity_changed.set()
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await executor.ended(job.run_id)

    async def _finish_run(self, job: QueuedRun, entry_id: Any, outcome: RunOutcome) -> None:
        done = await self._finish(
            keys=[self.keys.state(job.run_id), self.keys.lease(job.run_id), self.keys.active],
            args=[self.instance_id, outcome.status, _now_ms(), outcome.error or "", self.state_ttl_seconds, job.run_id],
        )
        if done != 1:
            log.warning("run %s had already been declared %s elsewhere; its result here was not recorded", job.run_id, WORKER_LOST)
        await self._ack(entry_id)

    async def _requeue(self, entry_id: Any, job: QueuedRun) -> None:
        """Put a delivered but never claimed entry back at the end of the queue (nothing ran)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.keys.stream, {"job": _job_encoder.encode(job)}, maxlen=self.stream_maxlen, approximate=True)
            pipe.xack(self.keys.stream, GROUP, entry_id)
            pipe.xdel(self.keys.stream, entry_id)
            await pipe.execute()
        log.info("run %s was delivered to a reader that stopped before claiming it; queued again", job.run_id)

    async def _ack(self, entry_id: Any) -> int:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.keys.stream, GROUP, entry_id)
            pipe.xdel(self.keys.stream, entry_id)
            acked, _ = await pipe.execute()
        return int(acked)

    async def _heartbeats(self, executor: Executor) -> None:
        """Renew every lease of this process; a lease found gone means the run was declared lost."""
        while True:
            try:
                ids = list(self.running)
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.zadd(self.keys.workers, {self.instance_id: _now_ms()})
                    for run_id in ids:
                        await self._heartbeat(
                            keys=[self.keys.lease(run_id), self.keys.state(run_id)],
                            args=[self.instance_id, _ms(self.lease_seconds)],
                            client=pipe,
                        )
                    results = await pipe.execute()
                for run_id, alive in zip(ids, results[1:], strict=True):
                    if alive == 0 and run_id in self.running and run_id not in self.lost_here:
                        self.lost_here.add(run_id)
                        log.error("lost the lease of run %s; it was declared %s; cancelling it here", run_id, WORKER_LOST)
                        await executor.interrupt_run(run_id, WORKER_LOST)
            except (RedisError, OSError) as exc:
                log.warning("heartbeat failed: %s", exc)
            await anyio.sleep(self.heartbeat_seconds)

    # -- janitor ---------------------------------------------------------------------------
    async def janitor(self, executor: Executor, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Every ``janitor_seconds``: end runs whose worker died, forget long-dead consumers."""
        await self.ensure_group()
        task_status.started()
        while True:
            try:
                await self.sweep(executor)
            except (RedisError, OSError) as exc:
                log.warning("janitor pass failed: %s", exc)
            await anyio.sleep(self.janitor_seconds)

    async def sweep(self, executor: Executor) -> list[str]:
        """One janitor pass; returns the ids of runs this pass declared lost."""
        lost: list[str] = []
        pending = await self.redis.xpending_range(
            self.keys.stream, GROUP, min="-", max="+", count=1000, idle=_ms(self.lease_seconds)
        )
        for item in pending:
            entry_id = item["message_id"]
            rows = await self.redis.xrange(self.keys.stream, entry_id, entry_id)
            job = self._decode(entry_id, rows[0][1]) if rows else None
            if job is None:
                await self._ack(entry_id)
                continue
            result = await self._lost(
                keys=[self.keys.state(job.run_id), self.keys.lease(job.run_id), self.keys.active],
                args=[_now_ms(), self.state_ttl_seconds, job.run_id, WORKER_LOST],
            )
            if result == 0:
                continue  # the lease is alive: the worker is just slow to finish
            if result == 3:
                await self._requeue(entry_id, job)
                continue
            await self._ack(entry_id)
            if result == 1:
                state = await self.state(job.run_id)
                if state is not None:
                    lost.append(job.run_id)
                    log.error("run %s ended %s (worker %s stopped renewing its lease)", job.run_id, WORKER_LOST, state.worker)
                    await executor.record_lost(job, state)
        await self._forget_dead_consumers()
        return lost

    async def _forget_dead_consumers(self) -> None:
        horizon = max(_ms(10 * self.lease_seconds), 60_000)
        for consumer in await self.redis.xinfo_consumers(self.keys.stream, GROUP):
            name = consumer.get("name")
            if name is not None and consumer.get("pending", 0) == 0 and consumer.get("idle", 0) > horizon:
                await self.redis.xgroup_delconsumer(self.keys.stream, GROUP, name)
        await self.redis.zremrangebyscore(self.keys.workers, "-inf", _now_ms() - horizon)

    async def leave(self) -> None:
        """Graceful stop: remove this consumer (its runs are finished by now) and its heartbeat."""
        try:
            if not self.running:
                await self.redis.xgroup_delconsumer(self.keys.stream, GROUP, self.instance_id)
            await self.redis.zrem(self.keys.workers, self.instance_id)
        except (RedisError, OSError) as exc:
            log.warning("could not leave the consumer group cleanly: %s", exc)
