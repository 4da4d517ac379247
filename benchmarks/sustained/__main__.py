"""Sustained-load benchmark: every figure of the performance targets in one run, each next to a
floor measured in the same run, with ``[met]``/``[MISSED]``.

    .venv/bin/python -m benchmarks.sustained            # full run (a few minutes)
    .venv/bin/python -m benchmarks.sustained --quick    # fewer runs (not for the targets)

The server is ``comfytavern serve`` with the production defaults (benchmarks/sustained/server.py);
this process is the client and reads every WebSocket frame. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import httpx
import websockets
from httpx_sse import EventSource

import comfytavern_nodes_core
import comfytavern_nodes_llm
from benchmarks.sustained.server import EXE, Served, free_port, healthz, prompt, random_chain, stream_chat
from comfytavern.auth import Principal
from comfytavern.engine import Execution, ExecutionSettings, convert_payload, prepare
from comfytavern.nodes.registry import NodeRegistry

FINAL = ("complete", "error", "interrupted")
RESULTS: list[tuple[str, str, str, str]] = []  # (figure, measured, floor/ratio, verdict)


def report(figure: str, measured: str, floor: str, ok: bool | None = None, target: str = "") -> None:
    verdict = "" if ok is None else ("[met] " if ok else "[MISSED] ") + target
    RESULTS.append((figure, measured, floor, verdict))
    print(f"  {figure}: {measured}  | {floor}  {verdict}", flush=True)


async def connect(url: str, base: str) -> Any:
    return await websockets.connect(url, origin=base, max_size=None, compression=None, max_queue=None)


async def run_once(ws: Any, text: str) -> tuple[str, list[dict[str, Any]]]:
    """Submit one prompt; every frame until its final status."""
    await ws.send(text)
    prompt_id = None
    frames: list[dict[str, Any]] = []
    while True:
        message = json.loads(await ws.recv())
        payload = message.get("payload") or {}
        if message["type"] == "PROMPT_ACCEPTED_RESPONSE" and prompt_id is None:
            prompt_id = payload["promptId"]
        elif payload.get("promptId") == prompt_id:
            frames.append(message)
            if message["type"] == "EXECUTION_STATUS_UPDATE" and payload.get("status") in FINAL:
                return payload["status"], frames


# -- floor: the engine in this process ---------------------------------------------------------
REGISTRY = NodeRegistry.build([("core", "core", comfytavern_nodes_core.NODES)])


async def floor_chain(raw: dict[str, Any]) -> tuple[float, float]:
    """(CPU ms, wall ms) to convert, prepare and run ``raw`` here, events to a list."""
    sink: list[Any] = []
    c0, w0 = time.process_time(), time.perf_counter()
    graph = prepare(convert_payload(json.loads(json.dumps(raw))), REGISTRY)
    execution = Execution(graph, prompt_id="floor", user=Principal(id="bench", username="bench"),
                          emit=lambda t, p: sink.append((t, p)), settings=ExecutionSettings())
    await execution.run()
    return (time.process_time() - c0) * 1000, (time.perf_counter() - w0) * 1000


# -- chains ------------------------------------------------------------------------------------
async def chains(server: Served, quick: bool) -> None:
    print("chains of core:RandomNumber over /ws (server CPU from /proc; floor: the engine in-process)")
    async with await connect(server.ws_url, server.base) as ws:
        for n, runs in ((200, 100), (1000, 60), (10000, 8)):
            runs = max(3, runs // 4) if quick else runs
            text = prompt(random_chain(n))
            for _ in range(3):
                await run_once(ws, text)
            c0, walls = server.cpu_ms(), []
            for _ in range(runs):
                w0 = time.perf_counter()
                status, _ = await run_once(ws, text)
                assert status == "complete", status
                walls.append((time.perf_counter() - w0) * 1000)
            cpu = (server.cpu_ms() - c0) / runs
            floors = [await floor_chain(random_chain(n)) for _ in range(max(3, runs // 4))]
            fcpu = statistics.median(f[0] for f in floors)
            fwall = statistics.median(f[1] for f in floors)
            wall = statistics.median(walls)
            target = 20 * n / 1000
            report(f"{n}-node chain, server CPU per run", f"{cpu:.1f} ms ({cpu * 1000 / n:.1f} µs/node)",
                   f"floor {fcpu:.1f} ms, ×{cpu / fcpu:.1f}", cpu <= target if n == 1000 else None,
                   f"<= {target:g} ms" if n == 1000 else "")
            report(f"{n}-node chain, wall per run (median)", f"{wall:.1f} ms", f"floor {fwall:.1f} ms, ×{wall / fwall:.1f}")


# -- soak: memory and loop stalls ----------------------------------------------------------------
def poll_healthz(base: str, stop: threading.Event, out: list[float]) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        healthz(base)
        out.append((time.perf_counter() - t) * 1000)
        time.sleep(0.02)


async def soak(server: Served, quick: bool) -> None:
    runs = 100 if quick else 400
    first = runs // 4
    print(f"soak: {runs} runs of a 1000-node chain; /healthz polled every 20 ms from run {first}")
    idle: list[float] = []
    stop = threading.Event()
    poller = threading.Thread(target=poll_healthz, args=(server.base, stop, idle), daemon=True)
    poller.start()
    time.sleep(2.0)
    stop.set()
    poller.join()
    baseline = server.rss_mib()
    text = prompt(random_chain(1000))
    lat: list[float] = []
    stop = threading.Event()
    cpu_tail = 0.0
    async with await connect(server.ws_url, server.base) as ws:
        for i in range(runs):
            if i == first:
                rss_first = server.rss_mib()
                poller = threading.Thread(target=poll_healthz, args=(server.base, stop, lat), daemon=True)
                poller.start()
            if i == runs - 100:
                c_tail = server.cpu_ms()
            await run_once(ws, text)
        cpu_tail = (server.cpu_ms() - c_tail) / 100
    stop.set()
    poller.join()
    rss_end = server.rss_mib()
    await asyncio.sleep(2.0)
    rss_after = server.rss_mib()
    grow = rss_end - rss_first
    report(f"RSS growth from run {first} to {runs}", f"{grow:+.1f} MiB (at run {first}: {rss_first:.0f} MiB)",
           f"floor: idle server {baseline:.0f} MiB", grow <= 10, "<= 10 MiB")
    report("RSS 2 s after the soak", f"{rss_after:.0f} MiB", f"×{rss_after / baseline:.2f} of the idle server")
    report("server CPU per 1000-node run, last 100 runs of the soak", f"{cpu_tail:.1f} ms", "", cpu_tail <= 20, "<= 20 ms")
    lat.sort()
    idle.sort()
    mx, p99 = lat[-1], lat[int(len(lat) * 0.99)]
    report("/healthz during the soak (max loop stall)", f"max {mx:.0f} ms, p99 {p99:.0f} ms over {len(lat)} polls",
           f"floor: idle server max {idle[-1]:.1f} ms, p50 {statistics.median(idle):.1f} ms", mx <= 60, "max <= 60 ms")


# -- many sockets --------------------------------------------------------------------------------
async def submissions(server: Served, count: int) -> float:
    """Seconds for ``count`` 3-node runs sent at once on one socket, until the last final status."""
    text = prompt(random_chain(3))
    async with await connect(server.ws_url, server.base) as ws:
        t0 = time.perf_counter()
        for _ in range(count):
            await ws.send(text)
        mine: set[str] = set()
        done = 0
        while done < count:
            message = json.loads(await ws.recv())
            payload = message.get("payload") or {}
            if message["type"] == "PROMPT_ACCEPTED_RESPONSE":
                mine.add(payload["promptId"])
            elif (message["type"] == "EXECUTION_STATUS_UPDATE" and payload.get("status") in FINAL
                  and payload.get("promptId") in mine):
                done += 1
        return time.perf_counter() - t0


async def many_sockets(server: Served, quick: bool) -> None:
    count, idle_n = (500, 1000) if quick else (2000, 1000)
    print(f"{count} submissions (3-node runs, sent at once) without and with {idle_n} idle sockets")
    await submissions(server, 100)  # warm-up
    c0 = server.cpu_ms()
    bare = await submissions(server, count)
    bare_cpu = server.cpu_ms() - c0
    idle = [await connect(server.ws_url, server.base) for _ in range(idle_n)]
    try:
        await asyncio.sleep(0.5)
        c0 = server.cpu_ms()
        loaded = await submissions(server, count)
        loaded_cpu = server.cpu_ms() - c0
    finally:
        await asyncio.gather(*(ws.close() for ws in idle), return_exceptions=True)
    extra = (loaded / bare - 1) * 100
    report(f"{count} submissions with {idle_n} idle sockets", f"{loaded:.2f} s ({count / loaded:.0f} runs/s), "
           f"server CPU {loaded_cpu / 1000:.2f} s", f"floor: no idle socket {bare:.2f} s, server CPU "
           f"{bare_cpu / 1000:.2f} s; +{extra:.0f} %", extra < 20, "< +20 %")


# -- streaming -----------------------------------------------------------------------------------
async def floor_stream(base_url: str, chunks: int, shared: httpx.AsyncClient | None = None) -> float:
    """Seconds for httpx + httpx_sse (the node's client) to read the upstream's stream directly."""
    async with httpx.AsyncClient() if shared is None else _Keep(shared) as client:
        t0 = time.perf_counter()
        async with client.stream("POST", base_url + "/chat/completions",
                                 json={"model": f"chunks-{chunks}", "stream": True, "messages": []}) as response:
            got = 0
            async for sse in EventSource(response).aiter_sse():
                if sse.data != "[DONE]":
                    json.loads(sse.data)
                    got += 1
        return time.perf_counter() - t0


class _Keep:
    """``async with`` over a client that stays open."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def __aenter__(self) -> httpx.AsyncClient:
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        return None


async def relayed(server: Served, base_url: str, chunks: int, ws: Any | None = None) -> tuple[int, float]:
    """(relayed chunks, seconds from the send to the final status) for one streamed chat."""
    own = ws is None
    if ws is None:
        ws = await connect(server.ws_url, server.base)
    try:
        t0 = time.perf_counter()
        status, frames = await run_once(ws, prompt(stream_chat(base_url, chunks)))
        seconds = time.perf_counter() - t0
    finally:
        if own:
            await ws.close()
    assert status == "complete", frames[-3:]
    got = sum(1 for f in frames if f["type"] == "NODE_YIELD" and f["payload"].get("sourceNodeId") == "relay"
              and f["payload"]["yieldedContent"].get("type") == "text_chunk")
    return got, seconds


async def streaming(server: Served, quick: bool) -> None:
    chunks = 5000 if quick else 20000
    port = free_port()
    upstream = subprocess.Popen([sys.executable, "-m", "benchmarks.sustained.upstream", "--port", str(port)])
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(100):
            try:
                await floor_stream(base_url, 1)
                break
            except httpx.TransportError:
                await asyncio.sleep(0.05)
        print(f"streaming: fake upstream ({chunks} chunks as fast as it can) → core:OpenAI → core:StreamSuffixRelay → /ws")
        await relayed(server, base_url, 200)  # warm-up
        floors, runs = [], []
        for _ in range(3):  # alternate floor and relayed runs
            floors.append(await floor_stream(base_url, chunks))
            runs.append(await relayed(server, base_url, chunks))
        floor = min(floors)
        got, seconds = min(runs, key=lambda r: r[1])
        assert got == chunks, (got, chunks)
        rate, floor_rate = chunks / seconds, chunks / floor
        added = (seconds - floor) / chunks * 1000
        report("chunks/s relayed to a WebSocket client (one chat)", f"{rate:,.0f} chunks/s",
               f"floor: httpx reading the upstream {floor_rate:,.0f} chunks/s, ×{rate / floor_rate:.2f}",
               rate >= 20_000, ">= 20,000/s per core")
        report("added latency per chunk", f"{added:.3f} ms", f"floor {floor / chunks * 1000:.3f} ms per chunk",
               added <= 0.2, "<= 0.2 ms")
        n, per = (20, 200) if quick else (100, 500)
        sockets = [await connect(server.ws_url, server.base) for _ in range(n)]
        try:
            t0 = time.perf_counter()
            results = await asyncio.gather(*(relayed(server, base_url, per, ws) for ws in sockets))
            total = time.perf_counter() - t0
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=n)) as shared:
            t0 = time.perf_counter()
            await asyncio.gather(*(floor_stream(base_url, per, shared) for _ in range(n)))
            floor_total = time.perf_counter() - t0
        relayed_chunks = sum(r[0] for r in results)
        report(f"{n} concurrent streamed chats ({per} chunks each)",
               f"{relayed_chunks / total:,.0f} chunks/s, all done in {total:.2f} s",
               f"floor: {n} direct reads {n * per / floor_total:,.0f} chunks/s in {floor_total:.2f} s")
    finally:
        upstream.terminate()
        upstream.wait(10)


