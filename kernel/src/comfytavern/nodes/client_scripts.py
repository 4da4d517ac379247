"""Where a node's client script lives on disk, checked before any file is touched.

A client script URL is relative to the folder of the module that defines the node
(:attr:`Node.source_dir`). Only ``.js`` files inside that folder are ever served: every path
segment must be a plain name (no ``..``, ``.``, empty segments, backslashes or hidden files) and
the resolved path (symlinks followed) must stay inside the folder. Bad paths are rejected, never
rewritten.
"""

from __future__ import annotations

from pathlib import Path

from comfytavern.safety import UnsafeName, check_name, resolve_inside

__all__ = ["ScriptPathError", "client_script_path"]


class ScriptPathError(ValueError):
    """The requested client script path is not acceptable (the message says why)."""


def client_script_path(source_dir: Path, relative: str) -> Path:
    """The absolute path of ``relative`` inside ``source_dir``; raises :class:`ScriptPathError`.

    Existence is not checked here (a missing file is a 404, a bad path a 400).
    """
    if not relative.endswith(".js"):
        raise ScriptPathError("only .js client scripts are served")
    parts = relative.split("/")
    try:
        for part in parts:
            check_name(part, what="client script path segment")
        return resolve_inside(source_dir, *parts)
    except UnsafeName as exc:
        raise ScriptPathError(f"invalid client script path: {exc}") from None
