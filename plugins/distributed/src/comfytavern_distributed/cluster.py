"""A local cluster of real processes: ``comfytavern serve`` instances and ``comfytavern worker``
processes sharing one PostgreSQL schema and one Redis prefix. Used by the multi-process test and
the benchmark; handy for trying the topology by hand too::

    with LocalCluster(tmp, dsn=..., schema=..., redis_url=..., prefix=...) as cluster:
        a = cluster.start_server("a")
        w = cluster.start_worker("w1", concurrency=4)
        ...  # talk to a.url over HTTP / WebSocket

Every process gets its own config file and data folder under ``root``; every process is stopped
when the block ends (SIGTERM, then SIGKILL after a grace period). Node packs: everything installed,
plus the folders in ``node_paths`` (tests pass the engine's test nodes as
``comfytavern_testnodes.node_folder(root)``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.error import URLError
from urllib.request import urlopen

from comfytavern_distributed.worker import READY_LINE

__all__ = ["LocalCluster", "Proc", "free_port"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text("utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (a crashed machine)."""
        if self.alive():
            self.popen.kill()
        self.popen.wait(timeout=10)

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        return self.popen.returncode


@dataclass
class LocalCluster:
    root: Path
    dsn: str
    schema: str
    redis_url: str
    prefix: str
    #: ``plugins.settings.distributed`` for every process (merged over the defaults below).
    distributed: dict[str, Any] = field(default_factory=dict)
    node_paths: list[Path] = field(default_factory=list)
    log_level: str = "WARNING"
    procs: dict[str, Proc] = field(default_factory=dict)

    def __enter__(self) -> LocalCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop_all()

    # -- configuration ---------------------------------------------------------------------
    def config(
        self,
        name: str,
        *,
        port: int | None = None,
        execute: bool = False,
        storage: dict[str, Any] | None = None,
        **distributed: Any,
    ) -> Path:
        """Write ``<root>/<name>/config.json``; ``storage`` replaces the shared PostgreSQL storage
        (e.g. the embedded defaults for a single-process baseline)."""
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        settings = {
            "enabled": True,
            "redis_url": self.redis_url,
            "prefix": self.prefix,
            "execute": execute,
            "instance_id": name,
            **self.distributed,
            **distributed,
        }
        config = {
            "server": {"host": "127.0.0.1", "port": port or 3233},
            "data": {"root": str(folder)},
            "nodes": {"custom_paths": [str(p) for p in self.node_paths]},
            "storage": storage
            or {
                "projects": "postgres",
                "accounts": "postgres",
                "runs": "postgres",
                "settings": {"postgres": {"dsn": self.dsn, "schema": self.schema, "min_size": 1, "max_size": 5}},
            },
            "plugins": {"settings": {"distributed": settings}},
            "logging": {"level": self.log_level, "format": "text"},
        }
        path = folder / "config.json"
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        return path

    def _spawn(self, name: str, args: list[str], port: int | None) -> Proc:
        log = self.root / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CT_")}
        env["PYTHONUNBUFFERED"] = "1"
        handle = log.open("ab")
        try:
            popen = subprocess.Popen(
                [sys.executable, "-m", "comfytavern", *args],
                cwd=self.root / name,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        finally:
            handle.close()
        proc = Proc(name, popen, log, port)
        self.procs[name] = proc
        return proc

    # -- processes -------------------------------------------------------------------------
    def start_server(
        self,
        name: str,
        *,
        execute: bool = False,
        storage: dict[str, Any] | None = None,
        timeout: float = 60.0,
        **distributed: Any,
    ) -> Proc:
        """``comfytavern serve`` on a free port; returns once ``/readyz`` answers 200.

        ``enabled=False`` gives a plain single-process server (the in-process engine)."""
        port = free_port()
        config = self.config(name, port=port, execute=execute, storage=storage, **distributed)
        proc = self._spawn(name, ["serve", "--config", str(config)], port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"server {name} exited with {proc.popen.returncode}:\n{proc.tail()}")
            try:
                with urlopen(f"{proc.url}/readyz", timeout=1.0) as response:  # noqa: S310 - loopback
                    if response.status == 200:
                        return proc
            except (URLError, OSError):
                pass
            time.sleep(0.1)
        proc.kill()
        raise RuntimeError(f"server {name} not ready within {timeout} s:\n{proc.tail()}")

    def start_worker(self, name: str, *, concurrency: int | None = None, timeout: float = 60.0, **distributed: Any) -> Proc:
        """``comfytavern worker``; returns once it printed its ready line."""
        config = self.config(name, execute=True, **distributed)
        args = ["worker", "--config", str(config)]
        if concurrency is not None:
            args += ["--concurrency", str(concurrency)]
        proc = self._spawn(name, args, None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if READY_LINE in proc.tail(200):
                return proc
            if not proc.alive():
                raise RuntimeError(f"worker {name} exited with {proc.popen.returncode}:\n{proc.tail()}")
            time.sleep(0.05)
        proc.kill()
        raise RuntimeError(f"worker {name} not ready within {timeout} s:\n{proc.tail()}")

    def stop_all(self) -> None:
        for proc in list(self.procs.values()):
            if proc.alive():
                proc.popen.send_signal(signal.SIGTERM)
        for proc in list(self.procs.values()):
            proc.stop()

    def logs(self) -> str:
        return "\n\n".join(f"--- {p.name} (exit {p.popen.poll()}) ---\n{p.tail()}" for p in self.procs.values())
