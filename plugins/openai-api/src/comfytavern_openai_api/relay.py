"""Following one run of a chat-model workflow: its ``reply`` as the workflow streams it, then its end.

The run goes through the kernel's scheduler (the ``SCHEDULER`` service) and its events
come from the kernel's event hub, like every other client of runs; nothing here knows the
executions plugin. The hub subscription is made before the run is submitted and filtered to
this run, so no event is missed. ``WORKFLOW_INTERFACE_YIELD`` events of the ``reply`` output
carry the chunks (``text_chunk``, ``reasoning_chunk``, ``usage_chunk``, ``finish_reason_chunk``);
the final ``EXECUTION_STATUS_UPDATE`` ends the run, whose record holds the interface outputs.
Should the subscription overflow, the follower falls back to that record (the text not yet
relayed is then sent at the end), so a reply is never cut short.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec

from comfytavern.auth import Principal
from comfytavern.engine import SchedulerClosed
from comfytavern.engine.payload import ExecutionPayload
from comfytavern.engine.scheduler import Scheduler
from comfytavern.events import HubEvent, Subscription
from comfytavern.storage.runs import FINAL_STATUSES, RunRecord
from comfytavern_openai_api.catalog import OUTPUT_KEY
from comfytavern_openai_api.errors import OpenAIError

__all__ = ["End", "Reasoning", "RunFollower", "Text", "failure", "final_text", "final_usage"]

_WANTED = frozenset({"WORKFLOW_INTERFACE_YIELD", "EXECUTION_STATUS_UPDATE"})
#: ``finish_reason`` values OpenAI clients know; anything else a node reports becomes ``stop``.
FINISH_REASONS = frozenset({"stop", "length", "content_filter", "tool_calls", "function_call"})
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Reasoning:
    text: str


@dataclass(frozen=True, slots=True)
class End:
    record: RunRecord | None


Item = Text | Reasoning | End


class RunFollower:
    """Submits one run and yields its reply pieces; collects usage and the finish reason."""

    def __init__(self, scheduler: Scheduler, hub: Any, user: Principal, *, max_buffer: int) -> None:
        self.scheduler = scheduler
        self.hub = hub
        self.user = user
        self.max_buffer = max_buffer
        self.prompt_id: str | None = None
        self.finished = False
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self._subscription: Subscription | None = None

    def _accept(self, event: HubEvent) -> bool:
        return self.prompt_id is not None and event.prompt_id == self.prompt_id and event.type in _WANTED

    async def start(self, payload: ExecutionPayload) -> str:
        """Queue the run (``WorkflowInvalid`` and ``SchedulerClosed`` propagate)."""
        self._subscription = self.hub.subscribe(max_buffer=self.max_buffer, accept=self._accept)

        def accepted(prompt_id: str) -> None:
            self.prompt_id = prompt_id

        try:
            return await self.scheduler.submit(payload, self.user, source="http", on_accepted=accepted)
        except BaseException:
            self.close()
            raise

    async def next(self, timeout: float = math.inf) -> Item | None:
        """The next reply piece or the end; ``None`` when ``timeout`` seconds passed without one."""
        assert self._subscription is not None and self.prompt_id is not None
        wait_for_record: float | None = None
        with anyio.move_on_after(timeout):
            while True:
                try:
                    event = await self._subscription.receive()
                except anyio.EndOfStream:
                    wait_for_record = math.inf  # overflowed: the record has everything
                    break
                if event.type == "EXECUTION_STATUS_UPDATE":
                    if event.payload.get("status") in FINAL_STATUSES:
                        wait_for_record = 30.0
                        break
                    continue
                if event.payload.get("interfaceOutputKey") != OUTPUT_KEY:
                    continue
                item = self._chunk(event.payload.get("yieldedContent"))
                if item is not None:
                    return item
        if wait_for_record is None:
            return None
        return await self._end(wait_for_record)

    def _chunk(self, chunk: Any) -> Item | None:
        if not isinstance(chunk, dict):
            return None
        kind, content = chunk.get("type"), chunk.get("content")
        if kind == "text_chunk" and isinstance(content, str) and content:
            return Text(content)
        if kind == "reasoning_chunk" and isinstance(content, str) and content:
            return Reasoning(content)
        if kind == "usage_chunk":
            self._usage(content)
        elif kind == "finish_reason_chunk":
            reason = content.get("finish_reason") if isinstance(content, dict) else content
            if isinstance(content, dict):
                self._usage(content.get("usage"))
            if reason in FINISH_REASONS and self.finish_reason is None:
                self.finish_reason = reason
        return None

    def _usage(self, value: Any) -> None:
        usage = clean_usage(value)
        if usage is not None:
            self.usage = usage

    async def _end(self, timeout: float) -> End:
        assert self.prompt_id is not None
        record = await self.scheduler.wait(self.prompt_id, self.user, timeout)
        self.finished = record is None or record.status in FINAL_STATUSES
        self.close()
        return End(record)

    async def interrupt(self) -> None:
        """Cancel the run if it has not ended (the LLM node's upstream request is closed with it)."""
        if self.prompt_id is None or self.finished:
            return
        self.finished = True
        with anyio.CancelScope(shield=True):
            try:
                await self.scheduler.interrupt(self.prompt_id, self.user)
            except SchedulerClosed:
                pass

    def close(self) -> None:
        if self._subscription is not None:
            self._subscription.close()


def clean_usage(value: Any) -> dict[str, Any] | None:
    """OpenAI's usage object from what a node reported (``None`` when it has no token counts)."""
    if not isinstance(value, dict):
        return None
    counts = {k: v for k, v in value.items() if isinstance(v, int) and not isinstance(v, bool)}
    if not {"prompt_tokens", "completion_tokens"} & counts.keys():
        return None
    usage = dict(value)
    usage.setdefault("prompt_tokens", 0)
    usage.setdefault("completion_tokens", 0)
    usage.setdefault("total_tokens", usage["prompt_tokens"] + usage["completion_tokens"])
    return usage


def final_text(record: RunRecord) -> str:
    """The ``reply`` interface output as text (a stream output: all its text)."""
    value = (record.interface_outputs or {}).get(OUTPUT_KEY)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("type") == "stream_placeholder":
        text = value.get("text")
        return text if isinstance(text, str) else ""
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        return str(value["text"])
    return _encoder.encode(value).decode()


def final_usage(record: RunRecord, seen: dict[str, Any] | None) -> dict[str, Any] | None:
    """A ``usage`` interface output when the workflow has one, else what the reply stream reported."""
    return clean_usage((record.interface_outputs or {}).get("usage")) or seen


def failure(record: RunRecord | None) -> OpenAIError | None:
    """The error to answer for a run that did not complete (the failing node's own message)."""
    if record is None:
        return OpenAIError.server("the run's result is not available", "run_lost")
    if record.status == "complete":
        return None
    if record.status == "interrupted":
        return OpenAIError.server("the workflow run was interrupted", "run_interrupted")
    info = record.error_info or {}
    failed = info.get("failedNodes")
    if isinstance(failed, list) and failed and isinstance(failed[0], dict):
        node = failed[0]
        message = f"workflow node {node.get('nodeId')} failed: {node.get('message')}"
    else:
        message = str(info.get("message") or "the workflow run failed")
    return OpenAIError.server(message, "workflow_error")
