"""Two event bridges (two "instances") on one real Redis, each with its own hub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from redis.asyncio import Redis

from comfytavern import EventHub, HubEvent
from comfytavern_distributed.bus import EventBridge
from comfytavern_distributed.keys import Keys

pytestmark = pytest.mark.redis


@asynccontextmanager
async def bridge(redis: Redis, prefix: str, name: str, **kwargs: object) -> AsyncIterator[EventBridge]:
    hub = EventHub()
    b = EventBridge(redis, Keys(prefix), hub, name, window=kwargs.pop("window", 0.02), max_chars=256, **kwargs)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        await tg.start(b.run)
        yield b
        tg.cancel_scope.cancel()


async def collect(sub, n: int, timeout: float = 3.0) -> list[HubEvent]:  # type: ignore[no-untyped-def]
    out: list[HubEvent] = []
    with anyio.fail_after(timeout):
        while len(out) < n:
            out.append(await sub.receive())
    return out


@pytest.mark.anyio
async def test_run_events_reach_the_other_instance_once_and_never_echo(redis: Redis, prefix: str) -> None:
    async with bridge(redis, prefix, "A") as a, bridge(redis, prefix, "B") as b:
        seen_on_b = b.hub.subscribe()
        seen_on_a = a.hub.subscribe()
        a.hub.emit("EXECUTION_STATUS_UPDATE", {"promptId": "r1", "status": "running"}, prompt_id="r1", owner_id="u1")
        a.hub.emit("SYSTEM_QUEUE_UPDATE", {"queue_running": 1}, owner_id=None)  # not a run event: stays local
        a.hub.emit("NODE_COMPLETE", {"promptId": "r1", "nodeId": "n", "output": {"x": 1}}, prompt_id="r1", owner_id="u1")
        got = await collect(seen_on_b, 2)
        assert [(e.type, e.prompt_id, e.owner_id) for e in got] == [
            ("EXECUTION_STATUS_UPDATE", "r1", "u1"),
            ("NODE_COMPLETE", "r1", "u1"),
        ]
        assert got[1].payload == {"promptId": "r1", "nodeId": "n", "output": {"x": 1}}
        # A sees its own three events, and nothing comes back from B.
        assert len(await collect(seen_on_a, 3)) == 3
        await anyio.sleep(0.2)
        assert seen_on_a.pending() == 0
        assert seen_on_b.pending() == 0
        assert b.sent_events == 0


@pytest.mark.anyio
async def test_llm_chunks_are_coalesced_before_crossing(redis: Redis, prefix: str) -> None:
    async with bridge(redis, prefix, "A", window=0.5) as a, bridge(redis, prefix, "B") as b:
        sub = b.hub.subscribe()
        for i in range(50):
            a.hub.emit(
                "NODE_YIELD",
                {"promptId": "r", "sourceNodeId": "llm", "yieldedContent": {"type": "text_chunk", "content": f"{i},"}, "isLastChunk": False},
                prompt_id="r",
                owner_id="u",
            )
        a.hub.emit("NODE_COMPLETE", {"promptId": "r", "nodeId": "llm", "output": {}}, prompt_id="r", owner_id="u")
        got = await collect(sub, 2)
        assert got[0].payload["yieldedContent"]["content"] == "".join(f"{i}," for i in range(50))
        assert got[1].type == "NODE_COMPLETE"
        assert a.sent_events == 2
        assert a.coalescer.merged == 49


@pytest.mark.anyio
async def test_interrupt_requests_reach_every_instance(redis: Redis, prefix: str) -> None:
    received: list[tuple[str, str]] = []

    async with bridge(redis, prefix, "A", on_cancel=lambda rid: received.append(("A", rid))), bridge(
        redis, prefix, "B", on_cancel=lambda rid: received.append(("B", rid))
    ) as b:
        await b.request_cancel("run-9")
        with anyio.fail_after(3):
            while len(received) < 2:
                await anyio.sleep(0.01)
    assert sorted(received) == [("A", "run-9"), ("B", "run-9")]


@pytest.mark.anyio
async def test_malformed_bus_messages_are_ignored(redis: Redis, prefix: str) -> None:
    async with bridge(redis, prefix, "B") as b:
        sub = b.hub.subscribe()
        await redis.publish(Keys(prefix).events, b"not json")
        await redis.publish(Keys(prefix).events, b'{"x": 1}')
        await b.publish_now([HubEvent("EXECUTION_STATUS_UPDATE", {"status": "error"}, "r", "u")], local=True)
        got = await collect(sub, 1)
        assert got[0].payload == {"status": "error"}


@pytest.mark.anyio
async def test_publish_now_reaches_other_instances_and_the_local_hub(redis: Redis, prefix: str) -> None:
    remote: list[HubEvent] = []
    async with bridge(redis, prefix, "A") as a, bridge(redis, prefix, "B", on_remote_event=remote.append) as b:
        sub_a, sub_b = a.hub.subscribe(), b.hub.subscribe()
        await a.publish_now([HubEvent("EXECUTION_STATUS_UPDATE", {"status": "error"}, "r", "u")])
        assert (await collect(sub_a, 1))[0].prompt_id == "r"
        assert (await collect(sub_b, 1))[0].prompt_id == "r"
        assert [e.prompt_id for e in remote] == ["r"]
        await anyio.sleep(0.1)
        assert sub_b.pending() == 0  # A's hub copy was not forwarded a second time


@pytest.mark.anyio
async def test_a_worker_bridge_takes_interrupts_but_not_other_processes_events(redis: Redis, prefix: str) -> None:
    cancels: list[str] = []
    async with bridge(redis, prefix, "A") as a, bridge(
        redis, prefix, "W", receive_events=False, on_cancel=cancels.append
    ) as w:
        sub_w = w.hub.subscribe()
        a.hub.emit("NODE_COMPLETE", {"promptId": "r"}, prompt_id="r", owner_id="u")
        await a.request_cancel("r")
        with anyio.fail_after(3):
            while not cancels:
                await anyio.sleep(0.01)
        assert cancels == ["r"]
        assert sub_w.pending() == 0 and w.received_events == 0
        # Its own runs' events still go out.
        sub_a = a.hub.subscribe()
        w.hub.emit("NODE_COMPLETE", {"promptId": "x"}, prompt_id="x", owner_id="u")
        assert (await collect(sub_a, 1))[0].prompt_id == "x"
