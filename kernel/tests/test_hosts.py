"""Host-header check (DNS rebinding): loopback names only when listening on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfytavern.hosts import effective_allowed_hosts, host_allowed
from comfytavern_testing import NO_STORAGE, client_for, make_config, make_kernel

LOOPBACK = ["localhost", "*.localhost", "loopback-addresses"]


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("localhost:3233", True),
        ("LOCALHOST", True),
        ("127.0.0.1:3233", True),
        ("127.0.0.7", True),
        ("[::1]:3233", True),
        ("app.localhost:3233", True),
        ("evil.example:3233", False),
        ("localhost.evil.example", False),
        ("10.0.0.5:3233", False),
        ("", False),
    ],
)
def test_loopback_hosts(host: str, ok: bool) -> None:
    assert host_allowed(host, LOOPBACK) is ok


def test_effective_hosts(tmp_path: Path) -> None:
    assert effective_allowed_hosts(make_config(tmp_path)) == LOOPBACK
    assert effective_allowed_hosts(make_config(tmp_path, server={"host": "0.0.0.0"})) is None
    assert effective_allowed_hosts(make_config(tmp_path, server={"host": "0.0.0.0", "allowed_hosts": ["ct.example.org"]})) == ["ct.example.org"]


def test_rebinding_request_is_refused(tmp_path: Path) -> None:
    kernel = make_kernel(tmp_path, storage=NO_STORAGE)
    with client_for(kernel) as client:
        assert client.get("/healthz").status_code == 200
        r = client.get("/healthz", headers={"host": "attacker.example:3233"})
        assert r.status_code == 400
        assert r.json()["error"] == "host 'attacker.example:3233' is not allowed (see server.allowed_hosts)"
        from starlette.websockets import WebSocketDisconnect

        with pytest.raises(WebSocketDisconnect) as info:
            with client.websocket_connect("/ws", headers={"host": "attacker.example"}):
                pass
        assert info.value.code == 1008


def test_any_host_when_configured(tmp_path: Path) -> None:
    kernel = make_kernel(tmp_path, storage=NO_STORAGE, server={"allowed_hosts": ["*"]})
    with client_for(kernel) as client:
        assert client.get("/healthz", headers={"host": "anything.example"}).status_code == 200
