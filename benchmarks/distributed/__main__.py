"""Distributed execution benchmark: runs per second and end-to-end latency of small runs with 1, 2
and 4 ``comfytavern worker`` processes, against the single-process engine, in one command.

    .venv/bin/python -m benchmarks.distributed            # full run (about a minute)
    .venv/bin/python -m benchmarks.distributed --quick    # fewer runs

Every configuration is a set of real processes on loopback (``LocalCluster``). The client (this
process) talks to one server over the WebSocket exactly as the editor does: ``PROMPT_REQUEST``,
then reads every frame until the run's final ``EXECUTION_STATUS_UPDATE``.

- single process: ``comfytavern serve`` with the in-process engine (distributed off), once with
  the embedded storage (SQLite) and once with the PostgreSQL storage the cluster uses;
- N workers: one web-only ``serve`` instance (``execute: false``) that queues on Redis, plus N
  ``comfytavern worker`` processes, all on one PostgreSQL schema.

Every executing process runs at most 5 runs at once (the default ``max_concurrent_workflows``;
``--concurrency 5`` for workers). Small runs: latency of runs one at a time (p50/p95 of send ->
final status) and throughput of ``--burst`` runs sent at once over 4 sockets (runs/s = burst /
time until the last final status). I/O-bound runs (one node awaiting 100 ms): throughput only,
which is where more workers add capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from comfytavern_distributed.cluster import LocalCluster
from comfytavern_testnodes import node_folder as node_folder_with_testnodes

FINAL = {"complete", "error", "interrupted"}
#: A frame that takes longer than this means something is broken: fail loudly, never hang.
RECV_TIMEOUT = 30.0

#: The small run: three async nodes (Const -> Add -> Add); 12 frames per run on the socket.
SMALL_RUN: dict[str, Any] = {
    "nodes": [
        {"id": "c", "fullType": "t:Const", "inputs": {"value": 1}},
        {"id": "a1", "fullType": "t:Add", "inputs": {"b": 2}},
        {"id": "a2", "fullType": "t:Add", "inputs": {"b": 3}},
    ],
    "edges": [
        {"id": "e1", "sourceNodeId": "c", "sourceHandle": "value", "targetNodeId": "a1", "targetHandle": "a"},
        {"id": "e2", "sourceNodeId": "a1", "sourceHandle": "result", "targetNodeId": "a2", "targetHandle": "a"},
    ],
}
REQUEST = json.dumps({"type": "PROMPT_REQUEST", "payload": SMALL_RUN})
#: The I/O-bound run: one node awaiting 100 ms (an LLM call stands in for this in real life).
IO_RUN: dict[str, Any] = {"nodes": [{"id": "s", "fullType": "t:Sleep", "inputs": {"seconds": 0.1, "value": 1}}]}
IO_REQUEST = json.dumps({"type": "PROMPT_REQUEST", "payload": IO_RUN})
#: Runs executed at once per process: the single server's ``execution.max_concurrent_workflows``
#: default, and each worker's ``--concurrency``, so every process has the same capacity.
PER_PROCESS = 5


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


async def recv(ws: ClientConnection) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)


async def run_one(ws: ClientConnection) -> float:
    """Seconds from sending one run to its final status (every frame read)."""
    start = time.perf_counter()
    await ws.send(REQUEST)
    prompt_id = None
    while True:
        message = json.loads(await recv(ws))
        payload = message.get("payload") or {}
        if message["type"] == "PROMPT_ACCEPTED_RESPONSE":
            prompt_id = payload["promptId"]
        elif message["type"] == "error":
            raise RuntimeError(f"server error: {payload}")
        elif (
            message["type"] == "EXECUTION_STATUS_UPDATE"
            and payload.get("promptId") == prompt_id
            and payload.get("status") in FINAL
        ):
            if payload["status"] != "complete":
                raise RuntimeError(f"run ended {payload['status']}: {payload}")
            return time.perf_counter() - start


async def burst(ws: ClientConnection, count: int, request: str = REQUEST) -> None:
    """Send ``count`` runs without waiting, then read until every one of them has finished."""
    for _ in range(count):
        await ws.send(request)
    accepted: set[str] = set()
    done = 0
    while done < count:
        try:
            message = json.loads(await recv(ws))
        except TimeoutError:
            raise RuntimeError(f"burst stalled: {len(accepted)} of {count} accepted, {done} finished") from None
        payload = message.get("payload") or {}
        if message["type"] == "PROMPT_ACCEPTED_RESPONSE":
            accepted.add(payload["promptId"])
        elif message["type"] == "error":
            raise RuntimeError(f"server error: {payload}")
        elif (
            message["type"] == "EXECUTION_STATUS_UPDATE"
            and payload.get("status") in FINAL
            and payload.get("promptId") in accepted
        ):
            if payload["status"] != "complete":
                raise RuntimeError(f"run ended {payload['status']}: {payload}")
            done += 1


async def throughput(ws_url: str, count: int, request: str) -> float:
    """Runs per second for ``count`` runs sent at once over 4 sockets."""
    sockets = [await connect(ws_url, max_size=None, compression=None) for _ in range(4)]
    try:
        share = [count // 4 + (1 if i < count % 4 else 0) for i in range(4)]
        start = time.perf_counter()
        await asyncio.gather(*(burst(ws, n, request) for ws, n in zip(sockets, share, strict=True)))
        return count / (time.perf_counter() - start)
    finally:
        for ws in sockets:
            await ws.close()


async def measure(ws_url: str, *, warmup: int, sequential: int, burst_size: int, io_burst: int) -> dict[str, float]:
    async with connect(ws_url, max_size=None, compression=None) as ws:
        for _ in range(warmup):
            await run_one(ws)
        latencies = [await run_one(ws) for _ in range(sequential)]
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": pct(latencies, 95) * 1000,
        "runs_per_s": await throughput(ws_url, burst_size, REQUEST),
        "io_runs_per_s": await throughput(ws_url, io_burst, IO_REQUEST),
    }


def services() -> tuple[str, str]:
    from comfytavern_testing_contracts.services import postgres_dsn, redis_url

    return postgres_dsn(), redis_url()


def check_services(dsn: str, url: str) -> None:
    import psycopg
    import redis

    try:
        with psycopg.connect(dsn, connect_timeout=3):
            pass
        client = redis.Redis.from_url(url, socket_connect_timeout=3)
        client.ping()
        client.close()
    except Exception as exc:  # noqa: BLE001 - report any connection problem plainly
        sys.exit(f"this benchmark needs PostgreSQL ({dsn}) and Redis ({url}): {exc}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.distributed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke test of the benchmark)")
    parser.add_argument("--workers", default="1,2,4", help="worker counts to measure (default 1,2,4)")
    parser.add_argument("--burst", type=int, default=None, help="runs sent at once for the throughput figure")
    args = parser.parse_args(argv)
    warmup, sequential = (5, 20) if args.quick else (20, 100)
    burst_size = args.burst or (40 if args.quick else 400)
    io_burst = 40 if args.quick else 200
    worker_counts = [int(n) for n in args.workers.split(",") if n.strip()]

    from comfytavern_testing_contracts.services import postgres_schema, redis_prefix

    dsn, url = services()
    check_services(dsn, url)
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    results: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="ct-bench-dist-") as tmp:
        root = Path(tmp)
        nodes = node_folder_with_testnodes(root)

        def cluster(name: str, schema: str, prefix: str) -> LocalCluster:
            return LocalCluster(root / name, dsn=dsn, schema=schema, redis_url=url, prefix=prefix, node_paths=[nodes])

        def report(label: str, figures: dict[str, float]) -> None:
            results.append((label, figures))
            print(
                f"  {label:<34} {figures['runs_per_s']:8.1f} runs/s   p50 {figures['p50_ms']:6.2f} ms"
                f"   p95 {figures['p95_ms']:6.2f} ms   |  I/O-bound {figures['io_runs_per_s']:6.1f} runs/s",
                flush=True,
            )

        async def go(proc_ws: str) -> dict[str, float]:
            return await measure(proc_ws, warmup=warmup, sequential=sequential, burst_size=burst_size, io_burst=io_burst)

        print(
            f"small runs (3 nodes): latency over {sequential} sequential runs, throughput over {burst_size} at once;\n"
            f"I/O-bound runs (one 100 ms await): throughput over {io_burst} at once; "
            f"{PER_PROCESS} runs at once per executing process",
            flush=True,
        )
        with postgres_schema(dsn) as schema, redis_prefix(url) as prefix:
            with cluster("single-sqlite", schema, prefix) as c:
                server = c.start_server("s", enabled=False, storage={"projects": "filesystem", "accounts": "sqlite", "runs": "sqlite"})
                report("single process, SQLite", asyncio.run(go(server.ws_url)))
            with cluster("single-pg", schema, prefix) as c:
                server = c.start_server("s", enabled=False)
                report("single process, PostgreSQL", asyncio.run(go(server.ws_url)))
        for count in worker_counts:
            with postgres_schema(dsn) as schema, redis_prefix(url) as prefix, cluster(f"w{count}", schema, prefix) as c:
                web = c.start_server("web", execute=False)
                for index in range(count):
                    c.start_worker(f"worker{index}", concurrency=PER_PROCESS)
                label = f"{count} worker{'s' if count > 1 else ''} + web instance (Redis)"
                report(label, asyncio.run(go(web.ws_url)))

    base = dict(results)["single process, PostgreSQL"]
    print("\nrelative to the single-process engine on the same PostgreSQL storage:")
    for label, figures in results:
        print(
            f"  {label:<34} throughput x{figures['runs_per_s'] / base['runs_per_s']:.2f}"
            f"   p50 latency x{figures['p50_ms'] / base['p50_ms']:.2f}"
            f"   I/O-bound throughput x{figures['io_runs_per_s'] / base['io_runs_per_s']:.2f}"
        )
    print(f"\nmachine: {os.cpu_count()} CPUs; every process shares them (client, servers, workers, PostgreSQL, Redis)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
