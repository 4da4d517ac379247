"""Project routes: happy paths with the editor's exact bodies, and the bad-input table."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

# The editor's zod ``.datetime()``: UTC with a trailing Z (any sub-second precision).
ZOD_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")
REQUIRED = {"id", "name", "version", "createdAt", "updatedAt", "schemaVersion"}


def assert_editor_accepts(meta: dict[str, Any]) -> None:
    """What ``ProjectMetadataSchema`` checks in the editor."""
    assert REQUIRED <= meta.keys()
    assert all(isinstance(meta[k], str) for k in REQUIRED)
    assert ZOD_DATETIME.fullmatch(meta["createdAt"]) and ZOD_DATETIME.fullmatch(meta["updatedAt"])
    assert None not in meta.values(), "optional fields must be absent, never null"
    assert meta.get("preferredView", "editor") in ("editor", "custom")
    if "description" in meta:
        assert isinstance(meta["description"], str)


def test_create_list_read_update_delete(client: TestClient, user_dir: Path) -> None:
    assert client.get("/api/projects").json() == []

    created = client.post("/api/projects", json={"name": "Anchor Demo"})
    assert created.status_code == 201
    meta = created.json()
    assert_editor_accepts(meta)
    assert meta["id"] == meta["name"] == "Anchor Demo"
    assert meta["description"].startswith("Project created on ")
    assert meta["preferredView"] == "editor"
    assert json.loads((user_dir / "Anchor Demo" / "project.json").read_text("utf-8"))["id"] == "Anchor Demo"

    assert client.get("/api/projects").json() == [meta]
    assert client.get("/api/projects/Anchor%20Demo/metadata").json() == meta

    renamed = client.put(
        "/api/projects/Anchor%20Demo",
        json={"description": "anchor project for wire-format capture", "name": "Anchor Demo (renamed)"},
    )
    assert renamed.status_code == 200
    after = renamed.json()
    assert_editor_accepts(after)
    assert after["id"] == "Anchor Demo" and after["name"] == "Anchor Demo (renamed)"
    assert after["createdAt"] == meta["createdAt"] and after["updatedAt"] >= meta["updatedAt"]
    assert client.get("/api/projects/Anchor%20Demo/metadata").json() == after

    via_metadata = client.put("/api/projects/Anchor%20Demo/metadata", json={"preferredView": "custom"})
    assert via_metadata.status_code == 200 and via_metadata.json()["preferredView"] == "custom"
    assert via_metadata.json()["description"] == "anchor project for wire-format capture"

    assert client.delete("/api/projects/Anchor%20Demo").status_code == 204
    assert client.get("/api/projects").json() == []
    assert client.get("/api/projects/Anchor%20Demo/metadata").status_code == 404
    recycled = list((user_dir / ".recycle").iterdir())
    assert len(recycled) == 1 and recycled[0].name.endswith("-Anchor Demo")
    assert json.loads((recycled[0] / "project.json").read_text("utf-8"))["name"] == "Anchor Demo (renamed)"


def test_chinese_name_gives_readable_id(client: TestClient, user_dir: Path) -> None:
    created = client.post("/api/projects", json={"name": "角色 项目"})
    assert created.status_code == 201 and created.json()["id"] == "角色 项目"
    # The editor puts the id in URLs with encodeURIComponent.
    assert client.get("/api/projects/%E8%A7%92%E8%89%B2%20%E9%A1%B9%E7%9B%AE/metadata").json()["name"] == "角色 项目"
    assert (user_dir / "角色 项目" / "project.json").is_file()


def test_unportable_characters_become_underscores_and_clashes_are_409(client: TestClient) -> None:
    first = client.post("/api/projects", json={"name": "Plan: A?"})
    assert first.status_code == 201 and first.json()["id"] == "Plan_ A_" and first.json()["name"] == "Plan: A?"
    clash = client.post("/api/projects", json={"name": "Plan* A|"})
    assert clash.status_code == 409
    assert clash.json()["error"] == "Project with ID 'Plan_ A_' (derived from name 'Plan* A|') already exists."


def test_create_keeps_given_fields_and_list_is_newest_first(client: TestClient) -> None:
    older = client.post("/api/projects", json={"name": "older", "description": "", "customMetadata": {"k": 1}})
    assert older.json()["description"] == "" and older.json()["customMetadata"] == {"k": 1}
    client.post("/api/projects", json={"name": "newer"})
    assert [p["id"] for p in client.get("/api/projects").json()] == ["newer", "older"]
    client.put("/api/projects/older", json={"description": "touched"})
    assert [p["id"] for p in client.get("/api/projects").json()] == ["older", "newer"]


def test_damaged_or_foreign_project_files_are_served_valid(client: TestClient, user_dir: Path) -> None:
    """A project.json written by hand or by another tool still satisfies the editor's schema."""
    (user_dir / "hand").mkdir(parents=True)
    (user_dir / "hand" / "project.json").write_text(
        json.dumps({"id": "other", "name": "Hand made", "description": None, "createdAt": "2025-01-02T03:04:05+02:00",
                    "updatedAt": "not a date", "preferredView": "weird", "extra": 1}),
        "utf-8",
    )
    (user_dir / "broken").mkdir()
    (user_dir / "broken" / "project.json").write_text("{not json", "utf-8")
    (user_dir / "no-metadata").mkdir()
    listed = {p["id"]: p for p in client.get("/api/projects").json()}
    assert set(listed) == {"hand", "broken"}
    for meta in listed.values():
        assert_editor_accepts(meta)
    assert listed["hand"]["createdAt"] == "2025-01-02T01:04:05.000Z"
    assert listed["hand"]["updatedAt"] == listed["hand"]["createdAt"]
    assert listed["broken"]["name"] == "broken"
    # A PUT repairs the file and keeps what this server does not know.
    repaired = client.put("/api/projects/hand", json={"name": "Hand made 2"}).json()
    assert_editor_accepts(repaired)
    stored = json.loads((user_dir / "hand" / "project.json").read_text("utf-8"))
    assert stored["extra"] == 1 and stored["id"] == "hand" and "description" not in stored
    assert stored["createdAt"] == "2025-01-02T01:04:05.000Z" and stored["name"] == "Hand made 2"


