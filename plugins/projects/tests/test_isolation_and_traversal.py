"""Nothing a request sends reads or writes outside the caller's own data folder: per-user
isolation (a second user through an in-test auth mode) and the traversal table."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from comfytavern.app import create_app
from comfytavern.kernel import Kernel
from comfytavern_testing import client_for, header_auth_plugin


def header_auth() -> Any:
    """Whoever the ``X-Test-User`` header names."""
    return header_auth_plugin(header="x-test-user")


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


def test_users_are_isolated(tmp_path: Path, new_kernel: Callable[..., Kernel]) -> None:
    kernel = new_kernel(tmp_path, plugins=[header_auth()], auth={"mode": "test-header"})
    alice, bob = {"X-Test-User": "alice"}, {"X-Test-User": "bob"}
    with client_for(kernel) as client:
        assert client.get("/api/projects").status_code == 401
        assert client.post("/api/projects", json={"name": "Shared"}, headers=alice).status_code == 201
        wf = client.post("/api/projects/Shared/workflows", headers=alice,
                         json={"name": "secret", "nodes": [], "edges": [], "viewport": {"x": 0, "y": 0, "zoom": 1}}).json()

        assert client.get("/api/projects", headers=bob).json() == []
        assert client.get("/api/projects/Shared/metadata", headers=bob).status_code == 404
        assert client.get("/api/projects/Shared/workflows", headers=bob).status_code == 404
        assert client.get(f"/api/projects/Shared/workflows/{wf['id']}", headers=bob).status_code == 404
        assert client.delete("/api/projects/Shared", headers=bob).status_code == 404
        # Bob's own project of the same name is a different object.
        assert client.post("/api/projects", json={"name": "Shared"}, headers=bob).status_code == 201
        assert client.get(f"/api/projects/Shared/workflows/{wf['id']}", headers=bob).status_code == 404
        put = client.put(f"/api/projects/Shared/workflows/{wf['id']}", headers=bob,
                         json={"name": "stolen", "nodes": [], "edges": [], "viewport": {"x": 0, "y": 0, "zoom": 1}})
        assert put.status_code == 404
        assert client.get(f"/api/projects/Shared/workflows/{wf['id']}", headers=alice).json() == wf
        # A user id that cannot name a folder never becomes a path.
        assert client.get("/api/projects", headers={"X-Test-User": ".."}).status_code == 500
    root = kernel.config.data_path("projects")
    assert sorted(p.name for p in root.iterdir()) == ["alice", "bob"]
    assert [p.name for p in (root / "bob" / "Shared" / "workflows").iterdir()] == []


@pytest.fixture
def seeded(client: TestClient, kernel: Kernel) -> dict[str, Any]:
    """A project with a workflow, plus a bait file outside the user's folder."""
    client.post("/api/projects", json={"name": "Anchor Demo"})
    wf = client.post("/api/projects/Anchor%20Demo/workflows",
                     json={"name": "real", "nodes": [], "edges": [], "viewport": {"x": 0, "y": 0, "zoom": 1}}).json()
    root = kernel.config.data_path("root")
    (root / "secrets").mkdir()
    (root / "secrets" / "project.json").write_text('{"name": "BAIT", "id": "secrets"}', "utf-8")
    other = kernel.config.data_path("projects") / "other_user" / "theirs"
    other.mkdir(parents=True)
    (other / "project.json").write_text('{"name": "BAIT2"}', "utf-8")
    return {"wid": wf["id"], "root": root}


