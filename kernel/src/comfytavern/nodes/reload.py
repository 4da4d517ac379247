"""Hot reload of node packs: prepare a complete new state on the side, then swap it in at once.

A reload never empties the live registry. :meth:`NodeSources.stage` re-scans the
``comfytavern.node_packs`` entry points and the custom folders into a *separate* plugin loader,
re-imports only the packs whose code changed (file fingerprints), collects and validates their
nodes and builds the new snapshot (JSON encoded, ETag computed). Only then does
:meth:`NodeSources.commit` replace the node rows of the kernel's plugin table and swap the
registry, in one step on the calling thread. If staging fails (strict mode, an internal error),
nothing live has changed. Runs keep the snapshot they started with, so they finish on the code
they started with.

A pack that fails (import error, bad node, hook raised) is reported in the plugin table and the
others still load; that is a successful reload with a failure listed in its message.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import logging
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from comfytavern.nodes.discovery import (
    FolderModule,
    FolderPack,
    NodePackError,
    fingerprint,
    forget_folder_module,
    import_folder_module,
    invalidate_bytecode,
    module_files,
    pack_nodes,
    purge_modules,
    python_files,
    scan_folder,
)
from comfytavern.nodes.registry import NodeCollision, NodeRegistry
from comfytavern.nodes.validation import pack_problems
from comfytavern.plugin_manager import NODE_PACK_GROUP, PluginError, PluginInfo, PluginKind, PluginLoader

if TYPE_CHECKING:
    from comfytavern.kernel import Kernel

__all__ = ["NODE_KINDS", "NodeReloadError", "NodeSources", "ReloadReport", "collect_contributions"]

log = logging.getLogger("comfytavern.nodes")

NODE_KINDS: tuple[PluginKind, ...] = ("node_pack", "node_folder")


class NodeReloadError(Exception):
    """The reload could not be completed; the previous registry is still live."""


@dataclass(frozen=True)
class ReloadReport:
    """What a reload produced (the route turns it into ``{success, message, count}``)."""

    registry: NodeRegistry
    loaded: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]
    collisions: tuple[NodeCollision, ...]

    @property
    def count(self) -> int:
        return len(self.registry)

    @property
    def message(self) -> str:
        parts = [f"Reloaded {self.count} node types from {len(self.loaded)} node packs."]
        if self.failed:
            names = ", ".join(name for name, _ in self.failed)
            parts.append(f"{len(self.failed)} failed to load: {names} (errors at GET /kernel/plugins).")
        if self.collisions:
            parts.append(
                f"{len(self.collisions)} duplicate node types ignored: "
                + " ".join(c.describe() + "." for c in self.collisions)
            )
        return " ".join(parts)


@dataclass(frozen=True)
class _EntryStamp:
    """What an entry-point pack looked like when it was imported."""

    value: str
    version: str | None
    roots: tuple[Path, ...]
    fingerprint: str

    @property
    def module(self) -> str:
        return _module_part(self.value)

    def files_now(self) -> list[Path]:
        return python_files(self.roots)

    def changed(self) -> bool:
        return fingerprint(self.files_now(), self.value) != self.fingerprint


@dataclass(frozen=True)
class _FolderStamp:
    fingerprint: str
    pack: FolderPack


@dataclass
class _Staged:
    loader: PluginLoader
    registry: NodeRegistry
    base_generation: int
    entry_stamps: dict[str, _EntryStamp]
    folder_stamps: dict[str, _FolderStamp]
    forget: list[str] = field(default_factory=list)

    def report(self) -> ReloadReport:
        rows = [i for i in self.loader.table.values() if i.kind in NODE_KINDS]
        return ReloadReport(
            registry=self.registry,
            loaded=tuple(i.name for i in rows if i.status == "loaded"),
            failed=tuple((i.name, i.error or "") for i in rows if i.status == "error"),
            collisions=self.registry.collisions,
        )


def _module_part(value: str) -> str:
    return value.split(":", 1)[0].strip()


def _entry_stamp(info: PluginInfo) -> _EntryStamp | None:
    if not info.module:
        return None
    module = sys.modules.get(_module_part(info.module))
    files = module_files(module)
    paths = getattr(module, "__path__", None)
    roots = tuple(Path(p) for p in paths) if paths is not None else tuple(files)
    return _EntryStamp(info.module, info.version, roots, fingerprint(files, info.module))


def _copy_row(loader: PluginLoader, info: PluginInfo, *, retry: bool) -> None:
    """Put a row of the live table into the staging loader (re-registering its object)."""
    row = PluginInfo(
        name=info.name,
        kind=info.kind,
        distribution=info.distribution,
        version=info.version,
        module=info.module,
        namespace=info.namespace,
    )
    if info.obj is not None and info.status != "disabled" and (retry or info.status == "loaded"):
        loader.register(info.obj, row)
        return
    row.status, row.error, row.obj = info.status, info.error, info.obj
    loader.table[info.name] = row


def _fail_new(loader: PluginLoader, row: PluginInfo, exc: BaseException) -> None:
    loader.table[row.name] = row
    loader.fail(row.name, exc)


def collect_contributions(loader: PluginLoader) -> list[tuple[str, str, list[Any]]]:
    """``(source, namespace, nodes)`` of every loaded node pack and folder, in table order.

    Each pack is called and validated on its own: a pack whose hook raises or whose nodes are
    invalid is marked failed in ``loader``'s table (re-raised in strict mode) and left out.
    """
    results = {info.name: result for info, result in loader.call_each("register_nodes", kinds=NODE_KINDS)}
    out: list[tuple[str, str, list[Any]]] = []
    for name, info in list(loader.table.items()):
        if info.kind not in NODE_KINDS or info.status != "loaded":
            continue
        try:
            items = list(results[name] or ()) if name in results else pack_nodes(info.obj)
        except NodePackError as exc:
            loader.fail(name, PluginError(str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - a pack's own code
            loader.fail(name, PluginError(f"register_nodes raised {type(exc).__name__}: {exc}"))
            continue
        namespace = info.namespace or info.name
        problems = pack_problems(items, namespace)
        if problems:
            loader.fail(name, PluginError("; ".join(problems)))
            continue
        info.node_count = len(items)
        out.append((name, namespace, items))
    return out


class NodeSources:
    """Knows where nodes come from and reloads them atomically for one kernel."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self._lock = threading.Lock()
        self._async_lock: anyio.Lock | None = None
        self._adopt = True
        self._folder_stamps: dict[str, _FolderStamp] = {}
        self._entry_stamps: dict[str, _EntryStamp] = {}
        for name, info in kernel.loader.table.items():
            if info.kind == "node_pack" and info.distribution is not None and info.status == "loaded":
                stamp = _entry_stamp(info)
                if stamp is not None:
                    self._entry_stamps[name] = stamp

    # -- public ------------------------------------------------------------------------------
    def reload(self) -> ReloadReport:
        """Stage and commit on this thread (blocking: imports happen here)."""
        return self.commit(self.stage())

    async def reload_async(self) -> ReloadReport:
        """Stage in a worker thread, commit on the event loop; concurrent calls are serialised."""
        if self._async_lock is None:
            self._async_lock = anyio.Lock()
        async with self._async_lock:
            staged = await anyio.to_thread.run_sync(self.stage)
            return self.commit(staged)

    def custom_folders(self) -> list[Path]:
        """``nodes.custom_paths`` resolved against ``data.root`` (duplicates removed)."""
        cfg = self.kernel.config
        root = cfg.data_path("root")
        out: list[Path] = []
        for entry in cfg.nodes.custom_paths:
            path = Path(entry).expanduser()
            resolved = (path if path.is_absolute() else root / path).resolve()
            if resolved not in out:
                out.append(resolved)
        return out

    def stage(self) -> _Staged:
        """Build the next state without touching the live table or registry.

        Changed packs are dropped from ``sys.modules`` before re-import; the live snapshot keeps
        its own references to the old modules, so nothing it serves or runs changes.
        """
        with self._lock:
            try:
                return self._stage()
            except NodeReloadError:
                raise
            except PluginError as exc:
                raise NodeReloadError(str(exc)) from exc
            except Exception as exc:
                log.exception("node reload failed")
                raise NodeReloadError(f"node reload failed: {type(exc).__name__}: {exc}") from exc

    def commit(self, staged: _Staged) -> ReloadReport:
        """Replace the node rows of the plugin table and swap the registry in one step."""
        with self._lock:
            kernel = self.kernel
            if kernel.registry.current.generation != staged.base_generation:
                raise NodeReloadError("another node reload finished while this one was prepared; try again")
            table = kernel.loader.table
            for name in [n for n, i in table.items() if i.kind in NODE_KINDS]:
                kernel.loader.unregister(name)
            for name, info in staged.loader.table.items():
                if info.obj is not None and staged.loader.pm.is_registered(info.obj):
                    staged.loader.pm.unregister(info.obj)
                    kernel.loader.pm.register(info.obj, name=name)
                table[name] = info
            kernel.registry.swap(staged.registry)
            self._entry_stamps = staged.entry_stamps
            self._folder_stamps = staged.folder_stamps
            self._adopt = False
            for import_name in staged.forget:
                forget_folder_module(import_name)
        report = staged.report()
        for collision in report.collisions:
            log.warning(collision.describe())
        log.info(report.message)
        return report

    # -- staging -----------------------------------------------------------------------------
    def _stage(self) -> _Staged:
        kernel = self.kernel
        base = kernel.registry.current.generation
        settings = kernel.config.plugins
        loader = PluginLoader(enabled=settings.enabled, disabled=settings.disabled, strict=settings.strict)
        importlib.invalidate_caches()
        entry_stamps = self._stage_entry_points(loader)
        for info in list(kernel.loader.table.values()):
            if info.kind == "node_pack" and info.distribution is None and info.name not in loader.table:
                _copy_row(loader, info, retry=True)
        folder_stamps, forget = self._stage_folders(loader)
        self._reject_reserved_names(loader)
        registry = NodeRegistry.build(collect_contributions(loader), base + 1)
        for collision in registry.collisions:
            row = loader.table.get(collision.dropped_source)
            if row is not None:
                row.error = f"{row.error}\n{collision.describe()}" if row.error else collision.describe()
        # Encode now, off the event loop; both are cached on the snapshot.
        _ = registry.definitions_json, registry.etag
        return _Staged(loader, registry, base, entry_stamps, folder_stamps, forget)

    def _stage_entry_points(self, loader: PluginLoader) -> dict[str, _EntryStamp]:
        live = self.kernel.loader.table
        if self._adopt:
            # First build after start-up: the kernel has just imported these packs.
            for info in list(live.values()):
                if info.kind == "node_pack" and info.distribution is not None:
                    _copy_row(loader, info, retry=False)
            return dict(self._entry_stamps)
        current = {ep.name: ep for ep in md.entry_points(group=NODE_PACK_GROUP)}
        for name, stamp in self._entry_stamps.items():
            ep = current.get(name)
            version = ep.dist.version if ep is not None and ep.dist is not None else None
            if ep is None or ep.value != stamp.value or version != stamp.version or stamp.changed():
                purge_modules(stamp.module)
                invalidate_bytecode(stamp.files_now())
        for info in list(live.values()):
            if info.kind == "node_pack" and info.distribution is not None and info.status == "error" and info.module:
                purge_modules(_module_part(info.module))
        loader.load_entry_points(NODE_PACK_GROUP, "node_pack")
        stamps: dict[str, _EntryStamp] = {}
        for name, info in loader.table.items():
            if info.kind == "node_pack" and info.status == "loaded":
                fresh = _entry_stamp(info)
                if fresh is not None:
                    stamps[name] = fresh
        return stamps

    def _folder_entries(self, loader: PluginLoader) -> Iterator[FolderModule]:
        for folder in self.custom_folders():
            if not folder.exists():
                log.debug("custom node folder %s does not exist; skipped", folder)
                continue
            if not folder.is_dir():
                _fail_new(
                    loader,
                    PluginInfo(name=folder.name, kind="node_folder"),
                    NodePackError("the custom node path is not a folder"),
                )
                continue
            try:
                entries = scan_folder(folder)
            except OSError as exc:
                _fail_new(loader, PluginInfo(name=folder.name, kind="node_folder"), exc)
                continue
            for entry in entries:
                if isinstance(entry, NodePackError):
                    _fail_new(loader, PluginInfo(name=entry.pack_name or folder.name, kind="node_folder"), entry)
                else:
                    yield entry

    def _stage_folders(self, loader: PluginLoader) -> tuple[dict[str, _FolderStamp], list[str]]:
        stamps: dict[str, _FolderStamp] = {}
        imported: set[str] = set()
        for found in self._folder_entries(loader):
            name = found.pack_name
            row = PluginInfo(name=name, kind="node_folder", module=found.display_path)
            if name in loader.table:
                row.name = f"{name}@{found.folder.parent.name}"
                _fail_new(
                    loader,
                    row,
                    NodePackError(f"another custom node folder already provides a pack named {name!r}"),
                )
                continue
            if not _folder_allowed(loader, found):
                row.status = "disabled"
                loader.table[name] = row
                continue
            imported.add(found.import_name)
            digest = fingerprint(found.files())
            previous = self._folder_stamps.get(name)
            if previous is not None and previous.fingerprint == digest and previous.pack.found == found:
                pack = previous.pack
            else:
                try:
                    pack = FolderPack(import_folder_module(found), found)
                except BaseException as exc:  # noqa: BLE001 - isolate anything a module raises
                    if isinstance(exc, KeyboardInterrupt):
                        raise
                    _fail_new(loader, row, exc)
                    continue
            row.namespace = pack.NAMESPACE
            if loader.register(pack, row):
                stamps[name] = _FolderStamp(digest, pack)
        forget = [
            s.pack.found.import_name
            for s in self._folder_stamps.values()
            if s.pack.found.import_name not in imported
        ]
        return stamps, forget

    def _reject_reserved_names(self, loader: PluginLoader) -> None:
        """A node pack may not take the table name of a plugin (the row would replace it)."""
        live = self.kernel.loader.table
        for name in [n for n in loader.table if n in live and live[n].kind not in NODE_KINDS]:
            info = loader.table.pop(name)
            if info.obj is not None and loader.pm.is_registered(info.obj):
                loader.pm.unregister(info.obj)
            info.name = f"{name}@{info.distribution or info.kind}"
            info.status = "error"
            info.error = f"PluginError: the name {name!r} is already used by a plugin"
            loader.table[info.name] = info
            log.error("node pack %s: %s", name, info.error)


def _folder_allowed(loader: PluginLoader, found: FolderModule) -> bool:
    """``plugins.enabled``/``disabled`` apply to folder packs by pack name or folder name."""
    names: Iterable[str] = {found.pack_name, found.folder.name}
    if set(names) & loader.disabled:
        return False
    return loader.enabled is None or bool(set(names) & loader.enabled)
