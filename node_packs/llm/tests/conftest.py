"""Fixtures for the LLM node tests: the loopback fake OpenAI server and a node runner."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from comfytavern import Node, NodeContext, Outputs, Principal
from comfytavern_testing import config_services, fake_openai, make_config

# The fake server's fixtures, for this folder's tests.
fake_server = fake_openai.fake_server
fake = fake_openai.fake





#: Settings that keep failure tests fast: short timeouts, tiny backoff.
FAST = {
    "connect_timeout_seconds": 2.0,
    "read_timeout_seconds": 0.4,
    "retry_backoff_seconds": 0.01,
    "max_retry_delay_seconds": 0.5,
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"



CredentialFn = Callable[[str, str], Awaitable[str | None]]


def make_ctx(
    tmp_path: Path,
    *,
    llm: Mapping[str, Any] | None = None,
    auth_mode: str = "local",
    credentials: Mapping[str, str] | None = None,
    user_id: str = "alice",
    lookups: list[tuple[str, str]] | None = None,
) -> NodeContext:
    """A NodeContext with a real server Config (operator settings) and a credential store."""
    stored = dict(credentials or {})

    async def resolver(owner: str, service: str) -> str | None:
        if lookups is not None:
            lookups.append((owner, service))
        return stored.get(service) if owner == user_id else None

    config = make_config(tmp_path, auth={"mode": auth_mode}, plugins={"settings": {"llm": dict(llm or {})}})
    return NodeContext(
        prompt_id="prompt-1",
        node_id="node-1",
        user=Principal(id=user_id, username=user_id),
        services=config_services(config),
        _credentials=resolver,
    )


@pytest.fixture
def ctx_factory(tmp_path: Path) -> Callable[..., NodeContext]:
    def factory(**kwargs: Any) -> NodeContext:
        kwargs.setdefault("llm", FAST)
        return make_ctx(tmp_path, **kwargs)

    return factory


async def run_node(node: Node, inputs: dict[str, Any], ctx: NodeContext) -> tuple[list[Any], dict[str, Any]]:
    """Run a node's execute the way the engine does: ``(stream chunks, final outputs)``."""
    assert node.execute is not None
    result = node.execute(inputs, ctx)
    chunks: list[Any] = []
    if isinstance(result, AsyncIterator):
        final: dict[str, Any] = {}
        async for item in result:
            if isinstance(item, Outputs):
                final = dict(item)
            else:
                chunks.append(item)
        return chunks, final
    if isinstance(result, Awaitable):
        result = await result
    return chunks, dict(result or {})


@pytest.fixture
def runner() -> Callable[[Node, dict[str, Any], NodeContext], Awaitable[tuple[list[Any], dict[str, Any]]]]:
    """:func:`run_node` as a fixture (test modules cannot import conftest in importlib mode)."""
    return run_node


@pytest.fixture
def fast_settings() -> Any:
    from comfytavern_nodes_llm.settings import parse_settings

    return parse_settings(FAST)
