"""Plain-folder node packs, and the file fingerprints that tell a reload what changed.

Every folder in ``nodes.custom_paths`` (relative to ``data.root``) may hold node modules:

- a file ``<name>.py``, or a package ``<name>/__init__.py`` (which may import its own
  submodules with relative imports); names starting with ``_`` or ``.`` are private and skipped;
- each module is one pack named ``<folder>/<name>`` in the plugin table (kind ``node_folder``);
- it exposes its nodes with ``register_nodes()`` (a plain function or a ``@hookimpl``), or else
  with a module-level ``NODES = [...]`` list;
- its namespace is the module's ``NAMESPACE`` attribute, else ``<name>``.

Folder modules are imported under private names (``comfytavern_nodefolder_<hash>_<name>``) so
they never shadow installed packages, and always compiled from source (never from a ``.pyc``)
so a reload right after an edit cannot run stale bytecode.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from comfytavern.hookspecs import PROJECT_NAME, hookimpl

__all__ = [
    "FOLDER_MODULE_PREFIX",
    "FolderModule",
    "FolderPack",
    "NodePackError",
    "fingerprint",
    "import_folder_module",
    "invalidate_bytecode",
    "module_files",
    "pack_nodes",
    "purge_modules",
    "scan_folder",
]

FOLDER_MODULE_PREFIX = "comfytavern_nodefolder_"
_IMPL_MARKER = f"{PROJECT_NAME}_impl"


class NodePackError(Exception):
    """A node pack or folder module cannot be used (the message says why)."""

    def __init__(self, message: str, pack_name: str | None = None) -> None:
        super().__init__(message)
        self.pack_name = pack_name


@dataclass(frozen=True)
class FolderModule:
    """One node module found in a custom folder."""

    folder: Path
    module: str
    path: Path
    is_package: bool

    @property
    def pack_name(self) -> str:
        return f"{self.folder.name}/{self.module}"

    @property
    def display_path(self) -> str:
        """Where it is, relative to its folder (for the plugin table; no absolute server path)."""
        return f"{self.folder.name}/{self.path.name}" + ("/" if self.is_package else "")

    @property
    def import_name(self) -> str:
        digest = hashlib.sha256(str(self.folder).encode("utf-8")).hexdigest()[:12]
        return f"{FOLDER_MODULE_PREFIX}{digest}_{self.module}"

    def files(self) -> list[Path]:
        return python_files([self.path])


def scan_folder(folder: Path) -> list[FolderModule | NodePackError]:
    """The node modules in ``folder`` (sorted by name), or an error per unusable entry."""
    found: list[FolderModule | NodePackError] = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(("_", ".")):
            continue
        if entry.is_dir():
            if not (entry / "__init__.py").is_file():
                continue
            name, is_package = entry.name, True
        elif entry.suffix == ".py" and entry.is_file():
            name, is_package = entry.stem, False
        else:
            continue
        if not name.isidentifier():
            found.append(
                NodePackError(
                    f"{name!r} is not a valid Python module name (rename {entry.name!r})",
                    pack_name=f"{folder.name}/{name}",
                )
            )
            continue
        found.append(FolderModule(folder, name, entry, is_package))
    return found


# -- files and fingerprints ---------------------------------------------------------------------
def python_files(roots: Iterable[Path]) -> list[Path]:
    """Every ``.py`` file of ``roots`` (files or package folders), caches and hidden entries skipped."""
    out: list[Path] = []
    for root in roots:
        if root.is_file():
            out.append(root)
        elif root.is_dir():
            for path in sorted(root.rglob("*.py")):
                rel = path.relative_to(root).parts
                if any(part.startswith(".") or part == "__pycache__" for part in rel):
                    continue
                out.append(path)
    return out


def fingerprint(files: Sequence[Path], extra: str = "") -> str:
    """A digest of the names and contents of ``files``: equal digests mean unchanged code."""
    digest = hashlib.sha256(extra.encode("utf-8"))
    for path in sorted(files):
        digest.update(str(path).encode("utf-8") + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"<unreadable>")
        digest.update(b"\0")
    return digest.hexdigest()


def module_files(module: ModuleType | None) -> list[Path]:
    """Source files of an imported module or package (empty for built-in or zipped modules)."""
    if module is None:
        return []
    paths = getattr(module, "__path__", None)
    if paths is not None:
        return python_files(Path(p) for p in paths)
    file = getattr(module, "__file__", None)
    return [Path(file)] if file and file.endswith(".py") else []


def invalidate_bytecode(files: Iterable[Path]) -> None:
    """Remove cached bytecode of changed files so a same-second, same-size edit is not missed."""
    for path in files:
        try:
            Path(importlib.util.cache_from_source(str(path))).unlink(missing_ok=True)
        except (OSError, NotImplementedError, ValueError):
            continue


def purge_modules(prefix: str) -> None:
    """Forget module ``prefix`` and its submodules so the next import re-reads their code.

    Objects already imported (and the registry snapshots holding them) keep working: this only
    drops the ``sys.modules`` entries.
    """
    for name in [m for m in sys.modules if m == prefix or m.startswith(prefix + ".")]:
        del sys.modules[name]


# -- importing folder modules -------------------------------------------------------------------
class _SourceOnlyLoader(importlib.machinery.SourceFileLoader):
    """Compiles from source every time and writes no ``.pyc`` into the user's folder."""

    def get_code(self, fullname: str) -> Any:
        path = self.get_filename(fullname)
        return self.source_to_code(self.get_data(path), path)


