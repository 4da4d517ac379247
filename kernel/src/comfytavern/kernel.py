"""The Kernel: one instance per app. It loads plugins, selects the configured auth mode and
storage backends by name, builds the node registry, and runs every plugin's lifespan.

There is no global state: tests build as many kernels as they like, each with its own pluggy
manager, event hub and registry.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, TypeVar

import anyio
import msgspec
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from comfytavern.auth import AuthBackend
from comfytavern.config import Config, ConfigError
from comfytavern.events import EventHub
from comfytavern.nodes.registry import NodeRegistry, RegistryHolder
from comfytavern.nodes.reload import NodeReloadError, NodeSources, ReloadReport, collect_contributions
from comfytavern.plugin_manager import (
    NODE_PACK_GROUP,
    PLUGIN_GROUP,
    PluginError,
    PluginInfo,
    PluginLoader,
)
from comfytavern.records import STORAGE_KINDS, AuthMode, CliCommand, HttpMiddleware, MiddlewareLayer, StorageBackend
from comfytavern.revocation import Revocations
from comfytavern.services import CONFIG, HUB, KERNEL_SERVICES, REVOCATIONS, SCHEDULER, ServiceCatalog, Services
from comfytavern.storage import StorageSet

__all__ = ["Kernel", "StartupError"]

log = logging.getLogger("comfytavern.kernel")

T = TypeVar("T")


class StartupError(Exception):
    """The server cannot start as configured (conflict, missing backend, bad plugin settings)."""


def _middleware_problem(item: Any) -> str | None:
    """Why ``item`` cannot be installed, checked now: Starlette builds the middleware on the first
    request, where a wrong option would fail every request instead of this one plugin."""
    if not isinstance(item, HttpMiddleware):
        return f"{item!r}, not an HttpMiddleware"
    if item.layer not in ("outer", "inner"):
        return f"an unknown layer {item.layer!r} (outer or inner)"
    try:
        inspect.signature(item.cls).bind(None, **item.options)
    except (TypeError, ValueError) as exc:
        return f"{getattr(item.cls, '__qualname__', item.cls)!r} with options it does not take: {exc}"
    return None


def _provider(info: PluginInfo) -> str:
    return f"{info.name} ({info.distribution})" if info.distribution else info.name


class Kernel:
    """Mechanism only: plugins supply routes, auth modes, storage backends and nodes."""

    def __init__(
        self,
        config: Config,
        *,
        plugins: Sequence[Any] = (),
        node_packs: Sequence[Any] = (),
        load_entrypoints: bool = True,
    ) -> None:
        self.config = config
        self.loader = PluginLoader(
            enabled=config.plugins.enabled,
            disabled=config.plugins.disabled,
            strict=config.plugins.strict,
        )
        self.hub = EventHub()
        #: Announcements of ended credentials, for long-lived connections (``comfytavern.revocation``).
        self.revocations = Revocations()
        #: Typed shared objects (``comfytavern.services``); nodes see them as ``ctx.services``.
        self.services = Services()
        self.services.provide(CONFIG, config)
        self.services.provide(HUB, self.hub)
        self.services.provide(REVOCATIONS, self.revocations)
        self.service_catalog = ServiceCatalog(KERNEL_SERVICES)
        self.registry = RegistryHolder()
        self.storage = StorageSet()
        self.auth: AuthBackend | None = None
        self.auth_modes: dict[str, tuple[AuthMode, PluginInfo]] = {}
        self.storage_backends: dict[tuple[str, str], tuple[StorageBackend, PluginInfo]] = {}
        self.started = False
        self.ready = False

        if load_entrypoints:
            self.loader.load_entry_points(PLUGIN_GROUP, "plugin")
            self.loader.load_entry_points(NODE_PACK_GROUP, "node_pack")
        for obj in plugins:
            self.register_plugin(obj)
        for obj in node_packs:
            self.register_plugin(obj, kind="node_pack")

        self._collect_services()
        self._collect_scope_groups()
        self._collect_auth_modes()
        self._collect_storage_backends()
        self._select_storage()
        self._select_auth()
        #: Entry-point packs, in-process packs and custom folders; owns hot reload.
        self.node_sources = NodeSources(self)
        try:
            self.reload_nodes()
        except NodeReloadError as exc:  # only in strict mode: a pack failed to load
            raise StartupError(f"node packs: {exc}") from exc

    # -- plugins ---------------------------------------------------------------------------
    @property
    def pm(self) -> Any:
        return self.loader.pm

    def register_plugin(self, obj: Any, *, kind: str = "plugin", name: str | None = None) -> PluginInfo:
        """Register an in-process plugin object (a module or an object with hookimpls)."""
        plugin_name = name or getattr(obj, "name", None) or getattr(obj, "__name__", None) or type(obj).__name__
        info = PluginInfo(
            name=str(plugin_name),
            kind=kind,  # type: ignore[arg-type]
            module=getattr(obj, "__name__", type(obj).__module__),
            distribution=None,
            version=None,
        )
        if info.name in self.loader.table:
            raise PluginError(f"a plugin named {info.name!r} is already registered")
        self.loader.register(obj, info)
        return info

    def plugin_rows(self) -> list[dict[str, Any]]:
        return [row.as_dict() | self.service_catalog.of(row.name) for row in self.loader.rows()]

    def plugin_settings(self, name: str, type_: type[T]) -> T:
        """``plugins.settings.<name>`` validated into ``type_`` (errors name the key)."""
        raw = self.config.plugins.settings.get(name, {})
        try:
            return msgspec.convert(raw, type_)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"invalid configuration at $.plugins.settings.{name}: {exc}") from None

    def auth_settings(self, mode: str) -> dict[str, Any]:
        return dict(self.config.auth.settings.get(mode, {}))

    def storage_settings(self, backend: str) -> dict[str, Any]:
        return dict(self.config.storage.settings.get(backend, {}))

    def call_each(self, hook_name: str, **kwargs: Any) -> list[tuple[PluginInfo, Any]]:
        return self.loader.call_each(hook_name, kinds=("plugin",), **kwargs)

    # -- services, scope groups and selection by name ---------------------------------------
    def _collect_scope_groups(self) -> None:
        """``scope group -> contributing plugins`` (``server`` is the kernel's own: ``/kernel/plugins``)."""
        groups: dict[str, list[str]] = {"server": ["kernel"]}
        for info, names in self.call_each("register_scope_groups"):
            for name in names or ():
                groups.setdefault(str(name), []).append(info.name)
        #: Every service-key scope group plugins contribute, with who contributes it.
        self.scope_groups = groups

    def _collect_services(self) -> None:
        """Gather every ``register_services`` declaration; a required service nobody provides stops start-up."""
        declared = list(KERNEL_SERVICES)
        for info, uses in self.loader.call_each("register_services"):
            declared.extend((info.name, use) for use in uses or ())
        self.service_catalog = ServiceCatalog(declared)
        missing = self.service_catalog.missing()
        if missing:
            raise StartupError("; ".join(missing))

    def _collect_auth_modes(self) -> None:
        for info, records in self.call_each("register_auth_modes", kernel=self):
            for record in records or ():
                if record.name in self.auth_modes:
                    other = self.auth_modes[record.name][1]
                    raise StartupError(
                        f"auth mode {record.name!r} is provided by both {_provider(other)} and {_provider(info)}"
                    )
                self.auth_modes[record.name] = (record, info)

    def _collect_storage_backends(self) -> None:
        for info, records in self.call_each("register_storage_backends", kernel=self):
            for record in records or ():
                key = (record.kind, record.name)
                if record.kind not in STORAGE_KINDS:
                    raise StartupError(f"{_provider(info)}: unknown storage kind {record.kind!r}")
                if key in self.storage_backends:
                    other = self.storage_backends[key][1]
                    raise StartupError(
                        f"{record.kind} storage backend {record.name!r} is provided by both "
                        f"{_provider(other)} and {_provider(info)}"
                    )
                self.storage_backends[key] = (record, info)

    def _select_storage(self) -> None:
        for kind in STORAGE_KINDS:
            name = getattr(self.config.storage, kind)
            if name is None:
                continue
            entry = self.storage_backends.get((kind, name))
            if entry is None:
                installed = sorted(n for k, n in self.storage_backends if k == kind)
                raise StartupError(
                    f"$.storage.{kind}: no {kind} storage backend named {name!r} is installed "
                    f"(installed: {', '.join(installed) or 'none'})"
                )
            record, info = entry
            try:
                store = record.factory(self, self.storage_settings(name))
            except (ConfigError, StartupError):
                raise
            except Exception as exc:  # noqa: BLE001
                raise StartupError(f"{kind} storage backend {name!r} ({_provider(info)}) failed: {exc}") from exc
            self.storage.set(kind, store)

    def _select_auth(self) -> None:
        name = self.config.auth.mode
        entry = self.auth_modes.get(name)
        if entry is None:
            raise StartupError(
                f"$.auth.mode: no auth mode named {name!r} is installed "
                f"(installed: {', '.join(sorted(self.auth_modes)) or 'none'})"
            )
        record, info = entry
        try:
            self.auth = record.factory(self, self.auth_settings(name))
        except (ConfigError, StartupError):
            raise
        except Exception as exc:  # noqa: BLE001
            raise StartupError(f"auth mode {name!r} ({_provider(info)}) failed: {exc}") from exc

    # -- nodes -----------------------------------------------------------------------------
    def node_contributions(self) -> list[tuple[str, str, Iterable[Any]]]:
        """``(source, namespace, nodes)`` from every live node pack and folder, validated, in order.

        A pack whose hook raises or whose nodes are invalid is marked failed and left out.
        """
        return list(collect_contributions(self.loader))

    def build_node_registry(self) -> NodeRegistry:
        """A snapshot of the packs registered now (no re-scan, no re-import, no swap)."""
        generation = self.registry.current.generation + 1
        registry = NodeRegistry.build(self.node_contributions(), generation)
        for collision in registry.collisions:
            log.warning(collision.describe())
        return registry

    def reload_nodes(self) -> NodeRegistry:
        """Re-scan entry points and custom folders, re-import changed code, swap in one step.

        Blocking (imports run on this thread); from async code use :meth:`reload_nodes_async`.
        Raises :class:`~comfytavern.nodes.reload.NodeReloadError` with the previous snapshot
        still live. A single broken pack is not an error: it is listed in the plugin table.
        """
        return self.node_sources.reload().registry

    async def reload_nodes_async(self) -> ReloadReport:
        """:meth:`reload_nodes` with the imports in a worker thread; returns the full report."""
        return await self.node_sources.reload_async()

    # -- routes ----------------------------------------------------------------------------
    def plugin_routes(self) -> list[BaseRoute]:
        """Every plugin's routes plus the auth mode's, checked for duplicate paths.

        Routes flagged ``route.fallback = True`` (catch-alls such as the static frontend's
        ``Mount("/")``) are placed after every other route, so kernel routes and every plugin's
        routes win whatever the plugin load order. ``route.fallback = 2`` (or higher) goes after
        those too: a default that answers only when no catch-all does (the server's home page).
        """
        claimed: dict[str, str] = {}
        routes: list[BaseRoute] = []

        def claim(route: BaseRoute, owner: str) -> None:
            for key in _route_keys(route):
                if key in claimed:
                    raise StartupError(f"route {key} is provided by both {claimed[key]} and {owner}")
                claimed[key] = owner
            routes.append(route)

        for info, items in self.call_each("register_routes", kernel=self):
            for item in items or ():
                claim(item, _provider(info))
        if self.auth is not None:
            for item in self.auth.routes():
                claim(item, f"auth mode {self.config.auth.mode!r}")
        return sorted(routes, key=_fallback_rank)  # stable: same rank keeps registration order

    def plugin_middleware(self) -> dict[MiddlewareLayer, list[HttpMiddleware]]:
        """Every plugin's middleware by layer, in plugin load order (the first is outermost)."""
        out: dict[MiddlewareLayer, list[HttpMiddleware]] = {"outer": [], "inner": []}
        for info, items in self.call_each("register_middleware", kernel=self):
            items = list(items or ())
            problem = next((p for p in map(_middleware_problem, items) if p), None)
            if problem:  # none of this plugin's middleware: half a set could do more harm than none
                self.loader.fail(info.name, PluginError(f"register_middleware returned {problem}"))
                continue
            for item in items:
                out[item.layer].append(item)
        return out

    def commands(self) -> list[CliCommand]:
        out: list[CliCommand] = []
        for _, items in self.call_each("register_commands", kernel=self):
            out.extend(items or ())
        return out

    # -- life-cycle ------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Open stores and the auth mode, enter plugin lifespans (LIFO exit), run observers."""
        try:
            async with self._lifespan_resources():
                yield
        except BaseExceptionGroup as group:
            # Task groups wrap errors; a start-up failure should read as itself.
            leaf = _single_leaf(group)
            if leaf is None:
                raise
            raise leaf from None

    @contextlib.asynccontextmanager
    async def _lifespan_resources(self) -> AsyncIterator[None]:
        timeout = self.config.server.lifespan_timeout_seconds
        async with contextlib.AsyncExitStack() as stack:
            for kind, store in self.storage.items():
                await _open_resource(stack, store, f"{kind} storage", timeout)
            if self.auth is not None:
                await _open_resource(stack, self.auth, f"auth mode {self.config.auth.mode!r}", timeout)
            lifespans = [(info, cm) for info, cm in self.call_each("lifespan", kernel=self) if cm is not None]
            if lifespans:
                # Each plugin lifespan runs in its own task, so it may keep a task group (or any
                # cancel scope) open from start-up to shutdown.
                plugin_tasks = await stack.enter_async_context(anyio.create_task_group())
                stack.callback(plugin_tasks.cancel_scope.cancel)  # runs after every stop below
                for info, cm in lifespans:
                    await _start_lifespan(stack, plugin_tasks, cm, f"plugin {info.name!r} lifespan", timeout)
            from comfytavern.engine.scheduler import Scheduler
            from comfytavern.observers import run_observers

            async with anyio.create_task_group() as tg:
                await tg.start(run_observers, self)
                # The scheduler starts after plugin lifespans (nodes may use their services) and
                # stops before them, recording runs cut off by the shutdown as interrupted.
                scheduler = Scheduler.from_kernel(self)
                await tg.start(scheduler.serve)
                self.services.provide(SCHEDULER, scheduler)
                self.started = True
                self.ready = True
                try:
                    yield
                finally:
                    self.ready = False
                    tg.cancel_scope.cancel()
        self.started = False


async def _open_resource(stack: contextlib.AsyncExitStack, resource: Any, what: str, timeout: float) -> None:
    opener = getattr(resource, "open", None)
    closer = getattr(resource, "close", None)
    if opener is not None:
        try:
            with anyio.fail_after(timeout):
                await opener()
        except TimeoutError:
            raise StartupError(f"{what} did not open within {timeout} s") from None
    if closer is not None:

        async def close() -> None:
            with anyio.move_on_after(timeout, shield=True):
                await closer()

        stack.push_async_callback(close)


async def _start_lifespan(
    stack: contextlib.AsyncExitStack,
    tasks: Any,
    cm: contextlib.AbstractAsyncContextManager[Any],
    what: str,
    timeout: float,
) -> None:
    """Enter ``cm`` in a task of ``tasks`` (bounded by ``timeout``); stop it when ``stack`` unwinds."""

    async def runner(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        stop, done = anyio.Event(), anyio.Event()
        entered = False
        try:
            async with cm:
                entered = True
                task_status.started((stop, done))
                await stop.wait()
        except Exception:
            if not entered:
                raise
            log.exception("%s failed while stopping", what)
        finally:
            done.set()

    try:
        with anyio.fail_after(timeout):
            stop, done = await tasks.start(runner)
    except TimeoutError:
        raise StartupError(f"{what} did not start within {timeout} s") from None

    async def stop_it() -> None:
        stop.set()
        with anyio.move_on_after(timeout, shield=True) as scope:
            await done.wait()
        if scope.cancelled_caught:
            log.error("%s did not stop within %s s; cancelling it", what, timeout)

    stack.push_async_callback(stop_it)


def _single_leaf(group: BaseExceptionGroup[Any]) -> BaseException | None:
    """The only exception inside (nested) groups, or None when there are several."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    return leaves[0] if len(leaves) == 1 else None


def _fallback_rank(route: BaseRoute) -> int:
    """0 for ordinary routes, 1 for ``fallback = True``, the number itself for ``fallback = 2...``."""
    value = getattr(route, "fallback", False)
    if value is True:
        return 1
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return 0


def _normalise_path(path: str) -> str:
    import re

    return re.sub(r"\{[^}]+\}", "{}", path)


def _route_keys(route: BaseRoute) -> list[str]:
    if isinstance(route, Route):
        methods = sorted(route.methods or {"GET"})
        return [f"{m} {_normalise_path(route.path)}" for m in methods if m != "HEAD"]
    if isinstance(route, WebSocketRoute):
        return [f"WEBSOCKET {_normalise_path(route.path)}"]
    if isinstance(route, Mount):
        return [f"MOUNT {_normalise_path(route.path)}"]
    return []
