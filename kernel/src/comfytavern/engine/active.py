"""A run in memory: its record, its event emitter and the replay of a finished one.

:class:`ActiveRun` is what the scheduler holds for a queued, running or just finished run; its
emitter encodes every event once, keeps the bytes for late watchers and publishes them.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import anyio

from comfytavern.auth import Principal
from comfytavern.engine.encoding import safe_encoder
from comfytavern.engine.executor import Execution
from comfytavern.engine.graph import PreparedGraph
from comfytavern.engine.retained import Message, ReplayLog
from comfytavern.events import EventHub, HubEvent
from comfytavern.storage.runs import RunRecord

__all__ = ["REPLAY_MAX_BYTES", "ActiveRun", "new_prompt_id", "now_ms", "replay_record"]

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
#: Bytes of encoded events kept per active run for replay to late subscribers (the oldest are
#: dropped beyond it; ``execution.replay_max_bytes``).
REPLAY_MAX_BYTES = 8 * 1024 * 1024

#: The node entry of a run that has not started (shared by every node: never mutated).
_PENDING_NODE: dict[str, Any] = {"status": "pending"}
_INTERRUPTED_NODE: dict[str, Any] = {"status": "interrupted"}


def new_prompt_id() -> str:
    """A 21-character id in the nanoid alphabet, like the original's."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(21))


def now_ms() -> int:
    return int(time.time() * 1000)


_encode = safe_encoder.encode


class _RunEmitter:
    """Encodes each event of one run once (the log keeps the bytes, every socket sends them) and
    publishes it; nothing of the run is published after its final status (``log`` is ``None``).

    A callable object, not a closure over the run: it holds no reference back to the
    :class:`ActiveRun`, so a finished run (its graph and execution: thousands of objects for a
    big workflow) is freed by reference counting at once instead of waiting, in a reference
    cycle, for the collector's oldest generation, whose passes then stall the event loop.
    """

    __slots__ = ("log", "owner_id", "prompt_id", "publish")

    def __init__(self, log: ReplayLog, publish: Callable[[HubEvent], None], prompt_id: str, owner_id: str) -> None:
        self.log: ReplayLog | None = log
        self.publish = publish
        self.prompt_id = prompt_id
        self.owner_id = owner_id

    def __call__(self, type_: str, payload: dict[str, Any], node_timings: Any = None) -> None:
        log = self.log
        if log is None:
            return
        frame = _encode(Message(type_, payload))  # ``encode_message``, one call less per event
        log.append(frame)
        self.publish(HubEvent(type_, payload, self.prompt_id, self.owner_id, frame, node_timings))


class ActiveRun:
    """A run the scheduler knows in memory (queued, running, or just finished)."""

    def __init__(
        self,
        prompt_id: str,
        owner: Principal,
        graph: PreparedGraph,
        source: str,
        hub: EventHub,
        replay_max_bytes: int = REPLAY_MAX_BYTES,
    ) -> None:
        self.prompt_id = prompt_id
        self.owner = owner
        self.graph = graph
        self.source = source
        self.status = "queued"
        self.submitted_at = now_ms()
        self.started_at: int | None = None
        self.finished_at: int | None = None
        self.execution: Execution | None = None
        self.scope: anyio.CancelScope | None = None
        self.cancel_requested = False
        self.error_info: dict[str, Any] | None = None
        self.done = anyio.Event()
        #: Encodes, logs and publishes the run's events (``emit(type, payload)``).
        self.emit = _RunEmitter(ReplayLog(replay_max_bytes), hub.publish, prompt_id, owner.id)

    @property
    def log(self) -> ReplayLog | None:
        """Encoded events so far, for late watchers (``replay``); ``None`` once the run has ended."""
        return self.emit.log

    def end_log(self) -> None:
        """Free the event log once the final status is out (late watchers get the summary)."""
        self.emit.log = None

    @property
    def workflow_id(self) -> str | None:
        return self.graph.workflow_id

    @property
    def workflow_name(self) -> str | None:
        name = self.graph.metadata.get("workflowName")
        return name if isinstance(name, str) else None

    def info(self) -> dict[str, Any]:
        """``PromptInfo`` of the original (plus owner and workflow)."""
        out: dict[str, Any] = {"promptId": self.prompt_id, "status": self.status, "submittedAt": self.submitted_at}
        if self.workflow_id:
            out["workflowId"] = self.workflow_id
        if self.workflow_name:
            out["workflowName"] = self.workflow_name
        out["ownerId"] = self.owner.id
        return out

    def record(self) -> RunRecord:
        execution = self.execution
        return RunRecord(
            prompt_id=self.prompt_id,
            owner_id=self.owner.id,
            status=self.status,  # type: ignore[arg-type]
            submitted_at=self.submitted_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            source=self.source,
            workflow_id=self.workflow_id,
            workflow_name=self.workflow_name,
            node_count=len(self.graph.nodes),
            # Before the run starts every node has the same entry: one shared (read-only) dict.
            node_status=execution.node_status() if execution is not None else dict.fromkeys(
                (p.id for p in self.graph.nodes), _INTERRUPTED_NODE if self.status == "interrupted" else _PENDING_NODE
            ),
            outputs=execution.node_outputs() if execution is not None else {},
            interface_outputs=execution.interface_values if execution is not None else None,
            error_info=self.error_info,
        )


def replay_record(record: RunRecord) -> list[HubEvent]:
    """Events describing a finished run, in the order a live watcher would have seen them."""
    pid, owner = record.prompt_id, record.owner_id
    events: list[HubEvent] = []

    def add(type_: str, payload: dict[str, Any]) -> None:
        events.append(HubEvent(type_, payload, pid, owner))

    for node_id, entry in record.node_status.items():
        status = entry.get("status")
        if status == "complete":
            add("NODE_COMPLETE", {"promptId": pid, "nodeId": node_id, "output": record.outputs.get(node_id, {})})
        elif status == "error":
            message = entry.get("error", "")
            add("NODE_ERROR", {"promptId": pid, "nodeId": node_id, "errorDetails": message, "errorInfo": {"message": message}})
        elif status == "skipped":
            add("NODE_SKIPPED", {"promptId": pid, "nodeId": node_id, "reason": entry.get("reason", "")})
        elif status == "bypassed":
            add("NODE_BYPASSED", {"promptId": pid, "nodeId": node_id, "pseudoOutputs": record.outputs.get(node_id, {})})
    if record.interface_outputs:
        add("NODE_COMPLETE", {"promptId": pid, "nodeId": "__WORKFLOW_INTERFACE_OUTPUTS__", "output": record.interface_outputs})
    final: dict[str, Any] = {"promptId": pid, "status": record.status}
    if record.status == "error" and record.error_info is not None:
        final["errorInfo"] = record.error_info
    add("EXECUTION_STATUS_UPDATE", final)
    return events