BAD_CREATE = [
    # (raw body, status, error, field path)
    (b"{not json", 400, "malformed JSON", None),
    (b"", 400, "request body is empty; expected JSON", None),
    (b"[]", 422, "validation failed", "$"),
    (b"{}", 422, "validation failed", "$"),
    (b'{"name": ""}', 422, "validation failed", "$.name"),
    (b'{"name": "   "}', 422, "validation failed", "$.name"),
    (b'{"name": 123}', 422, "validation failed", "$.name"),
    (b'{"name": "ok", "description": null}', 422, "validation failed", "$.description"),
    (b'{"name": "ok", "preferredView": "grid"}', 422, "validation failed", "$.preferredView"),
    (b'{"name": ".."}', 400, "invalid project name", "$.name"),
    (b'{"name": "../../evil"}', 400, "invalid project name", "$.name"),
    (b'{"name": "a/b"}', 400, "invalid project name", "$.name"),
    (b'{"name": "a\\\\b"}', 400, "invalid project name", "$.name"),
    (b'{"name": "nul\\u0000byte"}', 400, "invalid project name", "$.name"),
    (b'{"name": "CON"}', 400, "invalid project name", "$.name"),
    (b'{"name": "lpt1.txt"}', 400, "invalid project name", "$.name"),
    (b'{"name": ".hidden"}', 400, "invalid project name", "$.name"),
    (b'{"name": "dots..."}', 400, "invalid project name", "$.name"),
    (('{"name": "' + "H" * 201 + '"}').encode(), 400, "invalid project name", "$.name"),
    (('{"name": "' + "长" * 67 + '"}').encode(), 400, "invalid project name", "$.name"),
]


@pytest.mark.parametrize(("body", "status", "error", "path"), BAD_CREATE)
def test_create_bad_input(client: TestClient, user_dir: Path, body: bytes, status: int, error: str, path: str | None) -> None:
    response = client.post("/api/projects", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    if path is not None:
        assert response.json()["details"][0]["path"] == path
    assert not user_dir.exists() or list(user_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("body", "status", "path"),
    [
        ({"name": 5}, 422, "$.name"),
        ({"name": ""}, 422, "$.name"),
        ({"name": " "}, 422, "$.name"),
        ({"description": None}, 422, "$.description"),
        ({"customMetadata": []}, 422, "$.customMetadata"),
        ({"enableChatPage": "yes"}, 422, "$.enableChatPage"),
    ],
)
def test_update_bad_input(client: TestClient, body: dict[str, Any], status: int, path: str) -> None:
    client.post("/api/projects", json={"name": "p"})
    before = client.get("/api/projects/p/metadata").json()
    response = client.put("/api/projects/p", json=body)
    assert response.status_code == status and response.json()["details"][0]["path"] == path
    assert client.get("/api/projects/p/metadata").json() == before


def test_update_rules(client: TestClient) -> None:
    client.post("/api/projects", json={"name": "p"})
    mismatch = client.put("/api/projects/p", json={"id": "q", "name": "x"})
    assert mismatch.status_code == 400 and "does not match" in mismatch.json()["error"]
    # Echoing the whole metadata back is fine; server-managed fields are ignored.
    meta = client.get("/api/projects/p/metadata").json()
    echoed = client.put("/api/projects/p/metadata", json={**meta, "createdAt": "1999-01-01T00:00:00Z", "version": "x"})
    assert echoed.status_code == 200
    assert echoed.json()["createdAt"] == meta["createdAt"] and echoed.json()["version"] == meta["version"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/projects/NoSuchProject/metadata"),
        ("PUT", "/api/projects/NoSuchProject"),
        ("PUT", "/api/projects/NoSuchProject/metadata"),
        ("DELETE", "/api/projects/NoSuchProject"),
        ("GET", "/api/projects/NoSuchProject/workflows"),
        ("POST", "/api/projects/NoSuchProject/workflows"),
    ],
)
def test_unknown_project_is_404(client: TestClient, user_dir: Path, method: str, path: str, blank: Any) -> None:
    body = blank("w") if method == "POST" else {"name": "x"} if method == "PUT" else None
    response = client.request(method, path, json=body)
    assert response.status_code == 404, response.text
    assert "NoSuchProject" in response.json()["error"]
    assert not (user_dir / "NoSuchProject").exists()
