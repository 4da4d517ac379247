"""Engine benchmark: end-to-end figures over a real server, ratios against an in-process floor.

    .venv/bin/python -m benchmarks.engine            # full run (about a minute)
    .venv/bin/python -m benchmarks.engine --quick    # fewer repetitions

The server runs in its own process (uvicorn, loopback only); this process is the client and
reads every WebSocket frame. The floor is the same graph run by the engine in this process
with no server, no hub and no sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import websockets

import comfytavern_testnodes as testnodes
from benchmarks.engine.leanws import LeanWebSocket
from benchmarks.engine.payloads import chain, wide_sleep
from comfytavern.auth import Principal
from comfytavern.engine import Execution, ExecutionSettings, convert_payload, prepare
from comfytavern.nodes.registry import NodeRegistry


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


# -- floor ---------------------------------------------------------------------------------------
REGISTRY = NodeRegistry.build([("t", "t", testnodes.NODES)])


async def floor_run(raw: dict[str, Any]) -> float:
    """Seconds to prepare and run ``raw`` in-process (events go to a list)."""
    sink: list[Any] = []
    start = time.perf_counter()
    graph = prepare(convert_payload(raw), REGISTRY)
    execution = Execution(graph, prompt_id="floor", user=Principal(id="bench", username="bench"),
                          emit=lambda t, p: sink.append((t, p)), settings=ExecutionSettings())
    await execution.run()
    return time.perf_counter() - start


# -- client --------------------------------------------------------------------------------------
async def ws_run(ws: Any, raw: dict[str, Any]) -> tuple[float, int]:
    """Submit over the WebSocket, read every frame until the final status; (seconds, frames)."""
    frames = 0
    start = time.perf_counter()
    await ws.send(json.dumps({"type": "PROMPT_REQUEST", "payload": raw}))
    prompt_id = None
    while True:
        message = json.loads(await ws.recv())
        frames += 1
        kind = message["type"]
        if kind == "PROMPT_ACCEPTED_RESPONSE":
            prompt_id = message["payload"]["promptId"]
        elif kind == "EXECUTION_STATUS_UPDATE" and message["payload"]["promptId"] == prompt_id:
            status = message["payload"]["status"]
            if status in ("complete", "error", "interrupted"):
                if status != "complete":
                    raise RuntimeError(f"run ended {status}: {message['payload']}")
                return time.perf_counter() - start, frames
        elif kind == "error":
            raise RuntimeError(message)


async def lean_run(ws: LeanWebSocket, raw: dict[str, Any]) -> tuple[float, int]:
    """Like :func:`ws_run` with the lean client (every frame read and its type decoded)."""
    frames = 0
    body = json.dumps({"type": "PROMPT_REQUEST", "payload": raw})
    start = time.perf_counter()
    await ws.send_text(body)
    prompt_id = None
    while True:
        head = await ws.recv_head()
        frames += 1
        if head.type == "PROMPT_ACCEPTED_RESPONSE":
            prompt_id = head.payload["promptId"]
        elif head.type == "EXECUTION_STATUS_UPDATE" and head.payload.get("promptId") == prompt_id:
            status = head.payload["status"]
            if status in ("complete", "error", "interrupted"):
                if status != "complete":
                    raise RuntimeError(f"run ended {status}: {head.payload}")
                return time.perf_counter() - start, frames


async def drain_broadcasts(ws: Any) -> None:
    """Read the trailing SYSTEM_QUEUE_UPDATE so the next measurement starts clean."""
    with anyio.move_on_after(0.2):
        while True:
            await ws.recv()


async def lean_drain(ws: LeanWebSocket) -> None:
    with anyio.move_on_after(0.2):
        while True:
            await ws.recv()


async def bench_chains(url: str, quick: bool, rows: list[str]) -> dict[int, float]:
    sizes = {2: 30, 20: 30, 200: 20, 1000: 10, 10000: 3}
    if quick:
        sizes = {2: 10, 20: 10, 200: 5, 1000: 5, 10000: 1}
    per_node: dict[int, float] = {}
    port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
    lean = await LeanWebSocket.connect("127.0.0.1", port)
    async with websockets.connect(url, max_size=None) as ws:
        for n, reps in sizes.items():
            raw = chain(n)
            floors = [await floor_run(raw) for _ in range(max(3, reps))]
            lib_times: list[float] = []
            await ws_run(ws, raw)  # warm-up
            await drain_broadcasts(ws)
            for _ in range(reps):
                seconds, _ = await ws_run(ws, raw)
                lib_times.append(seconds)
                await drain_broadcasts(ws)
            times: list[float] = []
            frames = 0
            for _ in range(reps):
                seconds, frames = await lean_run(lean, raw)
                times.append(seconds)
                await lean_drain(lean)
            lib = statistics.median(lib_times)
            med = statistics.median(times)
            floor = statistics.median(floors)
            per_node[n] = med / n * 1e6
            rows.append(
                f"chain {n:>5} | e2e median {med * 1e3:8.2f} ms  p90 {pct(times, 90) * 1e3:8.2f} ms "
                f"{per_node[n]:6.1f} us/node | websockets-library client {lib * 1e3:8.2f} ms "
                f"({lib / n * 1e6:6.1f} us/node) | floor {floor * 1e3:7.2f} ms ({floor / n * 1e6:5.1f} us/node) | "
                f"e2e/floor {med / floor:5.1f} | frames {frames}"
            )
            print(rows[-1], flush=True)
    await lean.close()
    return per_node


async def bench_wide(url: str, rows: list[str]) -> float:
    raw = wide_sleep(50, 0.05)
    floor = min([await floor_run(raw) for _ in range(3)])
    async with websockets.connect(url, max_size=None) as ws:
        await ws_run(ws, raw)
        await drain_broadcasts(ws)
        times = []
        for _ in range(5):
            seconds, _ = await ws_run(ws, raw)
            times.append(seconds)
            await drain_broadcasts(ws)
    med = statistics.median(times)
    rows.append(
        f"50 x 50 ms I/O | e2e median {med * 1e3:7.1f} ms = {med / 0.05:4.2f} x one wait (target < 2x; "
        f"the original is sequential: ~50x = 2500 ms) | floor {floor * 1e3:7.1f} ms"
    )
    print(rows[-1], flush=True)
    return med / 0.05


async def bench_burst(url: str, rows: list[str]) -> float:
    raw = chain(3)
    floor_each = statistics.median([await floor_run(raw) for _ in range(50)])
    results = []
    async with websockets.connect(url, max_size=None) as ws:
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(100):
                await ws.send(json.dumps({"type": "PROMPT_REQUEST", "payload": raw}))
            done = 0
            while done < 100:
                message = json.loads(await ws.recv())
                if message["type"] == "EXECUTION_STATUS_UPDATE" and message["payload"]["status"] in ("complete", "error"):
                    done += 1
            results.append(time.perf_counter() - start)
            await drain_broadcasts(ws)
    med = statistics.median(results)
    rows.append(
        f"100 x 3-node prompts back to back on one socket | median {med * 1e3:7.1f} ms -> {100 / med:7.0f} prompts/s | "
        f"floor {floor_each * 100 * 1e3:6.1f} ms | e2e/floor {med / (floor_each * 100):4.1f}"
    )
    print(rows[-1], flush=True)
    return med


async def bench_responsive(base: str, rows: list[str]) -> float:
    raw = chain(10000, "t:Spin", {"micros": 100})
    floor = await floor_run(raw)
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        await client.get("/api/system_stats")
        response = await client.post("/api/prompt", json=raw)
        response.raise_for_status()
        prompt_id = response.json()["promptId"]
        run_start = time.perf_counter()
        while True:
            start = time.perf_counter()
            stats = await client.get("/api/system_stats")
            latencies.append(time.perf_counter() - start)
            if stats.json()["runningExecutions"] == 0:
                break
            await anyio.sleep(0.005)
        run_seconds = time.perf_counter() - run_start
        status = (await client.get(f"/api/prompt/{prompt_id}")).json()["status"]
    p50, p99, worst = pct(latencies, 50), pct(latencies, 99), max(latencies)
    rows.append(
        f"GET /api/system_stats during a 10000-node CPU-only run ({run_seconds:.2f} s, {status}; floor {floor:.2f} s) | "
        f"{len(latencies)} requests: p50 {p50 * 1e3:5.2f} ms  p99 {p99 * 1e3:5.2f} ms  max {worst * 1e3:5.2f} ms "
        f"(target p99 < 50 ms; the original answers only after the run)"
    )
    print(rows[-1], flush=True)
    return p99


def start_server(port: int, data: str, ws: str = "serve") -> subprocess.Popen[bytes]:
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.engine.server", "--port", str(port), "--data", data, "--ws", ws],
        cwd=root,
        env=env,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("benchmark server exited during start-up")
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("benchmark server did not become ready")


async def main_async(quick: bool) -> int:
    rows: list[str] = []
    per_node: dict[str, dict[int, float]] = {}
    wide = p99 = 0.0
    for ws in ("serve", "uvicorn-default"):
        port = free_port()
        print(f"-- server WebSocket settings: {ws}" + (
            " (as `comfytavern serve`: frame-coalescing protocol, no per-message deflate)" if ws == "serve"
            else " (uvicorn's default protocol, for comparison)"), flush=True)
        with tempfile.TemporaryDirectory() as data:
            proc = start_server(port, data, ws)
            try:
                per_node[ws] = await bench_chains(f"ws://127.0.0.1:{port}/ws", quick, rows)
                if ws == "serve":
                    wide = await bench_wide(f"ws://127.0.0.1:{port}/ws", rows)
                    await bench_burst(f"ws://127.0.0.1:{port}/ws", rows)
                    p99 = await bench_responsive(f"http://127.0.0.1:{port}", rows)
            finally:
                proc.terminate()
                proc.wait(timeout=10)
    print()
    print("targets:")
    served = per_node["serve"][1000]
    checks = [
        (served <= 30, f"1000-node chain end to end: {served:.1f} us/node as served "
                       f"({per_node['uvicorn-default'][1000]:.1f} with uvicorn's default protocol); "
                       "target <= 30"),
        (wide < 2, f"50-wide I/O graph {wide:.2f} x one wait (target < 2)"),
        (p99 < 0.05, f"status p99 {p99 * 1e3:.1f} ms during the big CPU-only run (target < 50 ms)"),
    ]
    for ok, text in checks:
        print(f"  [{'met' if ok else 'MISSED'}] {text}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    sys.exit(asyncio.run(main_async(args.quick)))


if __name__ == "__main__":
    main()
