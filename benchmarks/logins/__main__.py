"""Login benchmark: concurrent logins with the production Argon2id cost, over real HTTP.

    .venv/bin/python -m benchmarks.logins             # about half a minute
    .venv/bin/python -m benchmarks.logins --rounds 5

Starts ``comfytavern serve`` in its own process (``local-password`` mode, every setting at its
default, a fresh data folder, loopback only), sets the access password, and measures as a client:

- one login at a time (median of ``--rounds``);
- N correct logins sent at once (N = 10, 20, 50): time until the last answer, and its answers;
- 20 wrong passwords sent at once: how many got 401 (at most ``login_max_failures``, 5) and 429.

One derivation (64 MiB, 3 passes, 4 lanes) is measured in this process first, as the floor:
logins are serialised, so N at once take about N derivations.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from comfytavern_accounts.passwords import PasswordHasher

PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(data: Path, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, CT_AUTH_MODE="local-password", CT_DATA_DIR=str(data), CT_PORT=str(port), CT_HOST="127.0.0.1")
    env.pop("CT_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "comfytavern", "serve", "--config", str(data / "config.json")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start within 60 s")


async def login(base: str, password: str) -> tuple[int, float]:
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        started = time.perf_counter()
        answer = await client.post("/api/auth/login", json={"password": password})
        return answer.status_code, time.perf_counter() - started


async def at_once(base: str, passwords: list[str]) -> tuple[Counter[int], float]:
    started = time.perf_counter()
    results = await asyncio.gather(*(login(base, p) for p in passwords))
    return Counter(code for code, _ in results), time.perf_counter() - started


async def measure(base: str, rounds: int) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        assert (await client.post("/api/auth/setup", json={"password": PASSWORD})).status_code == 201
    singles = [(await login(base, PASSWORD))[1] for _ in range(rounds)]
    print(f"one login at a time: median {statistics.median(singles) * 1000:.0f} ms over {rounds}")
    for n in (10, 20, 50):
        counts, took = await at_once(base, [PASSWORD] * n)
        print(f"{n} correct logins at once: last answer after {took:.2f} s; answers {dict(counts)}")
    counts, took = await at_once(base, [f"wrong {i}" for i in range(20)])
    print(f"20 wrong passwords at once: {dict(counts)} after {took:.2f} s")
    code, took = await login(base, PASSWORD)
    print(f"the right password afterwards from that address (5 failures): {code} after {took * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPUs, load average {load}")
    hasher = PasswordHasher()
    encoded = hasher.hash_sync(PASSWORD)
    floor = []
    for _ in range(args.rounds):
        started = time.perf_counter()
        hasher.verify_sync(PASSWORD, encoded)
        floor.append(time.perf_counter() - started)
    print(f"one Argon2id verification (64 MiB, t=3, p=4) in-process: median {statistics.median(floor) * 1000:.0f} ms")
    with tempfile.TemporaryDirectory(prefix="ct-bench-logins-") as tmp:
        data = Path(tmp)
        (data / "config.json").write_text("{}", encoding="utf-8")
        port = free_port()
        proc = start_server(data, port)
        try:
            asyncio.run(measure(f"http://127.0.0.1:{port}", args.rounds))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
