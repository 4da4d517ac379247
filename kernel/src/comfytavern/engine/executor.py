"""Runs one prepared graph: every ready node at once, streams teed, failures isolated.

Design for speed and fairness:

- a *worker* runs a node and then continues with one of the nodes that became ready, spawning a
  new task only for the others; a chain therefore runs in one task with no per-node task cost,
  while independent branches still run concurrently;
- async nodes are awaited on the event loop, sync nodes run in worker threads of their own pool
  (:mod:`comfytavern.engine.threads`), generators stream;
- workers yield to the event loop every ``yield_interval`` seconds of continuous work, so a big
  CPU-only graph never freezes HTTP or WebSocket traffic (and an interrupt lands promptly);
- events are plain dicts handed to ``emit`` once; nothing here awaits a socket.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

import anyio

from comfytavern.auth import Principal
from comfytavern.engine.graph import (
    ASYNC,
    ASYNC_GEN,
    BYPASS,
    BYPASS_STREAM,
    SYNC,
    SYNC_GEN,
    PNode,
    PreparedGraph,
    bypass_outputs,
)
from comfytavern.engine.stream import ChunkQueue, Tee, UpstreamFailed
from comfytavern.engine.threads import NodeThreads
from comfytavern.nodes.context import NodeContext, _no_credentials, _no_progress
from comfytavern.nodes.definition import Outputs
from comfytavern.services import CREDENTIALS, Services

__all__ = [
    "INTERFACE_OUTPUTS_NODE_ID",
    "NODE_STATUS_NAMES",
    "Execution",
    "ExecutionSettings",
]

log = logging.getLogger("comfytavern.engine")

INTERFACE_OUTPUTS_NODE_ID = "__WORKFLOW_INTERFACE_OUTPUTS__"
PENDING, RUNNING, COMPLETE, ERROR, SKIPPED, BYPASSED, INTERRUPTED = range(7)
NODE_STATUS_NAMES = ("pending", "running", "complete", "error", "skipped", "bypassed", "interrupted")
_FINISH_CHUNK = {"type": "finish_reason_chunk", "content": "Stream ended"}
_INTERRUPTED_CHUNK = {"type": "finish_reason_chunk", "content": "Interrupted"}
_LAST_CHUNK_TYPES = frozenset({"finish_reason_chunk", "error_chunk"})
_END = object()

Emit = Callable[[str, dict[str, Any]], None]


class NodeFailed(Exception):
    """A node failed in a way that is not a Python exception of its own (error chunk, timeout)."""


class ExecutionSettings:
    """Tunables of one execution (per-node timeout, stream policy, time slice) and the node thread
    pool (share one settings object between runs to share the pool: the scheduler does)."""

    __slots__ = (
        "node_timeout", "stall_timeout", "stream_buffer", "stream_hard_cap", "yield_interval", "progress_interval",
        "node_threads",
    )

    def __init__(
        self,
        *,
        node_timeout: float | None = None,
        stall_timeout: float = 60.0,
        stream_buffer: int = 256,
        stream_hard_cap: int = 100_000,
        yield_interval: float = 0.002,
        progress_interval: float = 0.05,
        node_threads: NodeThreads | None = None,
    ) -> None:
        self.node_timeout = node_timeout
        self.stall_timeout = stall_timeout
        self.stream_buffer = stream_buffer
        self.stream_hard_cap = stream_hard_cap
        self.yield_interval = yield_interval
        self.progress_interval = progress_interval
        self.node_threads = node_threads if node_threads is not None else NodeThreads()


def _as_chunk(item: Any) -> dict[str, Any]:
    if isinstance(item, dict):
        return item
    if isinstance(item, str):
        return {"type": "text_chunk", "content": item}
    return {"type": "custom", "content": item}


async def _iterate_sync_generator(gen: Iterator[Any], threads: NodeThreads) -> AsyncIterator[Any]:
    """A sync generator stepped in a node worker thread, one item per hop."""

    def step() -> Any:
        try:
            return next(gen)
        except StopIteration:
            return _END

    try:
        while True:
            item = await threads.run(step)
            if item is _END:
                return
            yield item
    finally:
        close = getattr(gen, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001 - closing must not mask the real outcome
                log.debug("closing a sync generator failed", exc_info=True)


class Execution:
    """One run of a :class:`PreparedGraph`. ``await run()``; cancel it from outside to interrupt."""

    def __init__(
        self,
        graph: PreparedGraph,
        *,
        prompt_id: str,
        user: Principal,
        emit: Emit,
        services: Services | None = None,
        settings: ExecutionSettings | None = None,
    ) -> None:
        self.graph = graph
        self.prompt_id = prompt_id
        self.user = user
        self.emit = emit
        self.services = services if services is not None else Services()
        self.settings = settings or ExecutionSettings()
        n = len(graph.nodes)
        self.state = [PENDING] * n
        self.outputs: list[dict[str, Any] | None] = [None] * n
        self.errors: dict[int, str] = {}
        self.skip_reasons: dict[int, str] = {}
        self.started_at: list[float] = [0.0] * n
        self.finished_at: list[float] = [0.0] * n
        self.pending = [p.n_in for p in graph.nodes]
        self.queues: list[ChunkQueue | None] = [None] * len(graph.stream_edges)
        self.interface_text: dict[str, list[str]] = {}
        self.interface_values: dict[str, Any] | None = None
        self._tg: Any = None
        self._slice_end = 0.0
        credentials = self.services.lookup(CREDENTIALS)
        self._credentials = credentials if credentials is not None else _no_credentials
        self._progress_last: dict[int, float] = {}
        #: Streams that have started and not ended: node index -> whether its ``NODE_YIELD``
        #: still owes a last chunk. A stream cut short (error, timeout, interrupt) gets one, and
        #: so does each of its interface outputs, so no watcher waits for an end that never comes.
        self._open_streams: dict[int, bool] = {}

    # -- running ------------------------------------------------------------------------------
    async def run(self) -> None:
        """Run every node; returns when each one is complete, failed or skipped."""
        self._slice_end = time.perf_counter() + self.settings.yield_interval
        roots = self.graph.roots
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for r in roots[1:]:
                    tg.start_soon(self._worker, r)
                if roots:
                    await self._worker(roots[0])
        except BaseException:
            self._mark_interrupted()
            nodes = self.graph.nodes
            for i in list(self._open_streams):
                self._end_stream(nodes[i], _INTERRUPTED_CHUNK)
            raise
        self.interface_values = self._collect_interface()
        if self.graph.interface:
            self.emit(
                "NODE_COMPLETE",
                {"promptId": self.prompt_id, "nodeId": INTERFACE_OUTPUTS_NODE_ID, "output": self.interface_values},
            )

    async def _worker(self, i: int) -> None:
        interval = self.settings.yield_interval
        while True:
            ready = await self._execute(i)
            if not ready:
                return
            i = ready[0]
            for extra in ready[1:]:
                self._tg.start_soon(self._worker, extra)
            if time.perf_counter() >= self._slice_end:
                await anyio.sleep(0)
                self._slice_end = time.perf_counter() + interval

    def _release(self, targets: Sequence[int], into: list[int] | None) -> list[int]:
        ready = into if into is not None else []
        pending, state = self.pending, self.state
        for t in targets:
            pending[t] -= 1
            if pending[t] == 0 and state[t] == PENDING:
                ready.append(t)
        return ready

    async def _execute(self, i: int) -> list[int]:
        p = self.graph.nodes[i]
        if self.state[i] != PENDING:
            return []
        self.state[i] = RUNNING
        self.started_at[i] = time.time()
        try:
            inputs = self._resolve(p)
            if p.stream_edges_in and (p.kind == SYNC or p.kind == SYNC_GEN):
                await _drain_streams(inputs)
            if p.kind == BYPASS or p.kind == BYPASS_STREAM:
                result = await self._bypass(p, inputs)
            else:
                self.emit("NODE_EXECUTING", {"promptId": self.prompt_id, "nodeId": p.id, "nodeType": p.full_type})
                timeout = self.settings.node_timeout
                if timeout is None and p.kind == ASYNC:
                    # ``_call`` inlined for the usual node (one coroutine less per node).
                    result = await p.fn(inputs, self._context(p))
                    if type(result) is not dict:
                        result = await self._outputs_of(p, result)
                elif timeout is None:
                    result = await self._call(p, inputs)
                else:
                    result = None
                    with anyio.move_on_after(timeout) as scope:
                        result = await self._call(p, inputs)
                    if scope.cancelled_caught:
                        raise NodeFailed(f"Node timed out after {timeout:g} s.")
        except Exception as exc:  # noqa: BLE001 - a node's failure is reported, never raised
            self._fail(p, exc)
            return []
        self.finished_at[i] = time.time()
        self.outputs[i] = result
        if p.stream_edges_in:
            self._detach_inputs(p)
        if p.kind == BYPASS or p.kind == BYPASS_STREAM:
            self.state[i] = BYPASSED
        else:
            self.state[i] = COMPLETE
            self.emit("NODE_COMPLETE", {"promptId": self.prompt_id, "nodeId": p.id, "output": result})
            if p.kind == SYNC or p.kind == ASYNC:
                self.emit(
                    "NODE_YIELD",
                    {"promptId": self.prompt_id, "sourceNodeId": p.id, "yieldedContent": _FINISH_CHUNK, "isLastChunk": True},
                )
        return self._release(p.value_out, None)

    def _resolve(self, p: PNode) -> dict[str, Any]:
        """The node's inputs: static values, then what its sources produced (stream inputs as
        their queues; a sync node's are drained by :func:`_drain_streams`). Not a coroutine: most
        nodes have no stream input, and one coroutine less per node is measurable."""
        inputs = p.static_inputs.copy()
        outputs = self.outputs
        for key, src, slot, sidx, _ in p.single:
            if sidx >= 0:
                inputs[key] = self.queues[sidx]
            else:
                out = outputs[src]
                if out is not None:
                    value = out.get(slot)
                    if value is not None:
                        inputs[key] = value
        for key, sources in p.multi:
            values: list[Any] = []
            for src, slot, sidx in sources:
                if sidx >= 0:
                    values.append(self.queues[sidx])
                else:
                    out = outputs[src]
                    values.append(out.get(slot) if out is not None else None)
            inputs[key] = values
        for key in p.late_required:
            if inputs.get(key) is None:
                raise NodeFailed(
                    f"Missing required input '{key}' for node {p.id} ({p.full_type}): its source produced no value"
                )
        return inputs

    def _context(self, p: PNode) -> NodeContext:
        graph = self.graph
        # Positional (one per node that runs; a keyword call costs noticeably more), in field order:
        # prompt_id, node_id, user, config_values, mode_id, interface_inputs, interface_outputs,
        # services, metadata, _progress, _credentials, _reporter, _node_index.
        return NodeContext(
            self.prompt_id, p.id, self.user, p.config_values, p.mode_id, graph.interface_inputs,
            graph.interface_outputs, self.services, graph.metadata, _no_progress, self._credentials, self, p.index,
        )

    async def report_progress(self, index: int, value: float, maximum: float | None) -> None:
        """``NodeContext.progress`` of node ``index`` (the context holds the execution, not a partial)."""
        await self._progress(self.graph.nodes[index], value, maximum)

    async def _call(self, p: PNode, inputs: dict[str, Any]) -> dict[str, Any]:
        ctx = self._context(p)
        kind = p.kind
        if kind == ASYNC:
            result = await p.fn(inputs, ctx)
            if type(result) is dict:
                return result  # the usual answer: no streaming check, no conversion
        elif kind == ASYNC_GEN:
            return await self._produce(p, p.fn(inputs, ctx))
        elif kind == SYNC_GEN:
            return await self._produce(p, _iterate_sync_generator(p.fn(inputs, ctx), self.settings.node_threads))
        else:
            result = await self.settings.node_threads.run(p.fn, inputs, ctx)
            if inspect.isawaitable(result):
                result = await result
        return await self._outputs_of(p, result)

    async def _outputs_of(self, p: PNode, result: Any) -> dict[str, Any]:
        """A node's outputs from what its function returned (a returned async iterator streams)."""
        if hasattr(result, "__aiter__"):
            return await self._produce(p, result)
        return _as_outputs(p, result)

    async def _produce(self, p: PNode, agen: Any, *, quiet: bool = False) -> dict[str, Any]:
        """Pull a streaming node's chunks: events, interface yields, then every consumer queue."""
        settings = self.settings
        queues: list[ChunkQueue] = []
        state, stream_edges = self.state, self.graph.stream_edges
        for sidx in p.stream_edges_out:
            q = ChunkQueue(settings.stream_buffer, settings.stream_hard_cap)
            if state[stream_edges[sidx].target] == SKIPPED:
                q.detach()  # its consumer will never read: buffer nothing for it
            self.queues[sidx] = q
            queues.append(q)
        tee = Tee(queues, settings.stall_timeout)
        for t in self._release(p.stream_out, None):
            self._tg.start_soon(self._worker, t)
        keys = p.interface_stream_keys
        for key in keys:
            self.interface_text.setdefault(key, [])
        final: dict[str, Any] = {}
        prompt_id, node_id, emit = self.prompt_id, p.id, self.emit
        open_streams, index = self._open_streams, p.index
        if keys or not quiet:
            open_streams[index] = not quiet
        try:
            try:
                async for item in agen:
                    if isinstance(item, Outputs):
                        final = dict(item)
                        continue
                    chunk = _as_chunk(item)
                    ctype = chunk.get("type")
                    if not quiet:
                        last = ctype in _LAST_CHUNK_TYPES
                        emit(
                            "NODE_YIELD",
                            {"promptId": prompt_id, "sourceNodeId": node_id, "yieldedContent": chunk, "isLastChunk": last},
                        )
                        if last:
                            open_streams[index] = False
                    for key in keys:
                        emit(
                            "WORKFLOW_INTERFACE_YIELD",
                            {"promptId": prompt_id, "interfaceOutputKey": key, "yieldedContent": chunk, "isLastChunk": False},
                        )
                        if ctype == "text_chunk" and isinstance(chunk.get("content"), str):
                            self.interface_text[key].append(chunk["content"])
                    if ctype == "error_chunk":
                        content = chunk.get("content")
                        raise NodeFailed(content if isinstance(content, str) and content else "Node yielded an error chunk.")
                    if queues:
                        await tee.send(chunk)
            finally:
                aclose = getattr(agen, "aclose", None)
                if aclose is not None:
                    with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                        await aclose()
        except Exception as exc:
            # ``_fail`` ends the open streams with the error (a timeout arrives there too).
            tee.close(UpstreamFailed(f"upstream node {node_id} failed: {_message(exc)}"))
            raise
        tee.close()
        open_streams.pop(index, None)
        for key in keys:
            emit(
                "WORKFLOW_INTERFACE_YIELD",
                {"promptId": prompt_id, "interfaceOutputKey": key, "yieldedContent": _FINISH_CHUNK, "isLastChunk": True},
            )
        return final

    def _end_stream(self, p: PNode, chunk: dict[str, Any]) -> None:
        """Send the last chunk a stream cut short still owes (see ``_open_streams``)."""
        owed = self._open_streams.pop(p.index, None)
        if owed is None:
            return
        if owed:
            self.emit("NODE_YIELD", {"promptId": self.prompt_id, "sourceNodeId": p.id, "yieldedContent": chunk, "isLastChunk": True})
        for key in p.interface_stream_keys:
            self.emit(
                "WORKFLOW_INTERFACE_YIELD",
                {"promptId": self.prompt_id, "interfaceOutputKey": key, "yieldedContent": chunk, "isLastChunk": True},
            )

    async def _bypass(self, p: PNode, inputs: dict[str, Any]) -> dict[str, Any]:
        pseudo = bypass_outputs(p, inputs)
        visible = {k: v for k, v in pseudo.items() if not isinstance(v, ChunkQueue)}
        self.emit("NODE_BYPASSED", {"promptId": self.prompt_id, "nodeId": p.id, "pseudoOutputs": visible})
        if p.kind != BYPASS_STREAM:
            return pseudo
        source = next((v for k, v in pseudo.items() if k in p.stream_slots and isinstance(v, ChunkQueue)), None)

        async def relay() -> AsyncIterator[Any]:
            if source is not None:
                async for chunk in source:
                    yield chunk
            yield Outputs(visible)

        return await self._produce(p, relay(), quiet=True)

    async def _progress(self, p: PNode, value: float, maximum: float | None) -> None:
        now = time.perf_counter()
        last = self._progress_last.get(p.index, 0.0)
        if maximum is not None and value < maximum and now - last < self.settings.progress_interval:
            return
        self._progress_last[p.index] = now
        self.emit("NODE_PROGRESS", {"promptId": self.prompt_id, "nodeId": p.id, "value": value, "max": maximum})

    # -- failures -----------------------------------------------------------------------------
    def _detach_inputs(self, p: PNode) -> None:
        for sidx in p.stream_edges_in:
            q = self.queues[sidx]
            if q is not None:
                q.detach()

    def _fail(self, p: PNode, exc: BaseException) -> None:
        message = _message(exc)
        if not isinstance(exc, NodeFailed):
            log.info("node %s (%s) of run %s failed: %s", p.id, p.full_type, self.prompt_id, message, exc_info=exc)
        i = p.index
        self.state[i] = ERROR
        self.finished_at[i] = time.time()
        self.errors[i] = message
        self._detach_inputs(p)
        for sidx in p.stream_edges_out:
            q = self.queues[sidx]
            if q is not None:
                q.close(UpstreamFailed(f"upstream node {p.id} failed: {message}"))
        if i in self._open_streams:
            self._end_stream(p, {"type": "error_chunk", "content": message})
        self.emit(
            "NODE_ERROR",
            {
                "promptId": self.prompt_id,
                "nodeId": p.id,
                "errorDetails": message,
                "errorInfo": {"message": message, "type": type(exc).__name__},
            },
        )
        self._skip_descendants(p)

    def _skip_descendants(self, p: PNode) -> None:
        nodes, state = self.graph.nodes, self.state
        reason = f"upstream node {p.id} failed"
        stack = [*p.value_out, *p.stream_out]
        while stack:
            t = stack.pop()
            if state[t] != PENDING:
                continue
            state[t] = SKIPPED
            self.skip_reasons[t] = reason
            q = nodes[t]
            self._detach_inputs(q)  # streams into it would otherwise buffer for nobody
            self.emit(
                "NODE_SKIPPED",
                {"promptId": self.prompt_id, "nodeId": q.id, "reason": reason, "causeNodeId": p.id},
            )
            stack.extend(q.value_out)
            stack.extend(q.stream_out)

    def _mark_interrupted(self) -> None:
        for i, s in enumerate(self.state):
            if s == RUNNING or s == PENDING:
                self.state[i] = INTERRUPTED

    # -- results ------------------------------------------------------------------------------
    def _collect_interface(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, (src, slot, streamed) in self.graph.interface.items():
            state = self.state[src]
            node_id = self.graph.nodes[src].id
            if state == ERROR or state == SKIPPED:
                why = self.errors.get(src) or self.skip_reasons.get(src, "")
                out[key] = {
                    "type": "error_placeholder",
                    "message": f"Source node {node_id} {NODE_STATUS_NAMES[state]}: {why}",
                }
            elif streamed:
                display = (self.graph.interface_outputs.get(key) or {}).get("displayName") or key
                out[key] = {
                    "type": "stream_placeholder",
                    "message": f"Stream started for {key} ({display})",
                    "interfaceOutputKey": key,
                    "text": "".join(self.interface_text.get(key, ())),
                }
            else:
                values = self.outputs[src]
                out[key] = values.get(slot) if values is not None else None
        return out

    @property
    def failed(self) -> bool:
        return bool(self.errors)

    def node_status(self) -> dict[str, dict[str, Any]]:
        """``{nodeId: {status, error?, reason?, startedAt?, finishedAt?}}`` (times in ms)."""
        out: dict[str, dict[str, Any]] = {}
        names, state, errors, skips = NODE_STATUS_NAMES, self.state, self.errors, self.skip_reasons
        started_at, finished_at = self.started_at, self.finished_at
        nodes = self.graph.nodes
        if not errors and not skips:  # the usual run: one literal per node that ran
            for p, s, started, finished in zip(nodes, state, started_at, finished_at, strict=True):
                if started and finished:
                    out[p.id] = {"status": names[s], "startedAt": int(started * 1000), "finishedAt": int(finished * 1000)}
                else:
                    out[p.id] = _status_entry(names[s], started, finished)
            return out
        for i, (p, s, started, finished) in enumerate(zip(nodes, state, started_at, finished_at, strict=True)):
            out[p.id] = _status_entry(names[s], started, finished, errors.get(i), skips.get(i))
        return out

    def node_outputs(self) -> dict[str, Any]:
        return {p.id: self.outputs[p.index] for p in self.graph.nodes if self.outputs[p.index] is not None}

    def node_durations(self) -> Iterator[tuple[str, str, float]]:
        """``(node type, "complete" | "error", seconds)`` of every node that ran, after the run.

        Read once per run (the final status event offers it as ``node_timings``) instead of
        timing every node from its events: metrics cost nothing per node.
        """
        for p, s, started, finished in zip(self.graph.nodes, self.state, self.started_at, self.finished_at, strict=True):
            if s == COMPLETE:  # a bypassed node ends BYPASSED: it did not run
                took = finished - started
                yield p.full_type, "complete", took if took > 0.0 else 0.0
            elif s == ERROR and started and not p.bypassed:
                took = finished - started
                yield p.full_type, "error", took if took > 0.0 else 0.0

    def error_summary(self) -> dict[str, Any]:
        failed = [{"nodeId": self.graph.nodes[i].id, "message": m} for i, m in self.errors.items()]
        skipped = [self.graph.nodes[i].id for i in self.skip_reasons]
        parts = [f"{f['nodeId']}: {f['message']}" for f in failed[:5]]
        summary = f"{len(failed)} node(s) failed ({'; '.join(parts)}{'; ...' if len(failed) > 5 else ''})"
        if skipped:
            summary += f"; {len(skipped)} node(s) skipped"
        return {
            "message": "One or more nodes failed during execution.",
            "summary": summary,
            "failedNodes": failed,
            "skippedNodes": skipped,
        }


def _status_entry(
    status: str, started: float, finished: float, error: str | None = None, reason: str | None = None
) -> dict[str, Any]:
    """``{status, error?, reason?, startedAt?, finishedAt?}`` of one node (times in ms)."""
    entry: dict[str, Any] = {"status": status}
    if error is not None:
        entry["error"] = error
    if reason is not None:
        entry["reason"] = reason
    if started:
        entry["startedAt"] = int(started * 1000)
    if finished:
        entry["finishedAt"] = int(finished * 1000)
    return entry


async def _drain_streams(inputs: dict[str, Any]) -> None:
    """A sync node gets its stream inputs as the full list of chunks (read to the end)."""
    for key, value in list(inputs.items()):
        if isinstance(value, ChunkQueue):
            inputs[key] = await value.drain()
        elif isinstance(value, list) and any(isinstance(v, ChunkQueue) for v in value):
            inputs[key] = [await v.drain() if isinstance(v, ChunkQueue) else v for v in value]


def _message(exc: BaseException) -> str:
    text = str(exc)
    return text if text else type(exc).__name__


def _as_outputs(p: PNode, result: Any) -> dict[str, Any]:
    if result is None:
        return {}
    if isinstance(result, dict):
        return result
    if isinstance(result, Mapping):
        return dict(result)
    raise NodeFailed(
        f"Node {p.full_type} ({p.id}) returned {type(result).__name__}; expected a dict of output values"
    )