class _FolderFinder(importlib.abc.MetaPathFinder):
    """Resolves the private names of folder modules (and their submodules) to their files."""

    def __init__(self) -> None:
        self.roots: dict[str, FolderModule] = {}

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        top = fullname.partition(".")[0]
        root = self.roots.get(top)
        if root is None:
            return None
        if fullname == top:
            if root.is_package:
                return _spec(fullname, root.path / "__init__.py", root.path)
            return _spec(fullname, root.path, None)
        leaf = fullname.rpartition(".")[2]
        for base in path or ():
            package = Path(base) / leaf
            if (package / "__init__.py").is_file():
                return _spec(fullname, package / "__init__.py", package)
            module = Path(base) / f"{leaf}.py"
            if module.is_file():
                return _spec(fullname, module, None)
        return None


def _spec(fullname: str, file: Path, package_dir: Path | None) -> Any:
    return importlib.util.spec_from_file_location(
        fullname,
        file,
        loader=_SourceOnlyLoader(fullname, str(file)),
        submodule_search_locations=[str(package_dir)] if package_dir is not None else None,
    )


_finder = _FolderFinder()


def _install_finder() -> None:
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


def import_folder_module(found: FolderModule) -> ModuleType:
    """Import ``found`` afresh under its private name (any earlier import is forgotten first)."""
    _install_finder()
    name = found.import_name
    purge_modules(name)
    _finder.roots[name] = found
    try:
        return importlib.import_module(name)
    except BaseException:
        purge_modules(name)
        raise


def forget_folder_module(import_name: str) -> None:
    """Drop a removed folder module from ``sys.modules`` and from the finder."""
    purge_modules(import_name)
    _finder.roots.pop(import_name, None)


# -- what a pack exposes ------------------------------------------------------------------------
def non_node_hooks(module: ModuleType) -> list[str]:
    """Hook implementations a folder module defines besides ``register_nodes`` (never allowed)."""
    names = []
    for attr, value in vars(module).items():
        if getattr(value, _IMPL_MARKER, None) is not None and attr != "register_nodes":
            names.append(attr)
    return sorted(names)


def pack_nodes(obj: Any) -> list[Any]:
    """A pack's nodes: ``register_nodes()`` if it defines one, else its ``NODES`` list."""
    fn = getattr(obj, "register_nodes", None)
    if callable(fn):
        return list(fn() or ())
    nodes = getattr(obj, "NODES", None)
    if nodes is None:
        raise NodePackError("exposes no nodes: define NODES = [...] or a register_nodes() function")
    if isinstance(nodes, (str, bytes)) or not isinstance(nodes, Iterable):
        raise NodePackError(f"NODES must be a list of nodes, not {type(nodes).__name__}")
    return list(nodes)


class FolderPack:
    """The plugin object registered for one folder module (it implements only ``register_nodes``)."""

    def __init__(self, module: ModuleType, found: FolderModule) -> None:
        self.module = module
        self.found = found
        self.__name__ = module.__name__
        namespace = getattr(module, "NAMESPACE", None)
        if namespace is not None and not isinstance(namespace, str):
            raise NodePackError(f"NAMESPACE must be a string, not {type(namespace).__name__}")
        self.NAMESPACE: str = namespace or found.module
        extra = non_node_hooks(module)
        if extra:
            raise NodePackError(
                "a node folder module may only implement register_nodes; it also implements "
                + ", ".join(extra)
            )

    @hookimpl
    def register_nodes(self) -> list[Any]:
        return pack_nodes(self.module)
