"""Client scripts: ES modules the editor ``import()``s cross-origin, served from each pack's files.

Only ``.js`` files inside the folder of the module that defines the node are served; a path
with ``..``, empty or hidden segments, a backslash or a symlink leading outside is a 400. These
routes are public: a browser's dynamic ``import()`` sends no credentials, and the files are the
packs' own code. CORS is added globally by the kernel.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from starlette.requests import Request
from starlette.responses import Response

from comfytavern import ApiError
from comfytavern.nodes.client_scripts import ScriptPathError, client_script_path
from comfytavern_nodes_routes.listing import Endpoint

if TYPE_CHECKING:
    from comfytavern.kernel import Kernel

__all__ = ["LEGACY_FOLDER", "legacy_script_endpoint", "node_script_endpoint"]

#: The legacy URL ``/client-scripts/<path>`` looks in this sub-folder of every pack folder.
LEGACY_FOLDER = "client-scripts"

_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
_MEDIA_TYPE = "application/javascript; charset=utf-8"


def _find(folders: list[Path], relative: str) -> bytes | None:
    """The first existing script among ``folders`` (all paths are validated first)."""
    try:
        candidates = [client_script_path(folder, relative) for folder in folders or [Path.cwd()]]
    except ScriptPathError as exc:
        raise ApiError(400, str(exc)) from None
    for path in candidates if folders else []:
        if path.is_file():
            return path.read_bytes()
    return None


def _script(body: bytes) -> Response:
    return Response(body, media_type=_MEDIA_TYPE, headers=_HEADERS)


def node_script_endpoint(kernel: Kernel) -> Endpoint:
    async def node_client_script(request: Request) -> Response:
        namespace = request.path_params["namespace"]
        type_ = request.path_params["type"]
        relative = request.path_params["path"]
        full_type = f"{namespace}:{type_}"
        found = kernel.registry.current.get(full_type)
        if found is None:
            raise ApiError(404, f"node type {full_type} is not registered")
        if found.source_dir is None:
            raise ApiError(404, f"node type {full_type} has no client scripts")
        body = await anyio.to_thread.run_sync(_find, [found.source_dir], relative)
        if body is None:
            raise ApiError(404, f"client script {relative!r} of node type {full_type} not found")
        return _script(body)

    return node_client_script


def legacy_script_endpoint(kernel: Kernel) -> Endpoint:
    async def legacy_client_script(request: Request) -> Response:
        relative = request.path_params["path"]
        folders: list[Path] = []
        for item in kernel.registry.current.nodes.values():
            if item.source_dir is not None and item.source_dir / LEGACY_FOLDER not in folders:
                folders.append(item.source_dir / LEGACY_FOLDER)
        body = await anyio.to_thread.run_sync(_find, folders, relative)
        if body is None:
            raise ApiError(404, f"client script {relative!r} not found")
        return _script(body)

    return legacy_client_script
