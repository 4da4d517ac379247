"""The filesystem projects store on its own: layout, ids, renames, recycle bin, locking."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from comfytavern.storage.projects import (
    AlreadyExists,
    InvalidId,
    ProjectNotFound,
    ProjectStore,
    WorkflowNotFound,
)
from comfytavern_storage_files import FileProjectStore

U = "default_user"


def wf(wid: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"id": wid, "name": name, "nodes": [], "edges": [], "viewport": {"x": 0, "y": 0, "zoom": 1}, **extra}


@pytest.fixture
async def store(tmp_path: Path) -> FileProjectStore:
    s = FileProjectStore(tmp_path / "projects")
    await s.open()
    await s.create_project(U, "p", {"id": "p", "name": "p"})
    return s


@pytest.mark.anyio
async def test_satisfies_the_protocol(store: FileProjectStore) -> None:
    assert isinstance(store, ProjectStore)


@pytest.mark.anyio
async def test_layout_and_round_trip(store: FileProjectStore, tmp_path: Path) -> None:
    doc = wf("id-1", "名字 one", extra={"kept": [1, 2.5, None, "字"]})
    await store.create_workflow(U, "p", doc)
    path = tmp_path / "projects" / U / "p" / "workflows" / "名字 one.json"
    text = path.read_text("utf-8")
    assert json.loads(text) == doc and text.startswith('{\n  "id": "id-1"') and "名字" in text
    assert await store.get_workflow(U, "p", "id-1") == doc
    assert [s.id for s in await store.list_workflows(U, "p")] == ["id-1"]
    assert (await store.list_projects(U))[0]["id"] == "p"


@pytest.mark.anyio
async def test_rename_moves_the_file_and_keeps_the_id(store: FileProjectStore, tmp_path: Path) -> None:
    await store.create_workflow(U, "p", wf("id-1", "old"))
    before, after = await store.update_workflow(U, "p", "id-1", lambda d: {**d, "name": "new"})
    assert before["name"] == "old" and after["name"] == "new"
    folder = tmp_path / "projects" / U / "p" / "workflows"
    assert sorted(os.listdir(folder)) == ["new.json"]
    with pytest.raises(ValueError):
        await store.update_workflow(U, "p", "id-1", lambda d: {**d, "id": "other"})
    await store.create_workflow(U, "p", wf("id-2", "taken"))
    with pytest.raises(AlreadyExists):
        await store.update_workflow(U, "p", "id-1", lambda d: {**d, "name": "taken"})
    assert sorted(os.listdir(folder)) == ["new.json", "taken.json"]


@pytest.mark.anyio
async def test_unchanged_document_is_not_rewritten(store: FileProjectStore, tmp_path: Path) -> None:
    await store.create_workflow(U, "p", wf("id-1", "w"))
    path = tmp_path / "projects" / U / "p" / "workflows" / "w.json"
    inode = path.stat().st_ino
    await store.update_workflow(U, "p", "id-1", lambda d: d)
    assert path.stat().st_ino == inode


@pytest.mark.anyio
async def test_foreign_file_names_are_kept_until_renamed(store: FileProjectStore, tmp_path: Path) -> None:
    """A file another tool named (here the original backend's sanitised name) keeps its name."""
    folder = tmp_path / "projects" / U / "p" / "workflows"
    (folder / "a_b.json").write_text(json.dumps(wf("legacy", "a/b")), "utf-8")
    _, after = await store.update_workflow(U, "p", "legacy", lambda d: {**d, "description": "x"})
    assert after["description"] == "x" and os.listdir(folder) == ["a_b.json"]


@pytest.mark.anyio
async def test_conflicts_and_missing(store: FileProjectStore) -> None:
    await store.create_workflow(U, "p", wf("id-1", "w"))
    with pytest.raises(AlreadyExists):
        await store.create_workflow(U, "p", wf("id-1", "other name"))
    with pytest.raises(AlreadyExists):
        await store.create_workflow(U, "p", wf("id-2", "w"))
    with pytest.raises(AlreadyExists):
        await store.create_project(U, "p", {"name": "p"})
    with pytest.raises(ProjectNotFound):
        await store.create_workflow(U, "nope", wf("id-3", "w"))
    with pytest.raises(ProjectNotFound):
        await store.list_workflows(U, "nope")
    with pytest.raises(ProjectNotFound):
        await store.update_project(U, "nope", lambda d: d)
    with pytest.raises(ProjectNotFound):
        await store.delete_project(U, "nope")
    with pytest.raises(WorkflowNotFound):
        await store.update_workflow(U, "p", "nope", lambda d: d)
    with pytest.raises(WorkflowNotFound):
        await store.delete_workflow(U, "p", "nope")
    assert await store.get_workflow(U, "p", "nope") is None
    assert await store.get_workflow(U, "nope", "id-1") is None
    assert await store.get_project(U, "nope") is None
    assert await store.list_projects("nobody") == []


BAD_IDS = ["..", ".", "../x", "a/b", "a\\b", "x\x00y", "CON", "nul.txt", ".recycle", "", " x", "x.", "z" * 201, "\udcff"]


@pytest.mark.anyio
@pytest.mark.parametrize("bad", BAD_IDS)
async def test_unsafe_ids_are_rejected_before_any_file_access(store: FileProjectStore, tmp_path: Path, bad: str) -> None:
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    for call in (
        lambda: store.get_project(U, bad),
        lambda: store.create_project(U, bad, {}),
        lambda: store.create_project(bad, "p2", {}),
        lambda: store.list_workflows(U, bad),
        lambda: store.delete_project(U, bad),
        lambda: store.list_projects(bad),
        # A workflow *name* is trimmed first (" x" names the file "x.json"), then held to the same rules.
        *([lambda: store.create_workflow(U, "p", wf("w", bad))] if bad == bad.strip() else []),
    ):
        with pytest.raises(InvalidId):
            await call()
    assert await store.get_workflow(U, bad, "x") is None
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


@pytest.mark.anyio
async def test_symlink_out_of_the_data_dir_is_refused(store: FileProjectStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "project.json").write_text("{}", "utf-8")
    os.symlink(outside, tmp_path / "projects" / U / "escape")
    with pytest.raises(InvalidId):
        await store.get_project(U, "escape")
    assert [p["id"] for p in await store.list_projects(U)] == ["p"]


@pytest.mark.anyio
async def test_recycle_bin(store: FileProjectStore, tmp_path: Path) -> None:
    await store.create_workflow(U, "p", wf("id-1", "w"))
    await store.delete_workflow(U, "p", "id-1")
    await store.create_workflow(U, "p", wf("id-1", "w"))  # the same id again, recycled twice
    await store.delete_workflow(U, "p", "id-1")
    bin_dir = tmp_path / "projects" / U / ".recycle"
    deleted = sorted(bin_dir.glob("*-p/workflows/w.json"))
    assert len(deleted) == 2 and all(json.loads(p.read_text("utf-8"))["id"] == "id-1" for p in deleted)
    await store.delete_project(U, "p")
    assert await store.list_projects(U) == []
    restored_from = sorted(p for p in bin_dir.iterdir() if (p / "project.json").exists())
    assert len(restored_from) == 1
    # Restoring by hand is a move back.
    os.replace(restored_from[0], tmp_path / "projects" / U / "p")
    assert [p["id"] for p in await store.list_projects(U)] == ["p"]


@pytest.mark.anyio
async def test_parallel_updates_lose_nothing(store: FileProjectStore) -> None:
    """Fifty concurrent read-modify-writes of one workflow: every increment survives."""
    await store.create_workflow(U, "p", wf("id-1", "w", counter=0))

    async def bump() -> None:
        await store.update_workflow(U, "p", "id-1", lambda d: {**d, "counter": d["counter"] + 1})

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(bump)
    assert (await store.get_workflow(U, "p", "id-1"))["counter"] == 50  # type: ignore[index]


@pytest.mark.anyio
async def test_listing_ignores_junk_and_caches(store: FileProjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "projects" / U / "p" / "workflows"
    await store.create_workflow(U, "p", wf("id-1", "w"))
    (folder / ".tmp-abc.part").write_text("{torn", "utf-8")
    (folder / "broken.json").write_text("{not json", "utf-8")
    (folder / "list.json").write_text("[]", "utf-8")
    (folder / "noid.json").write_text('{"name": "x"}', "utf-8")
    (folder / "notes.txt").write_text("hello", "utf-8")
    (folder / "dup.json").write_text(json.dumps(wf("id-1", "dup")), "utf-8")  # same id: first by file name wins
    listed = await store.list_workflows(U, "p")
    assert [(s.id, s.name) for s in listed] == [("id-1", "dup")]

    import comfytavern_storage_files.store as module

    reads: list[Path] = []
    real = module._read_object
    monkeypatch.setattr(module, "_read_object", lambda p: reads.append(p) or real(p))
    await store.list_workflows(U, "p")
    assert reads == [], "unchanged files are not parsed again"


@pytest.mark.anyio
async def test_open_sweeps_old_temp_files_only(tmp_path: Path) -> None:
    folder = tmp_path / "projects" / U / "p" / "workflows"
    folder.mkdir(parents=True)
    old, fresh = folder / ".tmp-old.part", folder / ".tmp-new.part"
    old.write_text("x")
    fresh.write_text("x")
    os.utime(old, (0, 0))
    await FileProjectStore(tmp_path / "projects").open()
    assert not old.exists() and fresh.exists()
