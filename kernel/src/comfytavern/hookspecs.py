# mypy: disable-error-code="empty-body"
"""The hook specifications: the single source of truth for what plugins can contribute.

Registration hooks are synchronous and return typed records; the kernel calls each
implementation on its own so every record is attributed to its plugin and a failing plugin is
isolated. Every spec here is documented in ``docs/hooks.md`` and covered by a test (a meta-test
enforces both).
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

import pluggy
from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from comfytavern.events import HubEvent
    from comfytavern.kernel import Kernel
    from comfytavern.nodes.definition import Node
    from comfytavern.records import AuthMode, CliCommand, HttpMiddleware, StorageBackend
    from comfytavern.services import ServiceUse

PROJECT_NAME = "comfytavern"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: Hooks a node pack (entry-point group ``comfytavern.node_packs``) may implement.
NODE_PACK_HOOKS = frozenset({"register_nodes", "register_services"})


@hookspec
def register_routes(kernel: Kernel) -> Sequence[BaseRoute]:
    """Return Starlette routes (``Route``, ``WebSocketRoute``, ``Mount``) to serve.

    Paths are absolute (the editor needs ``/api/...``). Two plugins claiming the same method and
    path stop start-up naming both. Use :func:`comfytavern.http.route` to attach documentation
    and an access rule::

        @hookimpl
        def register_routes(kernel):
            async def hello(request):
                return json_response({"hello": "world"})
            return [route("/api/hello", hello, summary="Say hello", auth="public")]
    """


@hookspec
def register_middleware(kernel: Kernel) -> Sequence[HttpMiddleware]:
    """Return ASGI middleware to wrap around every route (see :class:`comfytavern.HttpMiddleware`).

    Called once when the app is built; ``layer`` says where among the kernel's own middleware it
    runs (``outer``: sees every request; ``inner``: after auth)::

        @hookimpl
        def register_middleware(kernel):
            return [HttpMiddleware(ServerTimingMiddleware, {"label": "app"}, layer="outer")]
    """


@hookspec
def register_auth_modes(kernel: Kernel) -> Sequence[AuthMode]:
    """Return auth modes; ``auth.mode`` in the configuration selects one by name::

        @hookimpl
        def register_auth_modes(kernel):
            return [AuthMode("token", factory=lambda kernel, settings: TokenAuth(settings))]
    """


@hookspec
def register_storage_backends(kernel: Kernel) -> Sequence[StorageBackend]:
    """Return storage backends; ``storage.<kind>`` selects one per kind by name::

        @hookimpl
        def register_storage_backends(kernel):
            return [StorageBackend("memory", "projects", factory=lambda kernel, s: MemoryProjects())]
    """


@hookspec
def register_nodes() -> Iterable[Node]:
    """Return node definitions (see :func:`comfytavern.node`). The only hook a node pack may use::

        @hookimpl
        def register_nodes():
            return [echo]
    """


@hookspec
def register_commands(kernel: Kernel) -> Sequence[CliCommand]:
    """Return ``comfytavern`` CLI sub-commands::

        @hookimpl
        def register_commands(kernel):
            return [CliCommand("hello", "Print hello", run=lambda kernel, args: print("hi") or 0)]
    """


@hookspec
def lifespan(kernel: Kernel) -> AbstractAsyncContextManager[None] | None:
    """Return an async context manager entered at start-up and exited at shutdown (LIFO).

    Each entry and exit is bounded by ``server.lifespan_timeout_seconds``::

        @hookimpl
        def lifespan(kernel):
            @contextlib.asynccontextmanager
            async def run():
                client = httpx.AsyncClient()
                kernel.services.provide(HTTP_CLIENT, client)   # HTTP_CLIENT: ServiceKey[httpx.AsyncClient]
                yield
                kernel.services.withdraw(HTTP_CLIENT, client)
                await client.aclose()
            return run()
    """


@hookspec
def register_services() -> Sequence[ServiceUse]:
    """Declare the typed services (:mod:`comfytavern.services`) this plugin provides, requires or uses.

    Declarations feed the plugin table (``comfytavern plugins``, ``GET /kernel/plugins``) and the
    start-up check: a service some loaded plugin ``requires`` that nothing ``provides`` stops
    start-up naming it. Node packs may implement this hook too::

        @hookimpl
        def register_services():
            return [provides(CREDENTIALS), requires(SCHEDULER), uses(RUN_QUEUE)]
    """


@hookspec
def register_scope_groups() -> Sequence[str]:
    """Name the service-key scope groups this plugin's routes or messages use (``<group>:read``...).

    Keys may only be created for a known group: those named here by any loaded plugin, plus any a
    mounted route declares with ``route(..., scope=...)``::

        @hookimpl
        def register_scope_groups():
            return ["hello"]
    """


@hookspec
def detect_editor_dialect(kernel: Kernel) -> str | None:
    """Name the editor dialect of the editor build this plugin serves, or ``None`` if unknown.

    Consulted once at start-up when ``editor.dialect`` is ``auto`` (the static-frontend plugin
    implements it; the editor-dialect plugin asks). Return ``"2025-10"`` or ``"seed-2025-06"``::

        @hookimpl
        def detect_editor_dialect(kernel):
            return "seed-2025-06"
    """


@hookspec
def on_execution_event(event: HubEvent) -> Awaitable[None] | None:
    """Observe every execution event (run and node status, chunks, queue updates).

    Called off the engine's hot path by a dispatcher task; a returned awaitable is awaited with a
    time limit; exceptions are logged and dropped::

        @hookimpl
        def on_execution_event(event):
            if event.type == "EXECUTION_STATUS_UPDATE":
                print(event.prompt_id, event.payload["status"])
    """
