"""A small runner that calls a node's execute the way the engine does (no engine needed)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import anyio
import pytest

from comfytavern import Node, NodeContext, Outputs, Principal

USER = Principal(id="tester", username="tester", is_admin=True)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Result:
    """Final outputs and, for streaming nodes, the chunks yielded before them."""

    def __init__(self, outputs: Mapping[str, Any], chunks: list[Any]) -> None:
        self.outputs = dict(outputs)
        self.chunks = chunks


Runner = Callable[..., Awaitable[Result]]


def make_context(
    *,
    config_values: Mapping[str, Any] | None = None,
    mode_id: str | None = None,
    interface_inputs: Mapping[str, Any] | None = None,
) -> NodeContext:
    return NodeContext(
        prompt_id="prompt-1",
        node_id="node-1",
        user=USER,
        config_values=dict(config_values or {}),
        mode_id=mode_id,
        interface_inputs=dict(interface_inputs or {}),
    )


async def run(
    item: Node,
    inputs: Mapping[str, Any] | None = None,
    *,
    config_values: Mapping[str, Any] | None = None,
    mode_id: str | None = None,
    interface_inputs: Mapping[str, Any] | None = None,
) -> Result:
    """Sync executes run in a worker thread, async ones are awaited, generators are drained."""
    config = dict(config_values or {})
    chosen, execute = item.execute_for(config)
    assert execute is not None, f"{item.full_type} has no execute"
    ctx = make_context(config_values=config, mode_id=mode_id or chosen, interface_inputs=interface_inputs)
    args = dict(inputs or {})
    if inspect.isasyncgenfunction(execute):
        chunks: list[Any] = []
        final: Mapping[str, Any] = {}
        async for chunk in execute(args, ctx):
            if isinstance(chunk, Outputs):
                final = chunk
            else:
                chunks.append(chunk)
        return Result(final, chunks)
    if inspect.iscoroutinefunction(execute):
        return Result(await execute(args, ctx) or {}, [])
    return Result(await anyio.to_thread.run_sync(execute, args, ctx) or {}, [])


async def stream_of(*chunks: Any) -> AsyncIterator[Any]:
    """An async iterator of ``chunks``, as the engine hands a stream input to a node."""
    for chunk in chunks:
        await anyio.sleep(0)
        yield chunk


@pytest.fixture
def run_node() -> Runner:
    return run


@pytest.fixture
def make_stream() -> Callable[..., AsyncIterator[Any]]:
    return stream_of


@pytest.fixture
def core() -> dict[str, Node]:
    """The core pack's nodes by type name."""
    from comfytavern_nodes_core import NODES

    return {n.definition.type: n for n in NODES}
