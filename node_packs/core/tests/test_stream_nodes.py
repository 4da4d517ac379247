from __future__ import annotations

import logging
from typing import Any

import pytest

from comfytavern import Outputs

pytestmark = pytest.mark.anyio

CHUNKS = [
    {"type": "text_chunk", "content": "Hel"},
    {"type": "usage_chunk", "content": {"total_tokens": 3}},
    {"type": "text_chunk", "content": "lo"},
]


async def test_stream_logger_passes_chunks_through_and_logs_them(
    core: dict[str, Any], run_node: Any, make_stream: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="comfytavern.nodes.core.streams")
    result = await run_node(core["StreamLogger"], {"inputStream": make_stream(*CHUNKS)})
    assert result.chunks == CHUNKS
    assert result.chunks[0] is CHUNKS[0]  # the very same objects, untouched
    assert result.outputs == {}
    assert "chunk 1 text_chunk: 'Hel'" in caplog.text
    assert "stream ended after 3 chunks" in caplog.text


async def test_stream_suffix_relay_suffixes_text_chunks_only(
    core: dict[str, Any], run_node: Any, make_stream: Any
) -> None:
    result = await run_node(core["StreamSuffixRelay"], {"inputStream": make_stream(*CHUNKS), "suffix": "!\\n"})
    assert result.chunks == [
        {"type": "text_chunk", "content": "Hel!\n"},
        {"type": "usage_chunk", "content": {"total_tokens": 3}},
        {"type": "text_chunk", "content": "lo!\n"},
    ]
    assert CHUNKS[0] == {"type": "text_chunk", "content": "Hel"}  # shared chunks never mutated
    assert result.outputs == {}


async def test_stream_suffix_relay_default_suffix(core: dict[str, Any], run_node: Any, make_stream: Any) -> None:
    result = await run_node(core["StreamSuffixRelay"], {"inputStream": make_stream("a")})
    assert result.chunks == [{"type": "text_chunk", "content": "a---"}]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("whole text", [{"type": "text_chunk", "content": "whole text--"}]),
        ({"type": "text_chunk", "content": "x"}, [{"type": "text_chunk", "content": "x--"}]),
        (["a", {"type": "custom", "content": 1}], [{"type": "text_chunk", "content": "a--"}, {"type": "custom", "content": 1}]),
    ],
)
async def test_relay_accepts_plain_values_as_streams(
    core: dict[str, Any], run_node: Any, value: Any, expected: list[Any]
) -> None:
    result = await run_node(core["StreamSuffixRelay"], {"inputStream": value, "suffix": "--"})
    assert result.chunks == expected


@pytest.mark.parametrize("node_type", ["StreamLogger", "StreamSuffixRelay"])
@pytest.mark.parametrize(("value", "message"), [(None, "is required"), (42, "expects a stream of chunks, got int")])
async def test_stream_nodes_reject_non_streams(
    core: dict[str, Any], run_node: Any, node_type: str, value: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await run_node(core[node_type], {"inputStream": value})


async def test_an_upstream_failure_fails_the_relay(core: dict[str, Any], run_node: Any) -> None:
    async def broken() -> Any:
        yield {"type": "text_chunk", "content": "x"}
        raise RuntimeError("upstream failed")

    with pytest.raises(RuntimeError, match="upstream failed"):
        await run_node(core["StreamSuffixRelay"], {"inputStream": broken()})


async def test_relays_chain(core: dict[str, Any], run_node: Any, make_stream: Any) -> None:
    """Relay → logger, the way the engine wires stream outputs into stream inputs."""
    relay = core["StreamSuffixRelay"].execute({"inputStream": make_stream("a", "b"), "suffix": "."}, None)

    async def only_chunks() -> Any:
        async for chunk in relay:
            if not isinstance(chunk, Outputs):
                yield chunk

    result = await run_node(core["StreamLogger"], {"inputStream": only_chunks()})
    assert [c["content"] for c in result.chunks] == ["a.", "b."]
