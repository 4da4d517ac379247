"""COMFYTAVERN_TRACE_HOOKS=1: every hook call is logged with plugin, duration and result size."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest

from comfytavern import HubEvent, hookimpl, json_response, route
from comfytavern.tracing import TRACE_ENV
from comfytavern_testing import NO_STORAGE, client_for, make_kernel

LINE = re.compile(r"hook (\w+) plugin=(\S+) (\d+\.\d{3}) ms (result_size=(\S+)|raised (\w+))")


class Traced:
    name = "traced"
    seen: list[str]

    def __init__(self) -> None:
        self.seen = []

    @hookimpl
    def register_routes(self, kernel: Any) -> list[Any]:
        async def ping(request: Any) -> Any:
            return json_response({"ok": True})

        return [
            route("/api/ping-a", ping, summary="a", auth="public"),
            route("/api/ping-b", ping, summary="b", auth="public"),
        ]

    @hookimpl
    def on_execution_event(self, event: HubEvent) -> None:
        self.seen.append(event.type)


class Broken:
    name = "broken"

    @hookimpl
    def register_commands(self, kernel: Any) -> list[Any]:
        raise RuntimeError("boom")


def _lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, ...]]:
    out = []
    for record in caplog.records:
        if record.name == "comfytavern.hooks":
            match = LINE.fullmatch(record.getMessage())
            assert match, record.getMessage()
            out.append(match.groups())
    return out


def test_every_hook_call_is_logged_with_plugin_duration_and_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(TRACE_ENV, "1")
    caplog.set_level(logging.INFO, logger="comfytavern.hooks")
    plugin = Traced()
    kernel = make_kernel(tmp_path, storage=NO_STORAGE, plugins=[plugin, Broken()])
    with client_for(kernel) as client:
        assert client.get("/api/ping-a").status_code == 200
        kernel.hub.emit("TEST_EVENT", {"n": 1})
        deadline = time.monotonic() + 10
        while "TEST_EVENT" not in plugin.seen and time.monotonic() < deadline:
            client.get("/healthz")
    kernel.commands()
    lines = _lines(caplog)
    routes = [line for line in lines if line[:2] == ("register_routes", "traced")]
    assert routes and routes[0][4] == "2" and float(routes[0][2]) >= 0.0
    assert ("register_commands", "broken") in {line[:2] for line in lines if line[5] == "RuntimeError"}
    assert ("on_execution_event", "traced") in {line[:2] for line in lines}
    hooks = {line[0] for line in lines}
    assert {"register_services", "register_auth_modes", "register_storage_backends", "lifespan"} <= hooks


def test_tracing_is_off_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(TRACE_ENV, raising=False)
    caplog.set_level(logging.INFO, logger="comfytavern.hooks")
    kernel = make_kernel(tmp_path, storage=NO_STORAGE, plugins=[Traced()])
    with client_for(kernel):
        pass
    monkeypatch.setenv(TRACE_ENV, "0")
    make_kernel(tmp_path, storage=NO_STORAGE, plugins=[Traced()])
    assert _lines(caplog) == []
