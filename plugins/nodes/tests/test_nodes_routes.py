"""``GET /api/nodes`` (ETag/304, no server paths) and access to ``POST /api/nodes/reload``."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute

from comfytavern import AuthMode, Principal, hookimpl
from comfytavern.kernel import Kernel
from comfytavern_nodes_routes.listing import etag_matches
from comfytavern_testing import client_for

Build = Callable[..., Kernel]


def test_listing_is_the_snapshot_json_with_an_etag(build: Build, custom: Path, module_text: Any, write_file: Any) -> None:
    write_file(custom / "hot.py", module_text("v1"))
    kernel = build()
    with client_for(kernel) as client:
        response = client.get("/api/nodes")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["etag"] == kernel.registry.current.etag
    assert response.headers["cache-control"] == "no-cache"
    assert response.content == kernel.registry.current.definitions_json
    nodes = response.json()
    assert isinstance(nodes, list)
    assert {"core:TextMerge", "core:RandomNumber", "hot:Echo"} <= {f"{n['namespace']}:{n['type']}" for n in nodes}


def test_listing_leaks_no_server_paths(build: Build, custom: Path, module_text: Any, write_file: Any, tmp_path: Path) -> None:
    write_file(custom / "hot.py", module_text("v1"))
    kernel = build()
    with client_for(kernel) as client:
        text = client.get("/api/nodes").text
    for needle in (str(tmp_path), str(Path(__file__).resolve().parents[3]), "site-packages", "filePath", "sourceDir"):
        assert needle not in text


@pytest.mark.parametrize(
    "header",
    ["{etag}", "W/{etag}", '"other", {etag}', "*"],
)
def test_if_none_match_gives_304(build: Build, header: str) -> None:
    kernel = build()
    etag = kernel.registry.current.etag
    with client_for(kernel) as client:
        response = client.get("/api/nodes", headers={"If-None-Match": header.format(etag=etag)})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag


def test_etag_changes_only_when_the_definitions_change(
    build: Build, custom: Path, module_text: Any, write_file: Any
) -> None:
    write_file(custom / "hot.py", module_text("v1"))
    kernel = build()
    with client_for(kernel) as client:
        first = client.get("/api/nodes").headers["etag"]
        write_file(custom / "hot.py", module_text("v2"))  # behaviour only: same definitions
        client.post("/api/nodes/reload")
        assert client.get("/api/nodes", headers={"If-None-Match": first}).status_code == 304
        write_file(custom / "hot.py", module_text("v2", type_="Echo2"))
        client.post("/api/nodes/reload")
        changed = client.get("/api/nodes", headers={"If-None-Match": first})
        assert changed.status_code == 200
        assert changed.headers["etag"] != first
        assert "Echo2" in {n["type"] for n in changed.json()}


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, False), ("", False), ('"abc"', True), ('W/"abc"', True), ('"x" , "abc"', True), ('"abcd"', False), ("*", True)],
)
def test_etag_matching(header: str | None, expected: bool) -> None:
    assert etag_matches(header, '"abc"') is expected


def test_etag_is_sent_to_cross_origin_readers(build: Build) -> None:
    with client_for(build()) as client:
        response = client.get("/api/nodes", headers={"Origin": "http://localhost:5573"})
    assert response.headers["access-control-allow-origin"] == "http://localhost:5573"
    assert "etag" in response.headers["access-control-expose-headers"].lower()


class PlainUserAuth:
    """Everyone is an ordinary (non-admin) user."""

    name = "plain-user"

    async def authenticate(self, conn: HTTPConnection) -> Principal | None:
        return Principal(id="bob", username="bob", is_admin=False, via="session")

    def routes(self) -> Sequence[BaseRoute]:
        return []


class PlainUserMode:
    name = "plain-user-mode"

    @hookimpl
    def register_auth_modes(self, kernel: Any) -> list[AuthMode]:
        def factory(kernel: Any, settings: Mapping[str, Any]) -> PlainUserAuth:
            return PlainUserAuth()

        return [AuthMode("plain-user", factory=factory)]


def test_reload_needs_an_administrator(tmp_path: Path, recorder: Any) -> None:
    from comfytavern_testing import make_kernel

    kernel = make_kernel(
        tmp_path,
        plugins=[PlainUserMode(), recorder],
        plugins_config={"enabled": ["nodes-routes", "core"]},
        storage={"projects": None, "accounts": None, "runs": None},
        auth={"mode": "plain-user"},
    )
    with client_for(kernel) as client:
        assert client.get("/api/nodes").status_code == 200
        denied = client.post("/api/nodes/reload")
        assert denied.status_code == 403
        assert denied.json() == {"error": "administrator rights required"}
    assert recorder.of_type("NODES_RELOADED") == []


def test_reload_response_shape(build: Build) -> None:
    with client_for(build()) as client:
        body = client.post("/api/nodes/reload", content=b"{}").json()
    assert set(body) == {"success", "message", "count"}
    assert body["success"] is True and isinstance(body["count"], int) and body["count"] >= 12
    json.dumps(body)


def test_websocket_clients_hear_nodes_reloaded(build: Build, custom: Path, module_text: Any, write_file: Any) -> None:
    """Over the editor's real WebSocket (the executions plugin's ``/ws``)."""
    pytest.importorskip("comfytavern_executions", reason="the WebSocket endpoint comes with the executions plugin")
    write_file(custom / "hot.py", module_text("v1"))
    kernel = build(enable=("executions",))
    with client_for(kernel) as client:
        with client.websocket_connect("/ws", headers={"origin": "http://localhost:5573"}) as ws:
            body = client.post("/api/nodes/reload").json()
            frame = ws.receive_json()
            while frame["type"] != "NODES_RELOADED":
                frame = ws.receive_json()
    assert frame == {"type": "NODES_RELOADED", "payload": body}
