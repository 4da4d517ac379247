"""Everything the server writes under a fresh data root is private to its user: folders 0700,
files (the SQLite database and its WAL/SHM files included) 0600, whatever the process umask."""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from comfytavern_cards.testing import card_png, v2_card
from comfytavern_testing import client_for, make_kernel


@pytest.fixture
def common_umask() -> Iterator[None]:
    """The usual default umask (022), under which a plain ``mkdir`` makes a 0755 folder."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(out, format="PNG")
    return out.getvalue()


def _walk(root: Path) -> list[tuple[Path, int]]:
    found = []
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            found.append((path, os.lstat(path).st_mode))
    return found


def test_a_fresh_data_root_is_created_private(tmp_path: Path, common_umask: None) -> None:
    root = tmp_path / "fresh" / "data-root"
    storage = {"projects": "filesystem", "accounts": "sqlite", "runs": "sqlite"}
    with client_for(make_kernel(root, storage=storage)) as client:
        project = client.post("/api/projects", json={"name": "Private"})
        assert project.status_code == 201, project.text
        pid = project.json()["id"]
        wf = client.post(f"/api/projects/{pid}/workflows", json={"name": "wf", "nodes": [], "edges": [], "viewport": {"x": 0, "y": 0, "zoom": 1}})
        assert wf.status_code == 201, wf.text
        assert client.delete(f"/api/projects/{pid}/workflows/{wf.json()['id']}").status_code == 204
        card = client.post("/api/characters/import", files={"file": ("c.png", card_png([("chara", v2_card("Cat"))]), "image/png")})
        assert card.status_code == 201, card.text
        raw = client.post("/api/characters/import", content=json.dumps(v2_card("Json")), headers={"Content-Type": "application/json"})
        assert raw.status_code == 201, raw.text
        avatar = client.post("/api/users/me/avatar", files={"avatar": ("a.png", _png(), "image/png")})
        assert avatar.status_code == 200, avatar.text
        key = client.post("/api/users/me/service-keys", json={"name": "k", "scopes": ["*"]})
        assert key.status_code == 201, key.text
        entries = _walk(root)
    names = {p.name for p, _ in entries}
    assert {"comfytavern.sqlite", "avatar.png", "Cat.png", "Json.json", "Private"} <= names, sorted(names)
    assert any(n.endswith("-wal") for n in names), sorted(names)
    too_open = [
        f"{p.relative_to(tmp_path)} {stat.filemode(mode)}"
        for p, mode in [(tmp_path / "fresh", os.lstat(tmp_path / "fresh").st_mode), (root, os.lstat(root).st_mode), *entries]
        if mode & (stat.S_IRWXG | stat.S_IRWXO)
    ]
    assert not too_open, "\n".join(too_open)


def test_an_existing_database_file_is_left_alone_with_a_warning(tmp_path: Path, caplog: Any) -> None:
    database = tmp_path / "data" / "comfytavern.sqlite"
    database.parent.mkdir(parents=True)
    database.touch()
    database.chmod(0o644)
    with client_for(make_kernel(tmp_path, storage={"projects": None, "accounts": "sqlite", "runs": None})) as client:
        assert client.get("/healthz").status_code == 200
    assert stat.S_IMODE(database.stat().st_mode) == 0o644
    assert any("readable by other users" in r.getMessage() and "chmod 600" in r.getMessage() for r in caplog.records)
