"""The built editor served on the API's origin: SPA fallback, caching, no shadowing, traversal."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.websockets import WebSocketDisconnect

from comfytavern import hookimpl, json_response, route
from comfytavern.app import create_app
from comfytavern.kernel import Kernel
from comfytavern_testing import client_for, make_config

INDEX = "<!doctype html><html><body><div id=app></div><script src=/assets/index-3f2a1b.js></script></body></html>"
NO_STORAGE = {"projects": None, "accounts": None, "runs": None}


class OtherPlugin:
    """Routes of another plugin registered after the frontend: they must still win."""

    name = "frontend-neighbour"

    @hookimpl
    def register_routes(self, kernel: Any) -> list[Any]:
        async def hello(request: Request) -> Response:
            return json_response({"hello": "api"})

        async def about(request: Request) -> Response:
            return PlainTextResponse("plugin page")

        return [route("/api/hello", hello, auth="public"), route("/plugin-page", about, auth="public")]


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    folder = tmp_path / "dist"
    (folder / "assets").mkdir(parents=True)
    (folder / "index.html").write_text(INDEX)
    (folder / "assets" / "index-3f2a1b.js").write_text("console.log('editor')")
    (folder / "assets" / "index-77aa00.css").write_text("body{}")
    (folder / "favicon.ico").write_bytes(b"\x00\x00\x01\x00")
    (folder / "img").mkdir()
    (folder / "img" / "logo.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    os.symlink(tmp_path / "secret.txt", folder / "leak.txt")
    return folder


def frontend_kernel(tmp_path: Path, settings: dict[str, Any] | None, **overrides: Any) -> Kernel:
    plugin_settings = {"static-frontend": settings} if settings is not None else {}
    return Kernel(
        make_config(tmp_path, storage=NO_STORAGE, plugins={"settings": plugin_settings}, **overrides),
        plugins=[OtherPlugin()],
    )


@pytest.fixture
def client(tmp_path: Path, dist: Path) -> Iterator[Any]:
    with client_for(frontend_kernel(tmp_path, {"dist": str(dist)})) as c:
        yield c


@pytest.mark.parametrize("path", ["/", "/home", "/home/projects", "/home/settings/test-panel", "/projects/p-1/editor/wf.v2"])
def test_history_mode_routes_fall_back_to_index(client: Any, path: str) -> None:
    response = client.get(path, headers={"Accept": "text/html,application/xhtml+xml"})
    assert response.status_code == 200
    assert response.text == INDEX
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-cache"


def test_paths_without_an_extension_fall_back_even_without_accept(client: Any) -> None:
    assert client.get("/home/characters", headers={"Accept": "*/*"}).text == INDEX


def test_hashed_assets_are_immutable_and_revalidate(client: Any) -> None:
    response = client.get("/assets/index-3f2a1b.js")
    assert response.status_code == 200
    assert response.text == "console.log('editor')"
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.headers["x-content-type-options"] == "nosniff"
    etag = response.headers["etag"]
    again = client.get("/assets/index-3f2a1b.js", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    index = client.get("/index.html")
    assert index.headers["cache-control"] == "no-cache"
    assert client.get("/index.html", headers={"If-None-Match": index.headers["etag"]}).status_code == 304


def test_other_files_revalidate(client: Any) -> None:
    response = client.get("/img/logo.svg")
    assert response.status_code == 200 and response.text == "<svg/>"
    assert response.headers["cache-control"] == "no-cache"
    assert client.get("/favicon.ico").content == b"\x00\x00\x01\x00"


def test_missing_files_do_not_fall_back(client: Any) -> None:
    missing_asset = client.get("/assets/index-000000.js", headers={"Accept": "text/html"})
    assert missing_asset.status_code == 404
    assert missing_asset.json() == {"error": "no route for GET /assets/index-000000.js"}
    assert client.get("/robots.txt").status_code == 404
    # a browser navigation to a dotted path still gets the app
    assert client.get("/robots.txt", headers={"Accept": "text/html"}).text == INDEX


@pytest.mark.parametrize(
    "path", ["/api/unknown", "/api", "/ws", "/kernel/unknown", "/docs/unknown", "/metrics/x", "/healthz/x", "/openapi.json/x"]
)
def test_server_paths_never_fall_back(client: Any, path: str) -> None:
    response = client.get(path, headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"].startswith("no route for GET")


def test_kernel_and_plugin_routes_win(client: Any) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/readyz").status_code == 200
    assert client.get("/api/hello").json() == {"hello": "api"}
    assert client.get("/plugin-page").text == "plugin page"
    plugins = client.get("/kernel/plugins").json()["plugins"]
    assert any(p["name"] == "static-frontend" and p["status"] == "loaded" for p in plugins)


def test_fallback_routes_are_placed_last(tmp_path: Path, dist: Path) -> None:
    kernel = frontend_kernel(tmp_path, {"dist": str(dist)})
    routes = create_app(kernel).routes
    # after every ordinary route; only defaults ranked later (the server's home page, fallback=2) follow it
    frontend = [i for i, r in enumerate(routes) if getattr(r, "fallback", False) is True]
    assert len(frontend) == 1
    assert all(getattr(r, "fallback", 0) not in (0, False) for r in routes[frontend[0]:])
    assert all(isinstance(getattr(r, "fallback", 0), int) and getattr(r, "fallback", 0) > 1 for r in routes[frontend[0] + 1:])


def test_only_get_and_head(client: Any) -> None:
    head = client.head("/home")
    assert head.status_code == 200 and head.content == b""
    assert client.post("/home").status_code == 404
    assert client.delete("/assets/index-3f2a1b.js").status_code == 404
    assert client.post("/api/nothing").json() == {"error": "no route for POST /api/nothing"}


@pytest.mark.parametrize(
    "path",
    [
        "/%2e%2e/secret.txt",
        "/assets/%2e%2e/%2e%2e/secret.txt",
        "/assets/..%2f..%2fsecret.txt",
        "/..%5csecret.txt",
        "/img/%00/logo.svg",
    ],
)
def test_traversal_is_rejected(client: Any, path: str) -> None:
    response = client.get(path, headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert "TOP SECRET" not in response.text
    assert INDEX not in response.text


def test_symlinks_leaving_the_folder_are_not_followed(client: Any) -> None:
    response = client.get("/leak.txt")
    assert response.status_code == 404 and "TOP SECRET" not in response.text
    # a browser navigation gets the app instead, never the file
    assert client.get("/leak.txt", headers={"Accept": "text/html"}).text == INDEX


def test_traversal_over_a_real_socket(tmp_path: Path, dist: Path) -> None:
    """Raw request lines (no client-side normalisation) through uvicorn."""
    app = create_app(frontend_kernel(tmp_path, {"dist": str(dist)}))
    with _serve(app) as port:
        for target in ("/../secret.txt", "/assets/../../secret.txt", "/./../../secret.txt"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
                raw = b""
                while chunk := sock.recv(65536):
                    raw += chunk
            assert b"TOP SECRET" not in raw, target
            assert raw.startswith(b"HTTP/1.1 404"), raw[:100]


def _serve(app: Any) -> Any:
    import contextlib

    @contextlib.contextmanager
    def run() -> Iterator[int]:
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        try:
            yield server.servers[0].sockets[0].getsockname()[1]
        finally:
            server.should_exit = True
            thread.join(timeout=20)

    return run()


def test_unknown_websocket_paths_are_closed(client: Any) -> None:
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/not-a-socket") as ws:
            ws.receive_text()


def test_off_when_dist_is_unset(tmp_path: Path) -> None:
    with client_for(frontend_kernel(tmp_path, None)) as c:
        assert c.get("/home").status_code == 404
        assert INDEX not in c.get("/").text  # "/" is the server's home page (or a 404), never an editor


def test_relative_dist_is_resolved_against_the_config_folder(tmp_path: Path, dist: Path) -> None:
    kernel = frontend_kernel(tmp_path, {"dist": "dist"}, base_dir=str(tmp_path))
    with client_for(kernel) as c:
        assert c.get("/home").text == INDEX


def test_custom_exclusions_and_max_age(tmp_path: Path, dist: Path) -> None:
    kernel = frontend_kernel(tmp_path, {"dist": str(dist), "exclude": ["/custom-api/"], "max_age": 600})
    with client_for(kernel) as c:
        assert c.get("/custom-api/thing").status_code == 404
        assert c.get("/custom-apiary").text == INDEX
        assert c.get("/img/logo.svg").headers["cache-control"] == "public, max-age=600"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"dist": "/definitely/not/here"}, "is not a folder"),
        ({"dist": "DIST", "index": "missing.html"}, "does not exist"),
        ({"dist": "DIST", "max_age": -1}, "must not be negative"),
        ({"dist": "DIST", "unknown": 1}, "plugins.settings.static-frontend"),
    ],
)
def test_bad_settings_are_reported_clearly(tmp_path: Path, dist: Path, settings: dict[str, Any], message: str) -> None:
    settings = {k: (str(dist) if v == "DIST" else v) for k, v in settings.items()}
    kernel = frontend_kernel(tmp_path, settings)
    create_app(kernel)
    row = next(r for r in kernel.plugin_rows() if r["name"] == "static-frontend")
    assert row["status"] == "error"
    assert message in row["error"]


def test_the_frontend_is_in_the_openapi_document(tmp_path: Path, dist: Path) -> None:
    with client_for(frontend_kernel(tmp_path, {"dist": str(dist)})) as c:
        spec = c.get("/openapi.json")
    if spec.status_code == 404:
        pytest.skip("the server-routes plugin is not installed")
    operation = spec.json()["paths"]["/{path}"]["get"]
    assert operation["tags"] == ["frontend"] and "304" in operation["responses"]
