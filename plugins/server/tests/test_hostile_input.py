"""Hostile input against the assembled server on a real socket: every JSON route, every
state-changing route and the WebSocket answer a clear 4xx (or an ``error`` message), never a 5xx
or a dropped connection.

The routes come from the server's own ``/openapi.json``, so a route added later is covered too.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
import websockets.exceptions
import websockets.sync.client as ws_client

from comfytavern import http as ct_http
from comfytavern.app import create_app

MAX_JSON_DEPTH = getattr(ct_http, "MAX_JSON_DEPTH", 128)

UNSAFE = ("post", "put", "patch", "delete")


def deep_array(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def deep_in_field(depth: int) -> bytes:
    """An object whose ``name`` (and ``nodes``) hold the deep value: past any top-level type check."""
    inner = deep_array(depth)
    return b'{"name": ' + inner + b', "nodes": ' + inner + b', "id": "x"}'


def _fill(path: str) -> str:
    """A concrete URL for a path template (every parameter ``probe``)."""
    out, _, rest = path.partition("{")
    while _:
        _, _, rest = rest.partition("}")
        out += "probe"
        chunk, _, rest = rest.partition("{")
        out += chunk
    return out


def _operations(base_url: str) -> list[tuple[str, str, dict[str, Any]]]:
    spec = httpx.get(f"{base_url}/openapi.json").json()
    return [
        (method, path, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if not op.get("x-websocket")
    ]


def _json_body_operations(base_url: str) -> list[tuple[str, str]]:
    """Every operation with a JSON body the caller can reach: all of them in ``local``; in the
    login modes (no credentials here) the public ones: login, registration, set-up."""
    spec = httpx.get(f"{base_url}/openapi.json").json()
    local = "/api/auth/login" not in spec["paths"]
    found = [
        (method, path)
        for method, path, op in _operations(base_url)
        if "application/json" in op.get("requestBody", {}).get("content", {})
        and (local or op.get("x-auth") == "public")
    ]
    assert len(found) >= (8 if local else 2), found  # projects, workflows, prompt, keys... / login, setup
    return found


@pytest.fixture(params=["local", "local-password", "multi-user"])
def base_url(request: Any, make_full_kernel: Any, serve: Any) -> Any:
    with serve(create_app(make_full_kernel(auth={"mode": request.param}))) as url:
        yield url


@pytest.fixture
def local_url(make_full_kernel: Any, serve: Any) -> Any:
    with serve(create_app(make_full_kernel())) as url:
        yield url


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 990, 1000, 50_000])
def test_deeply_nested_json_is_a_400_on_every_json_route(base_url: str, depth: int, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, logger="comfytavern.http")
    bad: list[str] = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for method, path in _json_body_operations(base_url):
            # Card uploads answer every unreadable card with 422 (an array is not a card at all).
            card = path == "/api/characters/import"
            for body in (deep_array(depth), deep_in_field(depth)):
                r = client.request(method.upper(), _fill(path), content=body, headers={"Content-Type": "application/json"})
                if card:
                    ok = r.status_code == 422 and ("nested" in r.text or body.startswith(b"["))
                elif path.startswith("/v1/"):  # OpenAI's error shape: {"error": {"message", ...}}
                    ok = r.status_code == 400 and "nested" in r.json()["error"]["message"]
                else:
                    ok = r.status_code == 400 and r.json().get("details") is not None and "nested" in r.text
                if not ok:
                    bad.append(f"{method.upper()} {path}: {r.status_code} {r.text[:200]}")
    assert not bad, "\n".join(bad)
    assert any("nested deeper than" in rec.getMessage() for rec in caplog.records), "the refusal is not logged"


def test_nesting_up_to_the_limit_is_accepted(local_url: str) -> None:
    base_url = local_url
    value: Any = "leaf"
    for _ in range(MAX_JSON_DEPTH - 2):
        value = [value]
    body = {"name": "deep-but-fine", "description": "nested config", "customMetadata": {"v": value}}
    r = httpx.post(f"{base_url}/api/projects", json=body, timeout=30)
    assert r.status_code == 201, r.text
    project = r.json()
    got = httpx.get(f"{base_url}/api/projects/{project['id']}/metadata", timeout=30)
    assert got.status_code == 200 and got.json()["customMetadata"] == {"v": value}


def test_deep_websocket_message_gets_an_error_reply_and_the_socket_stays_open(local_url: str, caplog: Any) -> None:
    base_url = local_url
    caplog.set_level(logging.WARNING, logger="comfytavern.http")
    url = base_url.replace("http://", "ws://") + "/ws"
    with ws_client.connect(url, open_timeout=10, close_timeout=5) as ws:
        for depth in (1000, 50_000, MAX_JSON_DEPTH + 1):
            deep = deep_array(depth).decode()
            ws.send(f'{{"type": "PROMPT_REQUEST", "payload": {deep}}}')
            reply = _next_error(ws)
            assert "nested deeper than" in json.dumps(reply["payload"]), reply
        # Still open and still answering.
        ws.send(json.dumps({"type": "NO_SUCH_TYPE", "payload": {}}))
        assert _next_error(ws)["payload"]["message"] == "Unknown message type: NO_SUCH_TYPE"
    assert any("WebSocket message nested deeper" in rec.getMessage() for rec in caplog.records)


def _next_error(ws: Any) -> dict[str, Any]:
    for _ in range(20):
        message = json.loads(ws.recv(timeout=10))
        if message["type"] == "error":
            return message
    raise AssertionError("no error reply")


MALFORMED_ORIGINS = ["http://a:b", "http://[::1", "http://127.0.0.1:99999999999", "http://127.0.0.1:3233/x"]


def _state_changing_operations(base_url: str) -> list[tuple[str, str]]:
    found = [(method, path) for method, path, _ in _operations(base_url) if method in UNSAFE]
    assert len(found) >= 15, found
    return found


def test_malformed_or_other_scheme_origins_are_refused_on_every_state_changing_route(base_url: str) -> None:
    same_host = base_url.removeprefix("http://")
    bad: list[str] = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for method, path in _state_changing_operations(base_url):
            for origin in [*MALFORMED_ORIGINS, f"https://{same_host}"]:
                r = client.request(method.upper(), _fill(path), json={}, headers={"Origin": origin})
                if r.status_code != 403 or r.json()["error"] != "cross-site request refused":
                    bad.append(f"{method.upper()} {path} Origin {origin}: {r.status_code} {r.text[:200]}")
        # The server's own origin still gets through the check (the check refuses, it does not break).
        r = client.put("/api/users/me/username", json={"username": "same-origin"}, headers={"Origin": base_url})
        assert r.status_code in (200, 401), r.text
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("origin", [*MALFORMED_ORIGINS, "https://{host}"])
def test_websocket_handshake_with_a_malformed_or_other_scheme_origin_is_a_403(local_url: str, origin: str) -> None:
    base_url = local_url
    host = base_url.removeprefix("http://")
    url = f"ws://{host}/ws"
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        ws_client.connect(url, origin=origin.format(host=host), open_timeout=10)  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    with ws_client.connect(url, origin=base_url, open_timeout=10) as ws:  # type: ignore[arg-type]
        ws.send(json.dumps({"type": "NO_SUCH_TYPE", "payload": {}}))
        assert _next_error(ws)["payload"]["message"] == "Unknown message type: NO_SUCH_TYPE"


def test_a_body_not_declared_as_json_is_a_415_on_every_json_route(base_url: str) -> None:
    bad: list[str] = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for method, path in _json_body_operations(base_url):
            for content_type in ("text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded"):
                r = client.request(method.upper(), _fill(path), content=b"{}", headers={"Content-Type": content_type})
                if r.status_code != 415:
                    bad.append(f"{method.upper()} {path} {content_type}: {r.status_code} {r.text[:200]}")
    assert not bad, "\n".join(bad)
