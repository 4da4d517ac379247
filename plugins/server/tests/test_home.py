"""``GET /``: a home page for browsers, JSON for JSON clients, and the editor's when one is served."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from comfytavern import __version__
from comfytavern.app import create_app
from comfytavern_server_routes.home import prefers_json
from comfytavern_testing import client_for


def test_a_browser_gets_a_page_naming_the_server_and_linking_the_api(kernel: Any) -> None:
    with client_for(kernel) as client:
        response = client.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "Accept" in response.headers["vary"]
    page = response.text
    assert "ComfyTavern Server" in page and f"<strong>{__version__}</strong>" in page
    assert "auth mode <code>local</code>" in page
    for link in ('href="docs"', 'href="openapi.json"', 'href="metrics"', 'href="healthz"'):
        assert link in page
    assert "administrators" in page  # who may read /metrics
    assert "static-frontend" in page and '"dist"' in page  # how to serve the editor


def test_json_clients_get_json(kernel: Any) -> None:
    with client_for(kernel) as client:
        response = client.get("/", headers={"Accept": "application/json"})
        # every link given resolves
        links = response.json()["links"]
        statuses = {name: client.get(path).status_code for name, path in links.items()}
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["name"] == "ComfyTavern Server" and body["version"] == __version__ and body["authMode"] == "local"
    assert set(links) == {"docs", "openapi", "metrics", "health", "ready"}
    assert statuses == {"docs": 200, "openapi": 200, "metrics": 200, "health": 200, "ready": 200}
    assert "static-frontend" in body["editorHelp"]


@pytest.mark.parametrize(
    ("accept", "wants_json"),
    [
        ("application/json", True),
        ("application/json, text/plain, */*", True),  # axios' default
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),  # a browser
        ("*/*", False),  # curl
        ("", False),
        ("text/html;q=0.5, application/json;q=0.9", True),
        ("application/json;q=0, text/html", False),
        ("application/json;q=bad", False),
    ],
)
def test_accept_negotiation(accept: str, wants_json: bool) -> None:
    assert prefers_json(accept) is wants_json


def test_other_methods_and_paths_are_unchanged(kernel: Any) -> None:
    with client_for(kernel) as client:
        assert client.post("/").status_code == 405
        assert client.head("/").status_code == 200
        missing = client.get("/nope", headers={"Accept": "text/html"})
    assert missing.status_code == 404 and missing.json() == {"error": "no route for GET /nope"}


def test_the_page_is_public_outside_the_local_mode(token_kernel: Any) -> None:
    with client_for(token_kernel()) as client:
        page = client.get("/", headers={"Accept": "text/html"})
        body = client.get("/", headers={"Accept": "application/json"}).json()
        assert client.get("/metrics").status_code == 401
    assert page.status_code == 200 and "auth mode <code>test-token</code>" in page.text
    assert body["authMode"] == "test-token"


def test_an_editor_served_by_static_frontend_keeps_the_root(make_full_kernel: Any, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>the editor</title>", encoding="utf-8")
    kernel = make_full_kernel(plugins={"settings": {"static-frontend": {"dist": str(dist)}}})
    with client_for(kernel) as client:
        html_root = client.get("/", headers={"Accept": "text/html"})
        json_root = client.get("/", headers={"Accept": "application/json"})
    if next(r for r in kernel.plugin_rows() if r["name"] == "static-frontend")["status"] != "loaded":
        pytest.fail("the static-frontend plugin did not load")
    assert html_root.status_code == 200 and "the editor" in html_root.text
    assert json_root.status_code == 200 and "the editor" in json_root.text  # the SPA owns "/"


def test_a_broken_static_frontend_is_pointed_out(make_full_kernel: Any, tmp_path: Path) -> None:
    kernel = make_full_kernel(plugins={"settings": {"static-frontend": {"dist": str(tmp_path / "missing")}}})
    with client_for(kernel) as client:
        page = client.get("/", headers={"Accept": "text/html"}).text
    assert "static-frontend plugin reports an error" in page
    assert str(tmp_path) not in page  # no server path on a public page


def test_over_a_real_socket(kernel: Any, serve: Any) -> None:
    with serve(create_app(kernel)) as base:
        response = httpx.get(base + "/", headers={"Accept": "text/html"})
    assert response.status_code == 200 and "ComfyTavern Server" in response.text
