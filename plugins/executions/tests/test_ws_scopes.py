"""Service-key scopes over /ws are the HTTP routes' scopes: a real server, real keys, real sockets.

A key may do over the socket exactly what it may do over HTTP: ``PROMPT_REQUEST`` and
``INTERRUPT_REQUEST`` need ``runs:write`` (``POST /api/prompt``, ``POST /api/interrupt``),
``SUBSCRIBE_PROMPT``/``UNSUBSCRIBE_PROMPT`` need ``runs:read`` (``GET /api/prompt/{id}``). An
out-of-scope message gets an ``error`` reply with ``details.status`` 403 and the socket stays open.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

import comfytavern_testnodes as testnodes
from comfytavern.app import create_app
from comfytavern_testing import live_server, make_kernel

FINAL = {"complete", "error", "interrupted"}
ADD = {"nodes": [{"id": "r", "fullType": "t:Const", "inputs": {"value": 2}}], "edges": [], "metadata": {"internalId": "tab-1", "workflowId": "wf-1"}}
SLEEP = {"nodes": [{"id": "s", "fullType": "t:Sleep", "inputs": {"seconds": 30, "value": 1}}], "edges": []}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """The assembled server in the default ``local`` mode with accounts (so keys exist)."""
    kernel = make_kernel(
        tmp_path,
        node_packs=[testnodes],
        storage={"projects": None, "accounts": "sqlite", "runs": "sqlite"},
    )
    with live_server(create_app(kernel)) as base:
        yield base


def new_key(base: str, *scopes: str) -> str:
    response = httpx.post(f"{base}/api/users/me/service-keys", json={"name": "k", "scopes": list(scopes)}, timeout=10)
    assert response.status_code == 201, response.text
    return str(response.json()["secret"])


def socket(base: str, key: str | None = None) -> ClientConnection:
    headers = {"Authorization": f"Bearer {key}"} if key else None
    return connect(base.replace("http", "ws", 1) + "/ws", additional_headers=headers, open_timeout=10)


def send(ws: ClientConnection, type_: str, payload: Any) -> None:
    ws.send(json.dumps({"type": type_, "payload": payload}))


def recv(ws: ClientConnection) -> dict[str, Any]:
    return dict(json.loads(ws.recv(timeout=20)))


def next_of(ws: ClientConnection, type_: str) -> dict[str, Any]:
    """The payload of the next message of ``type_`` (skipping run events and broadcasts)."""
    while (message := recv(ws))["type"] != type_:
        pass
    return dict(message["payload"])


def next_error(ws: ClientConnection) -> dict[str, Any]:
    return next_of(ws, "error")


def until_final(ws: ClientConnection, prompt_id: str) -> list[dict[str, Any]]:
    seen = []
    while True:
        message = recv(ws)
        seen.append(message)
        if message["type"] == "EXECUTION_STATUS_UPDATE" and message["payload"]["promptId"] == prompt_id and message["payload"]["status"] in FINAL:
            return seen


def test_a_projects_read_key_runs_nothing_over_the_socket_as_over_http(server: str) -> None:
    key = new_key(server, "projects:read")
    auth = {"Authorization": f"Bearer {key}"}
    assert httpx.post(f"{server}/api/prompt", json=ADD, headers=auth, timeout=10).status_code == 403
    mine = httpx.post(f"{server}/api/prompt", json=ADD, timeout=10).json()["promptId"]  # the local user's run

    with socket(server, key) as ws:
        send(ws, "PROMPT_REQUEST", ADD)
        reply = recv(ws)
        assert reply == {
            "type": "error",
            "payload": {
                "message": "this API key lacks the scope 'runs:write'",
                "details": {"status": 403, "scope": "runs:write", "type": "PROMPT_REQUEST"},
                "internalId": "tab-1",
                "workflowId": "wf-1",
            },
        }
        send(ws, "INTERRUPT_REQUEST", {"promptId": mine})
        assert recv(ws)["payload"] == {
            "message": "this API key lacks the scope 'runs:write'",
            "details": {"status": 403, "scope": "runs:write", "type": "INTERRUPT_REQUEST"},
            "promptId": mine,
        }
        for type_ in ("SUBSCRIBE_PROMPT", "UNSUBSCRIBE_PROMPT"):
            send(ws, type_, {"promptId": mine})
            assert recv(ws)["payload"]["details"] == {"status": 403, "scope": "runs:read", "type": type_}
        send(ws, "button_click", {"nodeId": "n", "buttonName": "b"})
        assert recv(ws)["payload"]["details"] == {"status": 403, "scope": "runs:write", "type": "button_click"}
        # The socket is still open and the server unaffected: an unknown type still gets its reply.
        send(ws, "NOPE", {})
        assert recv(ws)["payload"]["message"] == "Unknown message type: NOPE"

    history = httpx.get(f"{server}/api/history", timeout=10).json()
    assert [item["promptId"] for item in history["items"]] == [mine]  # the key created no run


def test_a_runs_read_key_watches_but_cannot_run_or_interrupt(server: str) -> None:
    key = new_key(server, "runs:read")
    sleeping = httpx.post(f"{server}/api/prompt", json=SLEEP, timeout=10).json()["promptId"]
    with socket(server, key) as ws:
        send(ws, "SUBSCRIBE_PROMPT", {"promptId": sleeping})
        assert recv(ws)["type"] == "EXECUTION_STATUS_UPDATE"  # the replay: allowed
        send(ws, "INTERRUPT_REQUEST", {"promptId": sleeping})
        assert next_error(ws)["details"]["scope"] == "runs:write"
        send(ws, "PROMPT_REQUEST", ADD)
        assert next_error(ws)["details"]["scope"] == "runs:write"
    assert httpx.get(f"{server}/api/prompt/{sleeping}", timeout=10).json()["status"] == "running"
    assert httpx.post(f"{server}/api/interrupt/{sleeping}", timeout=10).status_code == 200


def test_a_runs_write_key_runs_and_interrupts(server: str) -> None:
    key = new_key(server, "runs:write")
    with socket(server, key) as ws:
        send(ws, "PROMPT_REQUEST", ADD)
        accepted = recv(ws)
        assert accepted["type"] == "PROMPT_ACCEPTED_RESPONSE"
        assert until_final(ws, accepted["payload"]["promptId"])[-1]["payload"]["status"] == "complete"
        send(ws, "PROMPT_REQUEST", SLEEP)
        sleeping = next_of(ws, "PROMPT_ACCEPTED_RESPONSE")["promptId"]
        send(ws, "INTERRUPT_REQUEST", {"promptId": sleeping})
        assert until_final(ws, sleeping)[-1]["payload"]["status"] == "interrupted"


def test_broadcasts_reach_only_keys_that_may_read_them(server: str) -> None:
    projects = new_key(server, "projects:read")
    nodes = new_key(server, "nodes:read")
    runs = new_key(server, "runs:read")
    with socket(server, projects) as ws_projects, socket(server, nodes) as ws_nodes, socket(server, runs) as ws_runs, socket(server) as ws_local:
        # A run ends (SYSTEM_QUEUE_UPDATE, a runs:read event) and the nodes reload (NODES_RELOADED, nodes:read).
        send(ws_local, "PROMPT_REQUEST", ADD)
        prompt_id = recv(ws_local)["payload"]["promptId"]
        until_final(ws_local, prompt_id)
        assert recv(ws_local)["type"] == "SYSTEM_QUEUE_UPDATE"
        assert httpx.post(f"{server}/api/nodes/reload", timeout=30).status_code == 200
        assert recv(ws_local)["type"] == "NODES_RELOADED"
        # The hub handed both broadcasts to every socket before the local socket got them; a
        # reply asked for now is therefore queued after whatever each socket was given.
        for ws in (ws_projects, ws_nodes, ws_runs):
            send(ws, "NOPE", {})
        assert [recv(ws_projects)["type"]] == ["error"]
        assert [recv(ws_nodes)["type"], recv(ws_nodes)["type"]] == ["NODES_RELOADED", "error"]
        assert [recv(ws_runs)["type"], recv(ws_runs)["type"]] == ["SYSTEM_QUEUE_UPDATE", "error"]
