"""comfytavern.proxies: forwarded client addresses are believed only from server.trusted_proxies,
in the app and in the uvicorn settings of ``comfytavern serve``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.websockets import WebSocket

from comfytavern import hookimpl, json_response, route
from comfytavern.config import ConfigError
from comfytavern.http import websocket_route
from comfytavern.proxies import forwarded_untrusted
from comfytavern_testing import NO_STORAGE, client_for, live_server, make_kernel


class Probe:
    @hookimpl
    def register_routes(self, kernel: Any) -> list[Any]:
        async def whoami(request: Request) -> Any:
            client = request.client
            return json_response(
                {"host": client.host if client else None, "scheme": request.url.scheme, "untrusted": forwarded_untrusted(request)}
            )

        async def ws_whoami(websocket: WebSocket) -> None:
            await websocket.accept()
            client = websocket.client
            await websocket.send_json({"host": client.host if client else None, "scheme": websocket.url.scheme})
            await websocket.close()

        return [
            route("/api/whoami", whoami, auth="public"),
            websocket_route("/ws-whoami", ws_whoami, summary="probe", auth="public"),
        ]


def make(tmp_path: Path, **server: Any) -> Any:
    return make_kernel(tmp_path, plugins=[Probe()], storage=NO_STORAGE, server=server)


def test_forwarded_headers_from_a_peer_that_is_not_trusted_change_nothing(tmp_path: Path) -> None:
    with client_for(make(tmp_path), client=("127.0.0.1", 50000)) as client:
        for fake in ("203.0.113.7", "198.51.100.1", "10.9.9.9, 127.0.0.1"):
            body = client.get("/api/whoami", headers={"X-Forwarded-For": fake, "X-Forwarded-Proto": "https"}).json()
            assert body == {"host": "127.0.0.1", "scheme": "http", "untrusted": True}
        assert client.get("/api/whoami").json()["untrusted"] is False


def test_a_trusted_proxy_sets_the_client_address_and_scheme(tmp_path: Path) -> None:
    kernel = make(tmp_path, trusted_proxies=["10.0.0.0/24", "::1"])
    with client_for(kernel, client=("10.0.0.2", 50000)) as proxy:
        body = proxy.get("/api/whoami", headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}).json()
        assert body == {"host": "203.0.113.7", "scheme": "https", "untrusted": False}
        # A client cannot smuggle an address in front of the proxy's own entry: the right-most
        # address no trusted proxy added is the client.
        chained = proxy.get("/api/whoami", headers={"X-Forwarded-For": "1.2.3.4, 203.0.113.9"}).json()
        assert chained["host"] == "203.0.113.9"
        assert proxy.get("/api/whoami").json()["host"] == "10.0.0.2"  # no header: the peer itself
        with proxy.websocket_connect("/ws-whoami", headers={"X-Forwarded-For": "203.0.113.8", "X-Forwarded-Proto": "https"}) as ws:
            assert ws.receive_json() == {"host": "203.0.113.8", "scheme": "wss"}
    with client_for(kernel, client=("10.0.1.2", 50000)) as outsider:
        body = outsider.get("/api/whoami", headers={"X-Forwarded-For": "203.0.113.7"}).json()
        assert body == {"host": "10.0.1.2", "scheme": "http", "untrusted": True}


def test_the_first_untrusted_forwarder_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="comfytavern.proxies"):
        with client_for(make(tmp_path), client=("127.0.0.1", 50000)) as client:
            for _ in range(3):
                client.get("/api/whoami", headers={"X-Forwarded-For": "203.0.113.7"})
    warnings = [r for r in caplog.records if r.name == "comfytavern.proxies"]
    assert len(warnings) == 1 and "server.trusted_proxies" in warnings[0].getMessage()


def test_bad_trusted_proxy_entries_stop_start_up_naming_them(tmp_path: Path) -> None:
    for bad in ("10.0.0.1/8", "proxy.example", "*", ""):
        with pytest.raises(ConfigError, match=r"\$\.server\.trusted_proxies\[1\]"):
            make(tmp_path, trusted_proxies=["127.0.0.1", bad])


def test_the_served_app_ignores_forwarded_headers_from_loopback_by_default(tmp_path: Path) -> None:
    """uvicorn on its own believes X-Forwarded-For from 127.0.0.1; the serve settings must not."""
    with live_server(make(tmp_path)) as base:
        answer = httpx.get(f"{base}/api/whoami", headers={"X-Forwarded-For": "203.0.113.7"}, timeout=30)
        assert answer.json()["host"] == "127.0.0.1"
    with live_server(make(tmp_path, trusted_proxies=["127.0.0.1"])) as base:
        answer = httpx.get(f"{base}/api/whoami", headers={"X-Forwarded-For": "203.0.113.7"}, timeout=30)
        assert answer.json()["host"] == "203.0.113.7"
