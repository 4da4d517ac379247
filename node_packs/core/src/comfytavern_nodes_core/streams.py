"""Stream relays: nodes that consume a chunk stream and re-yield it (logged, or with a suffix).

A stream input arrives as an async iterator of chunk dicts (``{"type": "text_chunk", "content":
"..."}``; other types such as ``usage_chunk`` pass through untouched). For convenience a plain
text, a single chunk dict or a list of chunks is accepted too. Chunks are never modified in
place: every consumer of a stream shares the chunk objects.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any

from comfytavern import Input, NodeContext, Output, Outputs, node
from comfytavern_nodes_core.values import as_text, parse_escapes, pick

__all__ = ["NODES", "chunk_stream", "stream_logger", "stream_suffix_relay"]

log = logging.getLogger("comfytavern.nodes.core.streams")

DEFAULT_SUFFIX = "---"
_SUMMARY_CHARS = 120


async def chunk_stream(value: Any, name: str) -> AsyncIterator[Any]:
    """Iterate a stream input, whatever reasonable shape it arrived in."""
    if value is None:
        raise ValueError(f"input {name!r} is required: connect a stream output to it")
    if isinstance(value, AsyncIterable):
        async for chunk in value:
            yield chunk
    elif isinstance(value, str):
        yield {"type": "text_chunk", "content": value}
    elif isinstance(value, Mapping) and isinstance(value.get("type"), str):
        yield value
    elif isinstance(value, (list, tuple)):
        for chunk in value:
            yield chunk
    else:
        raise ValueError(f"input {name!r} expects a stream of chunks, got {type(value).__name__}")


def summarize(chunk: Any) -> str:
    """One log line for a chunk: its type and the start of its content."""
    if isinstance(chunk, Mapping):
        kind = chunk.get("type", "?")
        content = repr(chunk.get("content"))
    else:
        kind, content = type(chunk).__name__, repr(chunk)
    if len(content) > _SUMMARY_CHARS:
        content = content[:_SUMMARY_CHARS] + "…"
    return f"{kind}: {content}"


@node(
    type="StreamLogger",
    category="实用工具",
    display_name="🧻Stream Logger",
    description="Logs incoming stream chunks to the console for debugging purposes.",
    inputs={
        "inputStream": Input(
            data_flow_type="WILDCARD",
            display_name="流输入",
            description="输入流，将被记录到控制台",
            required=True,
            is_stream=True,
        )
    },
    outputs={
        "outputStream": Output(
            data_flow_type="WILDCARD",
            display_name="流输出",
            description="记录后传出的原始流数据",
            is_stream=True,
        )
    },
)
async def stream_logger(inputs: dict[str, Any], ctx: NodeContext) -> AsyncIterator[Any]:
    count = 0
    async for chunk in chunk_stream(inputs.get("inputStream"), "inputStream"):
        count += 1
        log.info("run %s node %s chunk %d %s", ctx.prompt_id, ctx.node_id, count, summarize(chunk))
        yield chunk
    log.info("run %s node %s stream ended after %d chunks", ctx.prompt_id, ctx.node_id, count)
    yield Outputs()


@node(
    type="StreamSuffixRelay",
    category="实用工具",
    display_name="➡️流后缀接力",
    description="接收一个文本流，为每个文本块添加指定后缀，然后接力输出流。",
    inputs={
        "inputStream": Input(
            data_flow_type="STRING",
            display_name="输入流",
            description="要处理的输入文本流",
            required=True,
            is_stream=True,
        ),
        "suffix": Input(
            data_flow_type="STRING",
            display_name="后缀",
            description="要添加到每个文本块末尾的后缀字符串",
            config={"default": DEFAULT_SUFFIX, "multiline": False, "placeholder": "输入后缀", "label": "后缀"},
        ),
    },
    outputs={
        "outputStream": Output(
            data_flow_type="STRING",
            display_name="输出流",
            description="添加后缀后的文本流",
            is_stream=True,
        )
    },
)
async def stream_suffix_relay(inputs: dict[str, Any], ctx: NodeContext) -> AsyncIterator[Any]:
    suffix = parse_escapes(as_text(pick(inputs, "suffix", DEFAULT_SUFFIX)))
    async for chunk in chunk_stream(inputs.get("inputStream"), "inputStream"):
        if isinstance(chunk, str):
            yield {"type": "text_chunk", "content": chunk + suffix}
        elif (
            isinstance(chunk, Mapping)
            and chunk.get("type") == "text_chunk"
            and isinstance(chunk.get("content"), str)
        ):
            yield {**chunk, "content": chunk["content"] + suffix}
        else:
            yield chunk
    yield Outputs()


NODES = (stream_logger, stream_suffix_relay)
