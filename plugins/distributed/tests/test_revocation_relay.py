"""Ended credentials cross instances: kernels in one process sharing a real Redis; what one kernel
announces on ``kernel.revocations`` every other kernel announces locally (once, no echo)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import pytest
from redis.asyncio import Redis

import comfytavern_testnodes as testnodes
from comfytavern.kernel import Kernel
from comfytavern.revocation import Revocation
from comfytavern_distributed.keys import Keys
from comfytavern_testing import make_kernel
from comfytavern_testing_contracts.services import redis_url

Heard = list[tuple[str, Revocation, str | None]]


def build(tmp: Path, prefix: str, folder: str, instance_id: str) -> Kernel:
    settings = {"enabled": True, "redis_url": redis_url(), "prefix": prefix, "instance_id": instance_id}
    return make_kernel(
        tmp / folder,
        node_packs=[testnodes],
        storage={"projects": None, "accounts": None, "runs": None},
        plugins_config={"settings": {"distributed": settings}},
    )


@asynccontextmanager
async def started(*kernels: tuple[str, Kernel], heard: Heard) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        for name, kernel in kernels:
            await stack.enter_async_context(kernel.lifespan())
            kernel.revocations.listen(lambda r, origin, name=name: heard.append((name, r, origin)))
        yield


async def wait_for(heard: Heard, count: int) -> None:
    with anyio.fail_after(10):
        while len(heard) < count:
            await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_an_announcement_reaches_every_other_instance_once(tmp_path: Path, prefix: str) -> None:
    heard: Heard = []
    a, b = build(tmp_path, prefix, "a", "A"), build(tmp_path, prefix, "b", "B")
    async with started(("A", a), ("B", b), heard=heard):
        revoked = Revocation.key("k1", "u1")
        await a.revocations.announce(revoked)
        await wait_for(heard, 2)
        await anyio.sleep(0.3)  # nothing echoes back
        assert [(name, r) for name, r, _ in heard] == [("A", revoked), ("B", revoked)]
        assert heard[0][2] is None  # local
        assert heard[1][2] is not None and heard[1][2].startswith("A:")  # relayed from A


@pytest.mark.anyio
async def test_a_process_with_the_same_instance_id_reaches_the_server(tmp_path: Path, prefix: str) -> None:
    """The CLI run with a server's configuration has the server's instance id: still relayed."""
    heard: Heard = []
    server, cli = build(tmp_path, prefix, "server", "A"), build(tmp_path, prefix, "cli", "A")
    async with started(("server", server), ("cli", cli), heard=heard):
        await cli.revocations.announce(Revocation.sessions("u1"))
        await wait_for(heard, 2)
        assert sorted(name for name, _, _ in heard) == ["cli", "server"]


@pytest.mark.anyio
async def test_malformed_revocation_messages_are_ignored(tmp_path: Path, prefix: str) -> None:
    heard: Heard = []
    a, b = build(tmp_path, prefix, "a", "A"), build(tmp_path, prefix, "b", "B")
    async with started(("A", a), ("B", b), heard=heard):
        client = Redis.from_url(redis_url())
        try:
            channel = Keys(prefix).revocations
            await client.publish(channel, b"not json")
            await client.publish(channel, b'["x", {"kind": "nonsense"}]')
        finally:
            await client.aclose()
        await a.revocations.announce(Revocation.user("u2"))
        await wait_for(heard, 2)
        assert [r for _, r, _ in heard] == [Revocation.user("u2")] * 2
