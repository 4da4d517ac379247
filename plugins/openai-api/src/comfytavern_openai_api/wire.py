"""The OpenAI chat-completions wire formats, as msgspec Structs.

Requests: only the fields this server uses are declared (and so type-checked); every other
field of OpenAI's request (``logit_bias``, ``n``, ``user``, ``tools``, ``response_format``...)
and any vendor extra is accepted and ignored, as real clients send far more than a workflow
needs. Responses follow OpenAI's shapes field for field, so SDKs parse them unchanged.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

__all__ = [
    "ChatChoice",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessage",
    "ChunkChoice",
    "Delta",
    "ErrorDetail",
    "ErrorEnvelope",
    "ModelCard",
    "ModelList",
    "ReplyMessage",
    "StreamOptions",
]


class ChatMessage(msgspec.Struct):
    """One request message. ``content`` is text or a list of content parts."""

    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


class ChatCompletionRequest(msgspec.Struct):
    """``POST /v1/chat/completions``. Ranges are OpenAI's."""

    model: str
    messages: list[ChatMessage]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    max_tokens: Annotated[int, Meta(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Meta(ge=1)] | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    presence_penalty: Annotated[float, Meta(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Meta(ge=-2, le=2)] | None = None


class ModelCard(msgspec.Struct):
    id: str
    created: int
    owned_by: str
    object: str = "model"


class ModelList(msgspec.Struct):
    data: list[ModelCard]
    object: str = "list"


class ReplyMessage(msgspec.Struct, omit_defaults=True):
    role: str
    content: str
    reasoning_content: str | None = None


class ChatChoice(msgspec.Struct):
    index: int
    message: ReplyMessage
    finish_reason: str
    logprobs: None = None


class ChatCompletion(msgspec.Struct, omit_defaults=True):
    """``object`` is passed explicitly: a default would be omitted with ``omit_defaults``."""

    id: str
    object: str
    created: int
    model: str
    choices: list[ChatChoice]
    usage: dict[str, Any] | None = None


class Delta(msgspec.Struct, omit_defaults=True):
    role: str | None = None
    content: str | None = None
    reasoning_content: str | None = None


class ChunkChoice(msgspec.Struct):
    index: int
    delta: Delta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(msgspec.Struct, omit_defaults=True):
    id: str
    object: str
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: dict[str, Any] | None = None


class ErrorDetail(msgspec.Struct):
    message: str
    type: str
    code: str | None = None
    param: str | None = None


class ErrorEnvelope(msgspec.Struct):
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""

    error: ErrorDetail
