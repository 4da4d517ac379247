"""Routes for projects, their workflows and the global workflow library (``docs/projects.md``).

Every route needs a user (scope group ``projects``) and works inside that user's own data only;
storage is whatever ``storage.projects`` selects (``filesystem`` by default).
"""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute

from comfytavern import hookimpl
from comfytavern.storage.projects import (
    WorkflowObject,
    WorkflowSummary,
)

from comfytavern_projects.documents import ProjectCreate, ProjectMetadata, ProjectUpdate
from comfytavern_projects import library_api, projects_api, workflows_api
from comfytavern_projects.routing import segment_route

__all__ = ["project_routes"]

_PROJECT = "/api/projects/{projectId}"
_WORKFLOW = "/api/projects/{projectId}/workflows/{workflowId}"


def project_routes() -> list[BaseRoute]:
    """The route table; more specific paths first (matching is on raw segments, so order only
    matters between equal segment counts)."""
    common: dict[str, Any] = {"auth": "user", "scope": "projects"}
    projects = {**common, "tags": ["projects"]}
    workflows = {**common, "tags": ["workflows"]}
    return [
        segment_route("/api/projects", projects_api.list_projects, methods=["GET"],
                      summary="List the caller's projects (newest first)", response=list[ProjectMetadata], **projects),
        segment_route("/api/projects", projects_api.create_project, methods=["POST"],
                      summary="Create a project; its id is derived from the name", body=ProjectCreate,
                      response=ProjectMetadata, status=201, responses={400: "unsafe name", 409: "id taken"},
                      **projects),
        segment_route(f"{_PROJECT}/metadata", projects_api.get_metadata, methods=["GET"],
                      summary="A project's metadata", response=ProjectMetadata, responses={404: "no such project"},
                      **projects),
        segment_route(f"{_PROJECT}/metadata", projects_api.update_project, methods=["PUT"],
                      summary="Update a project's metadata (partial; the id never changes)", body=ProjectUpdate,
                      response=ProjectMetadata, responses={404: "no such project"}, **projects),
        segment_route(_PROJECT, projects_api.update_project, methods=["PUT"],
                      summary="Update a project's metadata (same as PUT .../metadata)", body=ProjectUpdate,
                      response=ProjectMetadata, responses={404: "no such project"}, **projects),
        segment_route(_PROJECT, projects_api.delete_project, methods=["DELETE"],
                      summary="Move a project to the caller's recycle bin", status=204,
                      responses={404: "no such project"}, **projects),
        segment_route(f"{_PROJECT}/workflows", workflows_api.list_workflows, methods=["GET"],
                      summary="List a project's workflows", response=list[WorkflowSummary],
                      responses={404: "no such project"}, **workflows),
        segment_route(f"{_PROJECT}/workflows", workflows_api.create_workflow, methods=["POST"],
                      summary="Save a new workflow (answers the full object with its id)", body=WorkflowObject,
                      response=WorkflowObject, status=201, responses={404: "no such project", 409: "name taken"},
                      **workflows),
        segment_route(_WORKFLOW, workflows_api.get_workflow, methods=["GET"],
                      summary="Load a workflow", response=WorkflowObject, responses={404: "no such workflow"},
                      **workflows),
        segment_route(_WORKFLOW, workflows_api.update_workflow, methods=["PUT"],
                      summary="Save over a workflow (a new name moves its file; node-group users are synced)",
                      body=WorkflowObject, response=WorkflowObject,
                      responses={404: "no such workflow", 409: "name taken", 412: "If-Match failed"}, **workflows),
        segment_route(_WORKFLOW, workflows_api.delete_workflow, methods=["DELETE"],
                      summary="Move a workflow to the caller's recycle bin", status=204,
                      responses={404: "no such workflow"}, **workflows),
        segment_route("/api/workflows", library_api.list_library, methods=["GET"],
                      summary="List the global workflow library", response=list[library_api.LibraryItem],
                      **workflows),
        segment_route("/api/workflows", library_api.create_library_workflow, methods=["POST"],
                      summary="Refused (405): the library is read-only", status=405, **workflows),
        segment_route("/api/workflows/{workflowId}", library_api.get_library_workflow, methods=["GET"],
                      summary="Always 404: load workflows through the project API", status=404, **workflows),
        segment_route("/api/workflows/{workflowId}", library_api.update_library_workflow, methods=["PUT"],
                      summary="Refused (405): the library is read-only", status=405, **workflows),
        segment_route("/api/workflows/{workflowId}", library_api.delete_library_workflow, methods=["DELETE"],
                      summary="Refused (405): the library is read-only", status=405, **workflows),
    ]


@hookimpl
def register_scope_groups() -> list[str]:
    return ["projects"]


@hookimpl
def register_routes(kernel: Any) -> list[BaseRoute]:
    return project_routes()