# -- cold start ----------------------------------------------------------------------------------
def cold_start(quick: bool) -> None:
    print("cold start: spawn `comfytavern serve` (fresh data folder) → first /healthz 200")
    tries = 2 if quick else 4
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    floor = time.perf_counter() - t0
    # "With bytecode" means with it whatever the caller's environment says (a shell with
    # PYTHONDONTWRITEBYTECODE=1 would otherwise measure the project's own modules compiled).
    bytecode: dict[str, str | None] = {"PYTHONDONTWRITEBYTECODE": None, "PYTHONPYCACHEPREFIX": None}
    warm = Served(bytecode)  # writes the bytecode caches, if missing
    warm.wait_ready()
    warm.stop()
    with_bytecode, without = [], []
    for _ in range(tries):  # alternate
        s = Served(bytecode)
        with_bytecode.append(s.wait_ready())
        s.stop()
        s = Served({"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": tempfile.mkdtemp(prefix="ct-nopyc-")})
        without.append(s.wait_ready())
        s.stop()
    best = min(with_bytecode)
    report(f"cold start, with bytecode (best of {tries})", f"{best:.2f} s (median {statistics.median(with_bytecode):.2f} s)",
           f"floor: bare interpreter {floor:.2f} s", best <= 0.4, "<= 0.4 s")
    report(f"cold start, without bytecode (best of {tries})", f"{min(without):.2f} s", f"floor {floor:.2f} s")


async def amain(args: argparse.Namespace) -> None:
    load = os.getloadavg()
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
          f"{os.cpu_count()} CPUs, server {EXE}")
    server = Served()
    try:
        server.wait_ready()
        await chains(server, args.quick)
        await soak(server, args.quick)
        await many_sockets(server, args.quick)
        await streaming(server, args.quick)
    finally:
        server.stop()
    cold_start(args.quick)
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("\n| figure | measured | floor (same run) | target |\n|---|---|---|---|")
    for row in RESULTS:
        print("| " + " | ".join(row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke test, not the figures)")
    parser.add_argument("--only", choices=["chains", "soak", "sockets", "streaming", "cold"], help="one part only")
    args = parser.parse_args()
    if args.only == "cold":
        cold_start(args.quick)
        return
    if args.only:
        async def one() -> None:
            server = Served()
            try:
                server.wait_ready()
                await {"chains": chains, "soak": soak, "sockets": many_sockets, "streaming": streaming}[args.only](
                    server, args.quick)
            finally:
                server.stop()
        asyncio.run(one())
        return
    asyncio.run(amain(args))


if __name__ == "__main__":
    del comfytavern_nodes_llm  # imported only to fail early when the LLM node pack is missing
    main()
