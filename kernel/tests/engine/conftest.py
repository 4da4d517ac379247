from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import comfytavern_testnodes as testnodes
from comfytavern.auth import Principal
from comfytavern.engine import Execution, ExecutionSettings, convert_payload, prepare
from comfytavern.nodes.registry import NodeRegistry

USER = Principal(id="alice", username="alice")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def registry() -> NodeRegistry:
    return NodeRegistry.build([("t", "t", testnodes.NODES)])


Runner = Callable[..., Awaitable[tuple[Execution, list[tuple[str, dict[str, Any]]]]]]


@pytest.fixture
def run_graph(registry: NodeRegistry) -> Runner:
    """Prepare and run a payload dict; returns the execution and every emitted (type, payload)."""

    async def run(raw: dict[str, Any], **settings: Any) -> tuple[Execution, list[tuple[str, dict[str, Any]]]]:
        events: list[tuple[str, dict[str, Any]]] = []
        graph = prepare(convert_payload(raw), registry)
        execution = Execution(
            graph,
            prompt_id="p1",
            user=USER,
            emit=lambda t, p: events.append((t, p)),
            settings=ExecutionSettings(**settings),
        )
        await execution.run()
        return execution, events

    return run


def node(id: str, type_: str, **fields: Any) -> dict[str, Any]:
    return {"id": id, "fullType": f"t:{type_}", **fields}


def edge(src: str, out: str, tgt: str, inp: str, id: str | None = None) -> dict[str, Any]:
    return {"id": id or f"{src}.{out}->{tgt}.{inp}", "sourceNodeId": src, "sourceHandle": out,
            "targetNodeId": tgt, "targetHandle": inp}


@pytest.fixture
def mk() -> Any:
    """``mk.node(...)`` and ``mk.edge(...)`` payload builders."""

    class Builders:
        pass

    b = Builders()
    b.node = node  # type: ignore[attr-defined]
    b.edge = edge  # type: ignore[attr-defined]
    return b
