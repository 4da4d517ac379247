"""The server under test and the client helpers of the sustained-load benchmark.

The server is ``comfytavern serve`` from this checkout's ``.venv`` with the production defaults
(no config file), a fresh data folder and a free loopback port: exactly what a user starts.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

EXE = Path(sys.executable).with_name("comfytavern")


def _environment(overrides: dict[str, str | None]) -> dict[str, str]:
    merged = {**os.environ, **overrides}
    return {k: v for k, v in merged.items() if v is not None}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthz(base: str, timeout: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=timeout) as response:
            response.read()
            return response.status == 200
    except OSError:
        return False


class Served:
    """One ``comfytavern serve`` process."""

    def __init__(self, env: dict[str, str | None] | None = None) -> None:
        """``env`` is laid over this process's environment; a ``None`` value removes the variable."""
        self.port = free_port()
        self.data = tempfile.mkdtemp(prefix="ct-bench-")
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [str(EXE), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", self.data],
            cwd=self.data, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_environment(env or {}),
        )

    def wait_ready(self, limit: float = 60.0, step: float = 0.005) -> float:
        """Seconds from the spawn to the first ``/healthz`` 200."""
        while time.perf_counter() - self.started < limit:
            if healthz(self.base, timeout=1.0):
                return time.perf_counter() - self.started
            if self.proc.poll() is not None:
                raise RuntimeError(f"comfytavern serve exited with {self.proc.returncode}")
            time.sleep(step)
        raise RuntimeError("comfytavern serve did not answer /healthz")

    def cpu_ms(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def random_chain(n: int) -> dict[str, Any]:
    """A chain of ``core:RandomNumber`` nodes, as the editor sends it (the soak tool's graph)."""
    nodes = [{"id": "n0", "fullType": "core:RandomNumber", "inputs": {"mode": "固定", "value": 1}}]
    edges = []
    for i in range(1, n):
        nodes.append({"id": f"n{i}", "fullType": "core:RandomNumber", "inputs": {"mode": "固定"}})
        edges.append({"id": f"e{i}", "sourceNodeId": f"n{i - 1}", "sourceHandle": "number",
                      "targetNodeId": f"n{i}", "targetHandle": "value"})
    return {"nodes": nodes, "edges": edges, "interfaceInputs": {}, "interfaceOutputs": {}, "outputInterfaceMappings": {}}


def stream_chat(base_url: str, chunks: int) -> dict[str, Any]:
    """``core:APISettings → core:OpenAI (stream) → core:StreamSuffixRelay``."""
    return {
        "nodes": [
            {"id": "api", "fullType": "core:APISettings", "inputs": {"base_url": base_url, "api_key": "sk-bench"}},
            {"id": "llm", "fullType": "core:OpenAI",
             "inputs": {"model": f"chunks-{chunks}", "prompt": "hi", "stream": True, "max_tokens": 16384}},
            {"id": "relay", "fullType": "core:StreamSuffixRelay", "inputs": {"suffix": "!"}},
        ],
        "edges": [
            {"id": "e1", "sourceNodeId": "api", "sourceHandle": "api_settings", "targetNodeId": "llm", "targetHandle": "api_settings"},
            {"id": "e2", "sourceNodeId": "llm", "sourceHandle": "stream_output", "targetNodeId": "relay", "targetHandle": "inputStream"},
        ],
    }


def prompt(payload: dict[str, Any]) -> str:
    return json.dumps({"type": "PROMPT_REQUEST", "payload": payload})
