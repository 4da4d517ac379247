"""``scripts/dev.py``: the test services are only managed at their default loopback addresses,
deselected services are left alone, and running ones are not touched."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def dev(monkeypatch: pytest.MonkeyPatch) -> Any:
    spec = importlib.util.spec_from_file_location("ct_dev_script", ROOT / "scripts" / "dev.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    started: list[list[str]] = []

    def fake_run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        started.append([str(c) for c in cmd])
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(module.subprocess, "run", fake_run)
    module.started = started
    return module


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_server_at_another_address_is_reported_not_started(dev: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    port = closed_port()
    monkeypatch.setenv("CT_TEST_POSTGRES_DSN", f"postgresql://postgres@127.0.0.1:{port}/test")
    monkeypatch.setenv("CT_TEST_REDIS_URL", f"redis://127.0.0.1:{port}/0")
    dev.ensure_test_services([])
    err = capsys.readouterr().err
    assert f"PostgreSQL does not answer at 127.0.0.1:{port}" in err and f"Redis does not answer at 127.0.0.1:{port}" in err
    assert dev.started == []  # never starts or installs anything for an address it does not own


def test_deselected_services_are_left_alone(dev: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    port = closed_port()
    monkeypatch.setenv("CT_TEST_POSTGRES_DSN", f"postgresql://postgres@127.0.0.1:{port}/test")
    monkeypatch.setenv("CT_TEST_REDIS_URL", f"redis://127.0.0.1:{port}/0")
    dev.ensure_test_services(["-m", "not postgres and not redis"])
    assert capsys.readouterr().err == "" and dev.started == []


def test_a_stopped_local_server_is_started(dev: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CT_TEST_REDIS_URL", raising=False)
    monkeypatch.setattr(dev, "_answers", lambda host, port: False)
    monkeypatch.setattr(dev, "_wait_for", lambda host, port, seconds=20: True)
    monkeypatch.setattr(dev.shutil, "which", lambda name: f"/usr/bin/{name}")
    dev.ensure_test_services(["-m", "not postgres"])
    assert dev.started and dev.started[0][:3] == ["redis-server", "--daemonize", "yes"]


def test_running_servers_are_not_touched(dev: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dev, "_answers", lambda host, port: True)
    dev.ensure_test_services([])
    assert dev.started == []
