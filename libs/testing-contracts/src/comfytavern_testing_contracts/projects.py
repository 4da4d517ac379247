"""The behaviour every :class:`~comfytavern.storage.projects.ProjectStore` backend must have.

Subclass :class:`ProjectStoreContract` in a backend's tests and provide an async ``store`` fixture
that yields an opened, empty store::

    class TestMyProjects(ProjectStoreContract):
        @pytest.fixture
        async def store(self, tmp_path):
            store = MyProjectStore(...)
            await store.open()
            yield store
            await store.close()

Backend-specific behaviour (files on disk, a recycle-bin layout, caches) belongs in the backend's
own tests. The module needs ``pytest`` and ``anyio`` (test dependencies) and nothing else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from comfytavern.storage.projects import (
    GROUP_NODE_TYPE,
    AlreadyExists,
    InvalidId,
    ProjectNotFound,
    ProjectStore,
    WorkflowNotFound,
)

__all__ = ["BAD_IDS", "ProjectStoreContract", "workflow_doc"]

U = "default_user"

#: Ids no backend may accept (separators, traversal, NUL, reserved names, leading/trailing junk...).
BAD_IDS = ["..", ".", "../x", "a/b", "a\\b", "x\x00y", "CON", "nul.txt", ".recycle", "", " x", "x.", "z" * 201, "\udcff"]


def workflow_doc(wid: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"id": wid, "name": name, "nodes": [], "edges": [], "viewport": {"x": 0, "y": 0, "zoom": 1}, **extra}


def group_node(node_id: str, target: str) -> dict[str, Any]:
    return {"id": node_id, "type": GROUP_NODE_TYPE, "position": {"x": 0, "y": 0}, "configValues": {"referencedWorkflowId": target}}


@pytest.mark.anyio
class ProjectStoreContract:
    """Inherit this; provide the ``store`` fixture (see the module docstring)."""

    async def test_satisfies_the_protocol(self, store: Any) -> None:
        assert isinstance(store, ProjectStore)

    # -- projects --------------------------------------------------------------------------
    async def test_projects_round_trip_sorted_by_id(self, store: Any) -> None:
        await store.create_project(U, "b", {"id": "b", "name": "Second", "extra": {"kept": [1, "字"]}})
        await store.create_project(U, "a", {"name": "First"})
        listed = await store.list_projects(U)
        assert [p["id"] for p in listed] == ["a", "b"]
        assert listed[1]["extra"] == {"kept": [1, "字"]}
        assert await store.get_project(U, "a") == {"name": "First", "id": "a"}
        assert await store.get_project(U, "nope") is None
        assert await store.list_projects("nobody") == []

    async def test_update_project_is_read_modify_write(self, store: Any) -> None:
        await store.create_project(U, "p", {"id": "p", "name": "p", "n": 0})
        after = await store.update_project(U, "p", lambda d: {**d, "n": d["n"] + 1, "id": "ignored"})
        assert after == {"id": "p", "name": "p", "n": 1}
        assert await store.get_project(U, "p") == after
        with pytest.raises(ProjectNotFound):
            await store.update_project(U, "nope", lambda d: d)

    async def test_delete_project_then_reuse_the_id(self, store: Any) -> None:
        await store.create_project(U, "p", {"id": "p", "name": "old"})
        await store.create_workflow(U, "p", workflow_doc("w1", "w"))
        await store.delete_project(U, "p")
        assert await store.get_project(U, "p") is None
        assert await store.list_projects(U) == []
        assert await store.get_workflow(U, "p", "w1") is None
        with pytest.raises(ProjectNotFound):
            await store.delete_project(U, "p")
        await store.create_project(U, "p", {"id": "p", "name": "new"})
        assert (await store.get_project(U, "p"))["name"] == "new"
        assert await store.list_workflows(U, "p") == []

    async def test_users_are_isolated(self, store: Any) -> None:
        await store.create_project("alice", "p", {"name": "alice's"})
        await store.create_project("bob", "p", {"name": "bob's"})
        await store.create_workflow("alice", "p", workflow_doc("w", "w", owner="alice"))
        assert (await store.get_project("bob", "p"))["name"] == "bob's"
        assert await store.get_workflow("bob", "p", "w") is None
        assert await store.list_workflows("bob", "p") == []
        await store.delete_project("alice", "p")
        assert await store.get_project("bob", "p") is not None

    # -- workflows -------------------------------------------------------------------------
    async def test_workflow_round_trip_keeps_every_field_in_order(self, store: Any) -> None:
        await store.create_project(U, "p", {"name": "p"})
        doc = workflow_doc("id-1", "名字 one", zeta=1, alpha={"kept": [1, 2.5, None, "字"]}, createdAt="2026-01-01T00:00:00.000Z")
        returned = await store.create_workflow(U, "p", doc)
        assert returned == doc
        stored = await store.get_workflow(U, "p", "id-1")
        assert stored == doc and list(stored) == list(doc)

    async def test_list_workflows_by_file_name_with_derived_references(self, store: Any) -> None:
        await store.create_project(U, "p", {"name": "p"})
        await store.create_workflow(U, "p", workflow_doc("id-b", "beta", description="d"))
        await store.create_workflow(U, "p", workflow_doc("id-a", "alpha", nodes=[group_node("g", "id-b"), group_node("h", "id-b")]))
        listed = await store.list_workflows(U, "p")
        assert [(s.id, s.name) for s in listed] == [("id-a", "alpha"), ("id-b", "beta")]
        assert listed[0].referenced_workflows == ["id-b"]
        assert listed[1].description == "d"

    async def test_rename_keeps_the_id_and_refuses_a_taken_name(self, store: Any) -> None:
        await store.create_project(U, "p", {"name": "p"})
        await store.create_workflow(U, "p", workflow_doc("id-1", "old"))
        before, after = await store.update_workflow(U, "p", "id-1", lambda d: {**d, "name": "new"})
        assert before["name"] == "old" and after["name"] == "new"
        assert [s.name for s in await store.list_workflows(U, "p")] == ["new"]
        with pytest.raises(ValueError):
            await store.update_workflow(U, "p", "id-1", lambda d: {**d, "id": "other"})
        await store.create_workflow(U, "p", workflow_doc("id-2", "taken"))
        with pytest.raises(AlreadyExists):
            await store.update_workflow(U, "p", "id-1", lambda d: {**d, "name": "taken"})
        assert (await store.get_workflow(U, "p", "id-1"))["name"] == "new"
        # The old name is free again.
        await store.create_workflow(U, "p", workflow_doc("id-3", "old"))

    async def test_unchanged_update_returns_equal_documents(self, store: Any) -> None:
        await store.create_project(U, "p", {"name": "p"})
        await store.create_workflow(U, "p", workflow_doc("id-1", "w"))
        before, after = await store.update_workflow(U, "p", "id-1", lambda d: d)
        assert before == after == workflow_doc("id-1", "w")

    async def test_conflicts_and_missing(self, store: Any) -> None:
        await store.create_project(U, "p", {"name": "p"})
        await store.create_workflow(U, "p", workflow_doc("id-1", "w"))
        with pytest.raises(AlreadyExists):
            await store.create_workflow(U, "p", workflow_doc("id-1", "other name"))
        with pytest.raises(AlreadyExists):
            await store.create_workflow(U, "p", workflow_doc("id-2", "w"))
        with pytest.raises(AlreadyExists):
            await store.create_project(U, "p", {"name": "p"})
        with pytest.raises(ProjectNotFound):
            await store.create_workflow(U, "nope", workflow_doc("id-3", "w"))
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

    async def test_delete_workflow_then_reuse_id_and_name(self, store: Any) -> None:
        await store.create_project(U, "p", {"name": "p"})
        for _ in range(2):
            await store.create_workflow(U, "p", workflow_doc("id-1", "w"))
            await store.delete_workflow(U, "p", "id-1")
        assert await store.get_workflow(U, "p", "id-1") is None
        assert await store.list_workflows(U, "p") == []

    @pytest.mark.parametrize("bad", BAD_IDS)
    async def test_unsafe_ids_are_rejected(self, store: Any, bad: str) -> None:
        await store.create_project(U, "p", {"name": "p"})
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: store.get_project(U, bad),
            lambda: store.create_project(U, bad, {}),
            lambda: store.create_project(bad, "p2", {}),
            lambda: store.list_workflows(U, bad),
            lambda: store.delete_project(U, bad),
            lambda: store.list_projects(bad),
        ]
        if bad == bad.strip():
            # A workflow *name* is trimmed first (" x" names "x"), then held to the same rules.
            calls.append(lambda: store.create_workflow(U, "p", workflow_doc("w", bad)))
        for call in calls:
            with pytest.raises(InvalidId):
                await call()
        assert await store.get_workflow(U, bad, "x") is None
        assert [p["id"] for p in await store.list_projects(U)] == ["p"]
        assert await store.list_workflows(U, "p") == []

    async def test_parallel_updates_lose_nothing(self, store: Any) -> None:
        """Fifty concurrent read-modify-writes of one workflow: every increment survives."""
        await store.create_project(U, "p", {"name": "p"})
        await store.create_workflow(U, "p", workflow_doc("id-1", "w", counter=0))

        async def bump() -> None:
            await store.update_workflow(U, "p", "id-1", lambda d: {**d, "counter": d["counter"] + 1})

        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(bump)
        assert (await store.get_workflow(U, "p", "id-1"))["counter"] == 50
