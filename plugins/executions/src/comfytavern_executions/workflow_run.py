"""``POST /api/projects/{projectId}/workflows/{workflowId}/run``: run a stored workflow by reference.

A script sends the interface input values only (``{"inputs": {...}}``); the server loads the
caller's stored workflow, builds the execution payload the editor would have sent
(:func:`comfytavern_stored_runs.stored_run_payload`), and queues it like ``POST /api/prompt``:
the answer is ``{promptId}``, or with ``?wait=`` the run record, whose ``interfaceOutputs`` are
the result. Node groups inside expand on the server. Workflows are looked up in the caller's own
projects only, so another user's workflow is a 404 like a missing one.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from comfytavern.auth import current_principal
from comfytavern.engine import WorkflowInvalid
from comfytavern.http import ApiError, JsonTooDeep, decode_json, require_json_content_type, route, validation_details
from comfytavern.safety import UnsafeName
from comfytavern.storage import StorageNotConfigured
from comfytavern.storage.projects import check_id
from comfytavern_executions.common import PromptAccepted, seconds_param, submit_and_answer
from comfytavern_executions.settings import ExecutionsSettings
from comfytavern_stored_runs import InterfaceInputError, stored_run_payload

__all__ = ["RunWorkflowBody", "workflow_routes"]

PATH = "/api/projects/{projectId}/workflows/{workflowId}/run"


class RunWorkflowBody(msgspec.Struct, forbid_unknown_fields=True):
    """The values of the workflow's interface inputs, by key (``null`` = use the default)."""

    inputs: dict[str, Any] = msgspec.field(default_factory=dict)


def _path_id(request: Request, param: str, what: str) -> str:
    try:
        return check_id(request.path_params[param], what=what)
    except UnsafeName as exc:
        raise ApiError(400, f"invalid {what}", [{"path": param, "message": str(exc)}]) from None


async def _body(request: Request) -> RunWorkflowBody:
    """The body, optional (no inputs): 415 for a non-JSON type, 400 for malformed or too deep JSON."""
    require_json_content_type(request)
    raw = await request.body()
    if not raw.strip():
        return RunWorkflowBody()
    try:
        return msgspec.convert(decode_json(raw), RunWorkflowBody)
    except msgspec.ValidationError as exc:
        raise ApiError(422, "validation failed", validation_details(exc)) from None
    except JsonTooDeep as exc:
        raise ApiError(400, "JSON nested too deeply", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "malformed JSON", validation_details(exc)) from None


def workflow_routes(kernel: Any, settings: ExecutionsSettings) -> list[BaseRoute]:
    async def run(request: Request) -> Response:
        user = current_principal(request)
        project_id = _path_id(request, "projectId", "project id")
        workflow_id = _path_id(request, "workflowId", "workflow id")
        wait = seconds_param(request, "wait", maximum=settings.wait_max_seconds)
        body = await _body(request)
        try:
            store = kernel.storage.projects
        except StorageNotConfigured as exc:
            raise ApiError(503, str(exc)) from None
        if await store.get_project(user.id, project_id) is None:
            raise ApiError(404, f"Project '{project_id}' not found.")
        doc = await store.get_workflow(user.id, project_id, workflow_id)
        if doc is None:
            raise ApiError(404, f"Workflow with ID '{workflow_id}' not found in project '{project_id}'.")
        try:
            payload = stored_run_payload(doc, project_id=project_id, workflow_id=workflow_id, inputs=body.inputs)
        except InterfaceInputError as exc:
            raise ApiError(422, exc.message, exc.details) from None
        except WorkflowInvalid as exc:
            raise ApiError(422, exc.message, exc.details()) from None
        return await submit_and_answer(kernel, payload, user, wait)

    return [
        route(
            PATH,
            run,
            methods=["POST"],
            summary="Run a stored workflow by reference with its interface inputs; ?wait=<s> returns the result",
            description=(
                "Body `{\"inputs\": {<interface input key>: value}}` (may be empty). Loads the caller's "
                "workflow, fills its interface inputs (`null` or absent = the workflow's default), "
                "expands node groups and queues the run like `POST /api/prompt`: answers "
                "`{promptId}`, or with `?wait=<seconds>` the run record (its `interfaceOutputs` are "
                "the result). Follow it with `GET /api/prompt/{id}`, `.../events` or the WebSocket."
            ),
            body=RunWorkflowBody,
            response=PromptAccepted,
            responses={
                400: "malformed JSON or an invalid id",
                404: "no such project or workflow (or not yours)",
                422: "unknown interface input, missing required input, wrong value type, or invalid workflow",
                503: "shutting down, or no projects storage",
            },
            auth="user",
            scope="runs",
            tags=["executions"],
        )
    ]
