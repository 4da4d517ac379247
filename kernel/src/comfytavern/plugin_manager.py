"""The fault-isolating plugin loader (conda's shape, on pluggy).

Every entry point is loaded on its own: an import error, a registration error, a misspelled hook
or a node pack that reaches for non-node hooks is recorded against that plugin and the server
still starts. ``strict`` mode re-raises instead, for plugin authors. Blocked or not-allowlisted
plugins are never imported.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as md
import logging
import sys
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pluggy

from comfytavern import hookspecs, tracing
from comfytavern.hookspecs import NODE_PACK_HOOKS, PROJECT_NAME

__all__ = [
    "PLUGIN_GROUP",
    "NODE_PACK_GROUP",
    "PluginError",
    "PluginInfo",
    "PluginLoader",
]

log = logging.getLogger("comfytavern.plugins")

PLUGIN_GROUP = "comfytavern.plugins"
NODE_PACK_GROUP = "comfytavern.node_packs"

PluginKind = Literal["plugin", "node_pack", "node_folder"]
PluginStatus = Literal["loaded", "error", "disabled"]


class PluginError(Exception):
    """A plugin failed in strict mode, or a conflict between plugins stopped start-up."""


@dataclass
class PluginInfo:
    """One row of the plugin listing (``GET /kernel/plugins``, ``comfytavern plugins``)."""

    name: str
    kind: PluginKind
    distribution: str | None = None
    version: str | None = None
    module: str | None = None
    status: PluginStatus = "loaded"
    error: str | None = None
    #: Default namespace of a node pack's nodes.
    namespace: str | None = None
    #: Nodes contributed (node packs and folders).
    node_count: int = 0
    #: The plugin object registered with pluggy (not serialised).
    obj: Any = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "status": self.status,
            "error": self.error,
        }
        if self.kind != "plugin":
            out["namespace"] = self.namespace
            out["nodeCount"] = self.node_count
        return out


def _format_error(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


class PluginLoader:
    """Owns one pluggy manager (one per kernel; no global state) and the plugin table."""

    def __init__(
        self,
        *,
        enabled: Sequence[str] | None = None,
        disabled: Sequence[str] = (),
        strict: bool = False,
    ) -> None:
        self.pm = pluggy.PluginManager(PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.enabled = set(enabled) if enabled is not None else None
        self.disabled = set(disabled)
        self.strict = strict
        self.table: dict[str, PluginInfo] = {}
        self._all_entry_points: Any = None  # md.EntryPoints (3.12+) or SelectableGroups (3.11)

    # -- selection -------------------------------------------------------------------------
    def is_allowed(self, name: str, distribution: str | None) -> bool:
        names = {name} | ({distribution} if distribution else set())
        if names & self.disabled:
            return False
        return self.enabled is None or bool(names & self.enabled)

    # -- loading ---------------------------------------------------------------------------
    def _entry_points(self) -> Any:
        """Every installed entry point, read once per loader (a scan reads every distribution's
        metadata); new installs are seen by the next loader (a restart, ``comfytavern plugins``)."""
        if self._all_entry_points is None:
            importlib.invalidate_caches()
            self._all_entry_points = md.entry_points()
        return self._all_entry_points

    def load_entry_points(self, group: str, kind: PluginKind) -> None:
        """Load every allowed entry point of ``group`` (de-duplicated by distribution)."""
        for ep in sorted(self._entry_points().select(group=group), key=lambda e: e.name):
            dist = ep.dist
            info = PluginInfo(
                name=ep.name,
                kind=kind,
                distribution=dist.name if dist else None,
                version=dist.version if dist else None,
                module=ep.value,
            )
            if ep.name in self.table:
                other = self.table[ep.name]
                self._fail(
                    info,
                    PluginError(
                        f"entry-point name {ep.name!r} is used by both "
                        f"{other.distribution!r} and {info.distribution!r}"
                    ),
                    register_row=False,
                )
                continue
            if not self.is_allowed(ep.name, info.distribution):
                info.status = "disabled"
                self.table[ep.name] = info
                continue
            try:
                obj = ep.load()
            except BaseException as exc:  # noqa: BLE001 - isolate anything a plugin raises
                if isinstance(exc, KeyboardInterrupt):
                    raise
                self._fail(info, exc)
                continue
            self.register(obj, info)

    def register(self, obj: Any, info: PluginInfo) -> bool:
        """Register one plugin object, validating its hooks. Returns True if it is live."""
        self.table[info.name] = info
        info.obj = obj
        if info.kind in ("node_pack", "node_folder") and info.namespace is None:
            info.namespace = getattr(obj, "NAMESPACE", None) or info.name
        try:
            self.pm.register(obj, name=info.name)
        except BaseException as exc:  # noqa: BLE001
            self._fail(info, exc)
            return False
        problem = self._hook_problem(obj, info)
        if problem is not None:
            self.pm.unregister(obj)
            self._fail(info, PluginError(problem))
            return False
        info.status = "loaded"
        info.error = None
        return True

    def _hook_problem(self, obj: Any, info: PluginInfo) -> str | None:
        callers = self.pm.get_hookcallers(obj) or []
        names = {hc.name for hc in callers}
        spec_names = {name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "comfytavern_spec")}
        unknown = sorted(hc.name for hc in callers if not hc.has_spec())
        if unknown:
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, sorted(spec_names), n=1)
                hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            return "unknown hook implementation " + ", ".join(hints)
        if info.kind != "plugin":
            extra = sorted(names - NODE_PACK_HOOKS)
            if extra:
                return (
                    "a node pack may only implement "
                    + ", ".join(sorted(NODE_PACK_HOOKS))
                    + "; it also implements "
                    + ", ".join(extra)
                )
        return None

    def _fail(self, info: PluginInfo, exc: BaseException, *, register_row: bool = True) -> None:
        info.status = "error"
        info.error = _format_error(exc)
        if register_row:
            self.table[info.name] = info
        else:
            self.table[f"{info.name}@{info.distribution}"] = info
        log.error("plugin %s (%s) failed: %s", info.name, info.distribution, info.error)
        if self.strict:
            raise PluginError(f"plugin {info.name!r} failed: {info.error}") from exc

    def fail(self, name: str, exc: BaseException) -> None:
        """Mark a registered plugin as failed (e.g. its hook raised) and unregister it."""
        info = self.table[name]
        if info.obj is not None and self.pm.is_registered(info.obj):
            self.pm.unregister(info.obj)
        self._fail(info, exc)

    def unregister(self, name: str) -> None:
        info = self.table.pop(name, None)
        if info is not None and info.obj is not None and self.pm.is_registered(info.obj):
            self.pm.unregister(info.obj)

    # -- calling ---------------------------------------------------------------------------
    def call_each(
        self, hook_name: str, *, kinds: Iterable[PluginKind] | None = None, **kwargs: Any
    ) -> list[tuple[PluginInfo, Any]]:
        """Call every implementation of ``hook_name`` separately, in registration order.

        A raising implementation marks its plugin failed (or raises in strict mode); the others
        still run. Implementations may accept fewer arguments than the spec.
        """
        caller = getattr(self.pm.hook, hook_name)
        allowed_kinds = set(kinds) if kinds is not None else None
        results: list[tuple[PluginInfo, Any]] = []
        traced = tracing.enabled()
        for impl in caller.get_hookimpls():  # registration order (pluggy itself calls LIFO)
            info = self.table.get(impl.plugin_name)
            if info is None or info.status != "loaded":
                continue
            if allowed_kinds is not None and info.kind not in allowed_kinds:
                continue
            started = time.perf_counter()
            try:
                result = impl.function(*[kwargs[name] for name in impl.argnames])
            except BaseException as exc:  # noqa: BLE001
                if traced:
                    tracing.trace(hook_name, info.name, started, error=exc)
                if isinstance(exc, KeyboardInterrupt):
                    raise
                self.fail(info.name, PluginError(f"{hook_name} raised: {_format_error(exc)}"))
                continue
            if traced:
                tracing.trace(hook_name, info.name, started, result)
            results.append((info, result))
        return results

    def rows(self) -> list[PluginInfo]:
        return sorted(self.table.values(), key=lambda i: (i.kind, i.name))

    # -- reload support --------------------------------------------------------------------
    @staticmethod
    def purge_modules(module_path: str) -> None:
        """Forget a plugin's top-level package so the next import re-reads its code."""
        top = module_path.split(":", 1)[0].split(".", 1)[0]
        for name in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
            del sys.modules[name]

