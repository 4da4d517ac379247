"""Which editor dialect a build speaks, read from its scripts (this plugin's ``detect_editor_dialect``).

The names are the ``editor.dialect`` values (the editor-dialect plugin translates); only this
plugin serves a build, so only it reads one.
"""

from __future__ import annotations

import re
from pathlib import Path

from comfytavern.config import EDITOR_DIALECT_LATER as LATER
from comfytavern.config import EDITOR_DIALECT_SEED as SEED

__all__ = ["recognise_build"]


_SCRIPT_SRC = re.compile(rb"""<script\b[^>]*\bsrc\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
#: Only the seed era's auth store names these modes; the later editor names ``SingleUser``.
_SEED_MARKER = b"LocalNoPassword"
_LATER_MARKER = b"SingleUser"
#: Upper bound of JavaScript read when recognising a build.
_SCAN_LIMIT = 64 * 1024 * 1024


def _scripts(dist: Path, index: str) -> list[Path]:
    """The entry modules named by ``index.html``, then every other ``.js`` file of the build."""
    found: list[Path] = []
    try:
        html = (dist / index).read_bytes()
    except OSError:
        html = b""
    for match in _SCRIPT_SRC.finditer(html):
        src = match.group(1).decode("utf-8", "replace").split("?")[0].split("#")[0]
        if "://" in src or src.startswith("//"):
            continue
        path = (dist / src.lstrip("/")).resolve()
        if path.is_file() and path.is_relative_to(dist.resolve()):
            found.append(path)
    rest = sorted(p for p in dist.rglob("*.js") if p.is_file() and p.resolve() not in found)
    return found + rest


def recognise_build(dist: Path, index: str = "index.html") -> str | None:
    """The dialect of the editor build in ``dist``, from the auth-mode names its code contains.

    The seed-era editor compares ``mode`` with ``"LocalNoPassword"`` and never mentions
    ``SingleUser``; the later editor knows ``SingleUser``. The entry modules of ``index.html``
    are read first, then the other scripts (bounded); ``None`` when neither name is found.
    """
    seed = False
    budget = _SCAN_LIMIT
    for script in _scripts(dist, index):
        try:
            data = script.read_bytes()[:budget]
        except OSError:
            continue
        budget -= len(data)
        if _LATER_MARKER in data:
            return LATER
        seed = seed or _SEED_MARKER in data
        if budget <= 0:
            break
    return SEED if seed else None
