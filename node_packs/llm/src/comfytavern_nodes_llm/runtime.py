"""Glue shared by the LLM nodes: reading inputs, and turning client events into stream chunks.

Chunks follow the editor's protocol (``NODE_YIELD.yieldedContent``): ``text_chunk`` (appended to
the preview text), ``reasoning_chunk``, ``usage_chunk`` and ``finish_reason_chunk``.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from comfytavern import NodeContext
from comfytavern_nodes_llm.client import (
    ChatRequest,
    ChatResult,
    Finished,
    ReasoningDelta,
    TextDelta,
    UsageInfo,
    complete_chat,
    stream_chat,
)
from comfytavern_nodes_llm.endpoint import Endpoint
from comfytavern_nodes_llm.errors import LlmConfigError
from comfytavern_nodes_llm.settings import LlmSettings, settings_from_services

__all__ = [
    "Collected",
    "as_bool",
    "as_number",
    "as_text",
    "batch_chunks",
    "chunk",
    "llm_settings",
    "run_batch",
    "run_stream",
]

log = logging.getLogger("comfytavern.nodes.llm")


def llm_settings(ctx: NodeContext) -> tuple[LlmSettings, bool]:
    """Operator settings and whether the server runs in multi-user mode."""
    return settings_from_services(ctx.services)


def chunk(kind: str, content: Any) -> dict[str, Any]:
    return {"type": kind, "content": content}


def batch_chunks(result: ChatResult, finish_content: Any) -> list[dict[str, Any]]:
    """The chunks a streaming node yields in batch mode: the whole reply as one ``text_chunk``
    (so consumers of its stream output still get it), usage, then the finish chunk."""
    chunks = [chunk("text_chunk", result.text)] if result.text else []
    if result.usage:
        chunks.append(chunk("usage_chunk", result.usage))
    chunks.append(chunk("finish_reason_chunk", finish_content))
    return chunks


def as_text(inputs: Mapping[str, Any], key: str, *, default: str = "") -> str:
    value = inputs.get(key)
    if value is None:
        return default
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise LlmConfigError(f"{key} must be text, got {type(value).__name__}")


def as_bool(inputs: Mapping[str, Any], key: str, *, default: bool = False) -> bool:
    value = inputs.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise LlmConfigError(f"{key} must be true or false, got {value!r}")


def as_number(
    inputs: Mapping[str, Any],
    key: str,
    *,
    default: float | None,
    minimum: float | None = None,
    maximum: float | None = None,
    integer: bool = False,
) -> float | int | None:
    """A number input checked against its widget range (a clear error instead of a 400 upstream)."""
    value = inputs.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, bool):
        raise LlmConfigError(f"{key} must be a number, got a boolean")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise LlmConfigError(f"{key} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise LlmConfigError(f"{key} must be a finite number")
    if integer:
        if number != int(number):
            raise LlmConfigError(f"{key} must be a whole number, got {value!r}")
        number = int(number)
    if minimum is not None and number < minimum:
        raise LlmConfigError(f"{key} must be at least {minimum:g}, got {number:g}")
    if maximum is not None and number > maximum:
        raise LlmConfigError(f"{key} must be at most {maximum:g}, got {number:g}")
    return number


@dataclass
class Collected:
    """What a streamed reply added up to."""

    parts: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    finish: Finished | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def result(self) -> ChatResult:
        finish = self.finish or Finished(None)
        return ChatResult(
            text=self.text,
            finish_reason=finish.finish_reason,
            model=finish.model,
            response_id=finish.response_id,
            usage=self.usage,
            reasoning="".join(self.reasoning),
        )


def _log_request(ctx: NodeContext, endpoint: Endpoint, request: ChatRequest, stream: bool) -> None:
    log.info(
        "LLM request: run=%s node=%s endpoint=%s model=%s stream=%s key=%s",
        ctx.prompt_id,
        ctx.node_id,
        endpoint.display,
        request.model,
        stream,
        endpoint.key_source,
    )


async def run_stream(
    ctx: NodeContext,
    endpoint: Endpoint,
    request: ChatRequest,
    collected: Collected,
) -> AsyncIterator[dict[str, Any]]:
    """Stream a reply as editor chunks while filling ``collected``; ends before the finish chunk
    (each node words its own finish chunk)."""
    settings, multi_user = llm_settings(ctx)
    _log_request(ctx, endpoint, request, True)
    events = stream_chat(endpoint, request, settings=settings, multi_user=multi_user)
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, TextDelta):
                collected.parts.append(event.text)
                yield chunk("text_chunk", event.text)
            elif isinstance(event, ReasoningDelta):
                collected.reasoning.append(event.text)
                yield chunk("reasoning_chunk", event.text)
            elif isinstance(event, UsageInfo):
                collected.usage = event.usage
                yield chunk("usage_chunk", event.usage)
            elif isinstance(event, Finished):
                collected.finish = event


async def run_batch(ctx: NodeContext, endpoint: Endpoint, request: ChatRequest) -> ChatResult:
    settings, multi_user = llm_settings(ctx)
    _log_request(ctx, endpoint, request, False)
    return await complete_chat(endpoint, request, settings=settings, multi_user=multi_user)
