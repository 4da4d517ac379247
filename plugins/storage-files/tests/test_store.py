"""The filesystem projects store: the shared ProjectStore contract, plus what only this backend
has (layout on disk, file names, recycle bin, listing cache, temp-file sweep). Crash safety is in
``test_crash_safety.py``."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from comfytavern.storage.projects import AlreadyExists, InvalidId
from comfytavern_storage_files import FileProjectStore
from comfytavern_testing_contracts.projects import BAD_IDS, ProjectStoreContract, workflow_doc

U = "default_user"


class TestFileProjectStoreContract(ProjectStoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[FileProjectStore]:
        store = FileProjectStore(tmp_path / "projects")
        await store.open()
        yield store


@pytest.fixture
async def store(tmp_path: Path) -> FileProjectStore:
    """An opened store holding one empty project ``p``."""
    s = FileProjectStore(tmp_path / "projects")
    await s.open()
    await s.create_project(U, "p", {"id": "p", "name": "p"})
    return s


@pytest.mark.anyio
async def test_layout_is_one_pretty_json_file_per_workflow(store: FileProjectStore, tmp_path: Path) -> None:
    doc = workflow_doc("id-1", "名字 one", extra={"kept": [1, 2.5, None, "字"]})
    await store.create_workflow(U, "p", doc)
    assert (tmp_path / "projects" / U / "p" / "project.json").is_file()
    path = tmp_path / "projects" / U / "p" / "workflows" / "名字 one.json"
    text = path.read_text("utf-8")
    assert json.loads(text) == doc and text.startswith('{\n  "id": "id-1"') and "名字" in text


@pytest.mark.anyio
async def test_rename_moves_the_file(store: FileProjectStore, tmp_path: Path) -> None:
    await store.create_workflow(U, "p", workflow_doc("id-1", "old"))
    await store.update_workflow(U, "p", "id-1", lambda d: {**d, "name": "new"})
    folder = tmp_path / "projects" / U / "p" / "workflows"
    assert sorted(os.listdir(folder)) == ["new.json"]
    await store.create_workflow(U, "p", workflow_doc("id-2", "taken"))
    with pytest.raises(AlreadyExists):
        await store.update_workflow(U, "p", "id-1", lambda d: {**d, "name": "taken"})
    assert sorted(os.listdir(folder)) == ["new.json", "taken.json"]


@pytest.mark.anyio
async def test_unchanged_document_is_not_rewritten(store: FileProjectStore, tmp_path: Path) -> None:
    await store.create_workflow(U, "p", workflow_doc("id-1", "w"))
    path = tmp_path / "projects" / U / "p" / "workflows" / "w.json"
    inode = path.stat().st_ino
    await store.update_workflow(U, "p", "id-1", lambda d: d)
    assert path.stat().st_ino == inode


@pytest.mark.anyio
async def test_foreign_file_names_are_kept_until_renamed(store: FileProjectStore, tmp_path: Path) -> None:
    """A file another tool named (here the original backend's sanitised name) keeps its name."""
    folder = tmp_path / "projects" / U / "p" / "workflows"
    (folder / "a_b.json").write_text(json.dumps(workflow_doc("legacy", "a/b")), "utf-8")
    _, after = await store.update_workflow(U, "p", "legacy", lambda d: {**d, "description": "x"})
    assert after["description"] == "x" and os.listdir(folder) == ["a_b.json"]


@pytest.mark.anyio
@pytest.mark.parametrize("bad", BAD_IDS)
async def test_unsafe_ids_touch_no_file(store: FileProjectStore, tmp_path: Path, bad: str) -> None:
    """The contract asserts these raise ``InvalidId``; here: they do so before any file access."""
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    for call in (
        lambda: store.get_project(U, bad),
        lambda: store.create_project(U, bad, {}),
        lambda: store.create_project(bad, "p2", {}),
        lambda: store.list_workflows(U, bad),
        lambda: store.delete_project(U, bad),
        lambda: store.list_projects(bad),
        lambda: store.get_workflow(U, bad, "x"),
        # A workflow *name* is trimmed first (" x" names the file "x.json"), then held to the same rules.
        *([lambda: store.create_workflow(U, "p", workflow_doc("w", bad))] if bad == bad.strip() else []),
    ):
        with contextlib.suppress(InvalidId):
            await call()
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
    await store.create_workflow(U, "p", workflow_doc("id-1", "w"))
    await store.delete_workflow(U, "p", "id-1")
    await store.create_workflow(U, "p", workflow_doc("id-1", "w"))  # the same id again, recycled twice
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
async def test_listing_ignores_junk_and_caches(store: FileProjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "projects" / U / "p" / "workflows"
    await store.create_workflow(U, "p", workflow_doc("id-1", "w"))
    (folder / ".tmp-abc.part").write_text("{torn", "utf-8")
    (folder / "broken.json").write_text("{not json", "utf-8")
    (folder / "list.json").write_text("[]", "utf-8")
    (folder / "noid.json").write_text('{"name": "x"}', "utf-8")
    (folder / "notes.txt").write_text("hello", "utf-8")
    (folder / "dup.json").write_text(json.dumps(workflow_doc("id-1", "dup")), "utf-8")  # same id: first by file name wins
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
