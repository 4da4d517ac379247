"""``/api/projects/{projectId}/workflows``: list, create, read, update (rename moves the file),
delete (to the recycle bin).

The stored object is what the editor sent (unknown fields kept) plus the server-managed ``id``,
``createdAt``, ``updatedAt`` and a ``referencedWorkflows`` that agrees with the NodeGroup nodes.
Responses carry an ``ETag``; a PUT with ``If-Match`` that no longer matches answers 412.
"""

from __future__ import annotations

import uuid
from typing import Any

from msgspec import UNSET
from starlette.requests import Request
from starlette.responses import Response

from comfytavern import ApiError, __version__, json_response
from comfytavern.storage.projects import (
    ProjectNotFound,
    ProjectStore,
    WorkflowNotFound,
    WorkflowObject,
    normalise_timestamp,
    utc_now_iso,
)

from comfytavern_projects.common import (
    body_id,
    body_name_id,
    etag_of,
    owner_id,
    path_id,
    read_document,
    store_errors,
    store_of,
)
from comfytavern_projects.groups import normalise_references, sync_group_users

__all__ = ["create_workflow", "delete_workflow", "get_workflow", "list_workflows", "update_workflow"]


def _ids(request: Request) -> tuple[str, str]:
    return path_id(request, "projectId", "project id"), path_id(request, "workflowId", "workflow id")


def _not_found(project_id: str, workflow_id: str) -> ApiError:
    return ApiError(404, f"Workflow with ID '{workflow_id}' not found in project '{project_id}'.")


def _with_etag(doc: dict[str, Any], status: int = 200) -> Response:
    return json_response(doc, status=status, headers={"ETag": etag_of(doc)})


async def _touch_project(store: ProjectStore, user_id: str, project_id: str, now: str) -> None:
    """The project's ``updatedAt`` follows its workflows (the project list sorts by it)."""
    try:
        await store.update_project(user_id, project_id, lambda doc: {**doc, "updatedAt": now})
    except ProjectNotFound:
        pass


async def list_workflows(request: Request) -> Response:
    project_id = path_id(request, "projectId", "project id")
    with store_errors():
        summaries = await store_of(request).list_workflows(owner_id(request), project_id)
    return json_response(summaries)


async def create_workflow(request: Request) -> Response:
    """Save a new workflow: 201 with the full stored object, ``id`` included."""
    project_id = path_id(request, "projectId", "project id")
    raw, body = await read_document(request, WorkflowObject)
    body_name_id(body.name, "workflow name")
    if body.id is not UNSET:
        workflow_id = body_id(body.id, "workflow id", field="$.id")
    else:
        workflow_id = str(uuid.uuid4())
    now = utc_now_iso()
    doc: dict[str, Any] = {"id": workflow_id, **{k: v for k, v in raw.items() if k != "id"}}
    doc["createdAt"] = now
    doc["updatedAt"] = now
    if not isinstance(doc.get("version"), str):
        doc["version"] = __version__
    doc.setdefault("interfaceInputs", {})
    doc.setdefault("interfaceOutputs", {})
    normalise_references(doc)

    store, user_id = store_of(request), owner_id(request)
    with store_errors():
        await store.create_workflow(user_id, project_id, doc)
    await _touch_project(store, user_id, project_id, now)
    await sync_group_users(store, user_id, project_id, doc)
    return _with_etag(doc, status=201)


async def get_workflow(request: Request) -> Response:
    project_id, workflow_id = _ids(request)
    doc = await store_of(request).get_workflow(owner_id(request), project_id, workflow_id)
    if doc is None:
        raise _not_found(project_id, workflow_id)
    return _with_etag(doc)


def _if_match(request: Request, current: dict[str, Any]) -> None:
    header = request.headers.get("if-match")
    if header is None or header.strip() == "*":
        return
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    if etag_of(current) not in tags:
        raise ApiError(412, "The workflow was changed since it was loaded (If-Match does not match its ETag).")


async def update_workflow(request: Request) -> Response:
    """Save over an existing workflow: the body is merged over the stored object, the id stays,
    a new name moves the file (409 if that name is taken)."""
    project_id, workflow_id = _ids(request)
    raw, body = await read_document(request, WorkflowObject)
    if body.id is not UNSET and body.id != workflow_id:
        raise ApiError(400, f"Workflow ID in body ('{body.id}') does not match URL parameter ('{workflow_id}').")
    body_name_id(body.name, "workflow name")
    now = utc_now_iso()

    def change(existing: dict[str, Any]) -> dict[str, Any]:
        _if_match(request, existing)
        merged = {**existing, **raw, "id": workflow_id}
        merged["createdAt"] = normalise_timestamp(existing.get("createdAt")) or now
        merged["updatedAt"] = now
        if not isinstance(merged.get("version"), str):
            merged["version"] = __version__
        normalise_references(merged)
        return merged

    store, user_id = store_of(request), owner_id(request)
    with store_errors():
        try:
            _, saved = await store.update_workflow(user_id, project_id, workflow_id, change)
        except (ProjectNotFound, WorkflowNotFound):
            raise _not_found(project_id, workflow_id) from None
    await _touch_project(store, user_id, project_id, now)
    await sync_group_users(store, user_id, project_id, saved)
    return _with_etag(saved)


async def delete_workflow(request: Request) -> Response:
    project_id, workflow_id = _ids(request)
    store, user_id = store_of(request), owner_id(request)
    with store_errors():
        try:
            await store.delete_workflow(user_id, project_id, workflow_id)
        except (ProjectNotFound, WorkflowNotFound):
            raise _not_found(project_id, workflow_id) from None
    await _touch_project(store, user_id, project_id, utc_now_iso())
    return Response(status_code=204)
