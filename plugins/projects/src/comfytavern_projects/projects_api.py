"""``/api/projects``: list, create, read and update metadata, delete (to the recycle bin).

Every metadata object leaves the server through :func:`project_view`, so the editor's strict zod
schema always accepts it (UTC ``Z`` timestamps, optional fields absent rather than ``null``).
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET
from starlette.requests import Request
from starlette.responses import Response

from comfytavern import ApiError, __version__, json_response
from comfytavern.storage.projects import (
    AlreadyExists,
    utc_now_iso,
)

from comfytavern_projects.documents import ProjectCreate, ProjectMetadata, ProjectUpdate, project_view
from comfytavern_projects.common import body_name_id, owner_id, path_id, read_document, store_errors, store_of

__all__ = ["create_project", "delete_project", "get_metadata", "list_projects", "update_project"]


_KNOWN = frozenset(f.encode_name for f in msgspec.structs.fields(ProjectMetadata))


def _view(doc: dict[str, Any], project_id: str) -> ProjectMetadata:
    return project_view(doc, project_id, fallback_time=utc_now_iso(), version=__version__)


async def list_projects(request: Request) -> Response:
    docs = await store_of(request).list_projects(owner_id(request))
    views = sorted((_view(d, d["id"]) for d in docs), key=lambda v: v.id)
    views.sort(key=lambda v: v.updated_at, reverse=True)
    return json_response(views)


async def create_project(request: Request) -> Response:
    _, body = await read_document(request, ProjectCreate)
    project_id = body_name_id(body.name, "project name")
    now = utc_now_iso()
    meta = ProjectMetadata(
        id=project_id,
        name=body.name,
        description=body.description if body.description is not UNSET else f"Project created on {now}",
        version=__version__,
        created_at=now,
        updated_at=now,
        template_used=body.template_used,
        preferred_view=body.preferred_view if body.preferred_view is not UNSET else "editor",
        schema_version=__version__,
        enable_chat_page=body.enable_chat_page if body.enable_chat_page is not UNSET else True,
        custom_metadata=body.custom_metadata,
    )
    try:
        await store_of(request).create_project(owner_id(request), project_id, msgspec.to_builtins(meta))
    except AlreadyExists:
        raise ApiError(
            409, f"Project with ID '{project_id}' (derived from name '{body.name}') already exists."
        ) from None
    return json_response(meta, status=201)


async def get_metadata(request: Request) -> Response:
    project_id = path_id(request, "projectId", "project id")
    doc = await store_of(request).get_project(owner_id(request), project_id)
    if doc is None:
        raise ApiError(404, f"Project '{project_id}' not found.")
    return json_response(_view(doc, project_id))


async def update_project(request: Request) -> Response:
    """``PUT /api/projects/{id}`` and ``.../metadata``: a partial update; the id never changes."""
    project_id = path_id(request, "projectId", "project id")
    _, body = await read_document(request, ProjectUpdate)
    if body.id is not UNSET and body.id != project_id:
        raise ApiError(400, f"Project ID in body ('{body.id}') does not match URL parameter ('{project_id}').")
    if body.name is not UNSET and not body.name.strip():
        raise ApiError(422, "validation failed", [{"path": "$.name", "message": "project name must not be blank"}])
    now = utc_now_iso()

    def change(doc: dict[str, Any]) -> dict[str, Any]:
        # Known fields come from the (repaired) view; fields this server does not know are kept.
        out = {k: v for k, v in doc.items() if k not in _KNOWN}
        out.update(msgspec.to_builtins(_view(doc, project_id)))
        for field in msgspec.structs.fields(ProjectUpdate):
            value = getattr(body, field.name)
            if field.name != "id" and value is not UNSET:
                out[field.encode_name] = value
        out["updatedAt"] = now
        return out

    with store_errors():
        updated = await store_of(request).update_project(owner_id(request), project_id, change)
    return json_response(_view(updated, project_id))


async def delete_project(request: Request) -> Response:
    project_id = path_id(request, "projectId", "project id")
    with store_errors():
        await store_of(request).delete_project(owner_id(request), project_id)
    return Response(status_code=204)
