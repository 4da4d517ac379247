"""Projects storage backend ``filesystem``: per-user JSON files under ``data.projects``.

Settings (``storage.settings.filesystem``): ``root`` overrides the folder (relative paths are
taken from ``data.root``). See ``docs/projects.md`` for the layout and the recycle bin.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from comfytavern import ConfigError, StorageBackend, hookimpl
from comfytavern_storage_files.store import FileProjectStore

__all__ = ["FileProjectStore"]


def _create(kernel: Any, settings: Mapping[str, Any]) -> FileProjectStore:
    root = settings.get("root")
    if root is None:
        return FileProjectStore(kernel.config.data_path("projects"))
    if not isinstance(root, str) or not root:
        raise ConfigError("$.storage.settings.filesystem.root: must be a non-empty string")
    path = Path(root)
    return FileProjectStore(path if path.is_absolute() else kernel.config.data_path("root") / path)


@hookimpl
def register_storage_backends(kernel: Any) -> list[StorageBackend]:
    return [StorageBackend("filesystem", "projects", _create, "projects and workflows as JSON files")]