TRAVERSALS = [
    ("GET", "/api/projects/%2e%2e/metadata"),
    ("GET", "/api/projects/%2E%2E/metadata"),
    ("GET", "/api/projects/%2E/metadata"),
    ("GET", "/api/projects/..%2F..%2Fsecrets/metadata"),
    ("GET", "/api/projects/..%2Fother_user%2Ftheirs/metadata"),
    ("GET", "/api/projects/%2e%2e%2f%2e%2e%2fsecrets/workflows"),
    ("GET", "/api/projects/..%5C..%5Csecrets/metadata"),
    ("GET", "/api/projects/a%2Fb/metadata"),
    ("GET", "/api/projects/x%00y/metadata"),
    ("GET", "/api/projects/%0Ax/metadata"),
    ("GET", "/api/projects/CON/metadata"),
    ("GET", "/api/projects/aux.json/metadata"),
    ("GET", "/api/projects/.recycle/metadata"),
    ("GET", "/api/projects/%FF%FE/metadata"),
    ("GET", "/api/projects/" + "x" * 300 + "/metadata"),
    ("GET", "/api/projects/" + "%E9%95%BF" * 70 + "/workflows"),
    ("GET", "/api/projects/Anchor%20Demo/workflows/..%2F{wid}"),
    ("GET", "/api/projects/Anchor%20Demo/workflows/%2e%2e"),
    ("GET", "/api/projects/Anchor%20Demo/workflows/..%2F..%2F..%2Fconfig"),
    ("PUT", "/api/projects/..%2F..%2Fevil"),
    ("PUT", "/api/projects/%2e%2e/metadata"),
    ("DELETE", "/api/projects/%2e%2e"),
    ("DELETE", "/api/projects/..%2Fother_user%2Ftheirs"),
    ("DELETE", "/api/projects/Anchor%20Demo/workflows/..%2F{wid}"),
    ("PUT", "/api/projects/Anchor%20Demo/workflows/..%2F{wid}"),
    ("POST", "/api/projects/..%2Fother_user%2Ftheirs/workflows"),
    ("POST", "/api/projects/%2e%2e/workflows"),
    ("GET", "/api/workflows/..%2F..%2Fconfig"),
    ("PUT", "/api/workflows/%2e%2e"),
]


@pytest.mark.parametrize(("method", "url"), TRAVERSALS)
def test_traversal_is_400_and_touches_nothing(client: TestClient, seeded: dict[str, Any], method: str, url: str) -> None:
    before = snapshot(seeded["root"])
    body = {"name": "evil", "nodes": [], "edges": [], "viewport": {"x": 0, "y": 0, "zoom": 1}}
    response = client.request(method, url.format(wid=seeded["wid"]), json=body if method in ("PUT", "POST") else None)
    assert response.status_code == 400, (url, response.status_code, response.text)
    assert response.json()["error"].startswith("invalid ")
    assert "BAIT" not in response.text
    assert snapshot(seeded["root"]) == before


def test_ids_are_decoded_exactly_once(client: TestClient, seeded: dict[str, Any]) -> None:
    # "%252e%252e" is the literal id "%2e%2e": a harmless name that does not exist.
    response = client.get("/api/projects/%252e%252e/metadata")
    assert response.status_code == 404 and "%2e%2e" in response.json()["error"]
    created = client.post("/api/projects", json={"name": "%2e%2e"})
    assert created.status_code == 201 and created.json()["id"] == "%2e%2e"
    assert client.get("/api/projects/%252e%252e/metadata").json()["name"] == "%2e%2e"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"/api/projects/../metadata", 400),
        (b"/api/projects/Anchor%20Demo/workflows/..", 400),
        (b"/api/projects/../../secrets/metadata", 404),  # no route has that shape: nothing is read
    ],
)
async def test_unnormalised_dot_segments(kernel: Kernel, seeded: dict[str, Any], raw: bytes, expected: int) -> None:
    """Clients normally remove ``..`` segments; one sent raw still never reaches the disk."""
    app = create_app(kernel)
    before = snapshot(seeded["root"])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": raw.decode(), "raw_path": raw, "root_path": "", "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:3233")], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 3233),
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == expected
    assert b"BAIT" not in b"".join(m.get("body", b"") for m in sent)
    assert snapshot(seeded["root"]) == before
