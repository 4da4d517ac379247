"""Real-browser end-to-end tests: the seed-era editor build, served by a real ``comfytavern serve``.

Each test gets a fresh server (its own data folder, default configuration plus the build's
``dist``; ``editor.dialect`` stays ``auto``), Debian's chromium driven by Playwright for Python,
and a private network namespace in which the page's fixed port 3233 reaches that server
(``netns.py``). Every HTTP 4xx/5xx, failed request, page error and console error the page
produces is collected; a test fails on any that is not listed in :data:`EXPECTED` with a reason.

Skipped, with the reason in the summary, when the build, chromium, Playwright or network
namespaces are missing. ``python3 scripts/dev.py test`` installs chromium (as root, with apt-get)
and Playwright (the dev extra); the build is looked up by ``comfytavern_testing.seed_frontend_dist``
(``$CT_SEED_FRONTEND``, or ``shared/frontends/comfytavern-2025-06/dist`` beside the repository).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from comfytavern_testing import SEED_FRONTEND_ENV, fake_openai, seed_frontend_dist

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHROMIUM = Path("/usr/bin/chromium")
EDITOR = "http://localhost:3233"

#: Problems the seed-era build always produces, each with the reason it is not ours to fix.
EXPECTED: list[tuple[str, str]] = [
    (
        r"^404 GET http://localhost:3233/img/default-avatar\.png$",
        "the seed build references /img/default-avatar.png, which its public/ folder never had "
        "(the original backend showed the same 404)",
    ),
    (
        r"^console: Failed to load resource: the server responded with a status of 404 \(Not Found\)$",
        "the browser's own console line for that same missing image",
    ),
]


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


netns = _load("comfytavern_e2e_netns", HERE / "netns.py")


def _skip_reason() -> str | None:
    if seed_frontend_dist() is None:
        return (
            "no seed-era editor build: set CT_SEED_FRONTEND to its dist folder or place it at "
            "shared/frontends/comfytavern-2025-06/dist beside the repository"
        )
    if not CHROMIUM.is_file():
        return "Debian's chromium is not installed: apt-get install -y chromium (scripts/dev.py test does it as root)"
    if importlib.util.find_spec("playwright") is None:
        return "Playwright for Python is missing: pip install -e '.[dev]' (scripts/dev.py test does it)"
    return netns.namespace_unavailable()


SKIP_REASON = _skip_reason()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
            if SKIP_REASON is not None:
                item.add_marker(pytest.mark.skip(reason=f"e2e: {SKIP_REASON}"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A ``comfytavern serve`` process on a random loopback port."""

    root: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.loads(response.read())

    def put(self, path: str, body: Any) -> Any:
        request = urllib.request.Request(
            self.url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="PUT"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def log(self) -> str:
        return (self.root / "serve.log").read_text(encoding="utf-8", errors="replace")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    dist = seed_frontend_dist()
    assert dist is not None
    config = {"plugins": {"settings": {"static-frontend": {"dist": str(dist)}}}}
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CT_") or k == SEED_FRONTEND_ENV}
    with (tmp_path / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "comfytavern", "serve", "--config", str(tmp_path / "config.json"), "--port", str(port)],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    srv = Server(tmp_path, port, process)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if srv.get("/readyz").get("status") == "ready":
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"comfytavern serve did not start:\n{srv.log()}")
            time.sleep(0.1)
        yield srv
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@dataclass
class Problems:
    """Every HTTP error, failed request, page error and console error the page produced."""

    seen: list[str] = field(default_factory=list)

    def unexpected(self, extra: list[tuple[str, str]] = ()) -> list[str]:  # type: ignore[assignment]
        rules = [re.compile(pattern) for pattern, _reason in [*EXPECTED, *extra]]
        return [p for p in self.seen if not any(rule.search(p) for rule in rules)]


@dataclass
class Editor:
    """The browser page plus what it produced (problems, WebSocket frames with their times)."""

    page: Any
    server: Server
    problems: Problems
    frames: list[tuple[float, dict[str, Any]]]

    def open(self, path: str = "/") -> None:
        self.page.goto(EDITOR + path)

    def assert_clean(self, *expected: tuple[str, str]) -> None:
        unexpected = self.problems.unexpected(list(expected))
        assert not unexpected, "unexpected HTTP errors / console errors:\n" + "\n".join(unexpected)


@pytest.fixture
def editor(server: Server, tmp_path: Path) -> Iterator[Editor]:
    from playwright.sync_api import sync_playwright

    with netns.private_editor_port(tmp_path, server.port) as ns, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(ns.launcher), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1400}, locale="zh-CN")
        page.set_default_timeout(15_000)
        problems = Problems()
        frames: list[tuple[float, dict[str, Any]]] = []

        def on_response(response: Any) -> None:
            if response.status >= 400:
                problems.seen.append(f"{response.status} {response.request.method} {response.url}")

        def on_console(message: Any) -> None:
            if message.type == "error":
                problems.seen.append(f"console: {message.text}")

        def on_socket(ws: Any) -> None:
            def received(payload: Any) -> None:
                with contextlib.suppress(ValueError, TypeError):
                    frames.append((time.monotonic(), json.loads(payload)))

            ws.on("framereceived", received)

        page.on("response", on_response)
        page.on("console", on_console)
        page.on("pageerror", lambda exc: problems.seen.append(f"pageerror: {exc}"))
        page.on("requestfailed", lambda r: problems.seen.append(f"failed {r.method} {r.url}: {r.failure}"))
        page.on("websocket", on_socket)
        try:
            yield Editor(page, server, problems, frames)
        finally:
            browser.close()
    shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


@pytest.fixture
def fake_llm() -> Iterator[Any]:
    fake = fake_openai.FakeOpenAI().start()
    try:
        yield fake
    finally:
        fake.stop()
