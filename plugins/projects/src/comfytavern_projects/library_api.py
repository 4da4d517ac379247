"""``/api/workflows``: the read-only global library (``data.library_workflows``).

Only the listing is served; single workflows are reached through the project API, and writes are
refused with 405 and a JSON error (as the original does), with an ``Allow`` header.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import anyio.to_thread
import msgspec
from starlette.requests import Request
from starlette.responses import Response

from comfytavern import ApiError, json_response

from comfytavern_projects.common import path_id

__all__ = [
    "LibraryItem",
    "create_library_workflow",
    "delete_library_workflow",
    "get_library_workflow",
    "list_library",
    "scan_library",
    "update_library_workflow",
]

log = logging.getLogger("comfytavern.projects")

_READ_ONLY = {"Allow": "GET"}
_USE_PROJECTS = "Please use the project-specific API."


class LibraryItem(msgspec.Struct):
    id: str
    name: str


def scan_library(folder: Path) -> list[LibraryItem]:
    """Every ``*.json`` object in ``folder`` (not below it): id = file stem, name = its ``name``."""
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    items: list[LibraryItem] = []
    for entry in entries:
        if entry.name.startswith(".") or not entry.name.endswith(".json"):
            continue
        if not entry.is_file(follow_symlinks=False):
            continue
        try:
            doc: Any = msgspec.json.decode(Path(entry.path).read_bytes())
        except (OSError, msgspec.DecodeError) as exc:
            log.warning("library workflow %s skipped: %s", entry.path, exc)
            continue
        if not isinstance(doc, dict):
            log.warning("library workflow %s skipped: not a JSON object", entry.path)
            continue
        stem = entry.name[: -len(".json")]
        name = doc.get("name")
        items.append(LibraryItem(id=stem, name=name if isinstance(name, str) and name else stem))
    return sorted(items, key=lambda item: item.id)


async def list_library(request: Request) -> Response:
    folder = request.app.state.kernel.config.data_path("library_workflows")
    return json_response(await anyio.to_thread.run_sync(scan_library, folder))


async def get_library_workflow(request: Request) -> Response:
    workflow_id = path_id(request, "workflowId", "workflow id")
    raise ApiError(
        404,
        f"Workflow with ID '{workflow_id}' not found (global access disabled). Access via project API if applicable.",
        {"projectApi": "/api/projects/{projectId}/workflows/{workflowId}"},
    )


async def create_library_workflow(request: Request) -> Response:
    raise ApiError(405, f"Creating global workflows is disabled. {_USE_PROJECTS}", headers=_READ_ONLY)


async def update_library_workflow(request: Request) -> Response:
    workflow_id = path_id(request, "workflowId", "workflow id")
    raise ApiError(405, f"Updating global workflow '{workflow_id}' is disabled. {_USE_PROJECTS}", headers=_READ_ONLY)


async def delete_library_workflow(request: Request) -> Response:
    workflow_id = path_id(request, "workflowId", "workflow id")
    raise ApiError(405, f"Deleting global workflow '{workflow_id}' is disabled. {_USE_PROJECTS}", headers=_READ_ONLY)
