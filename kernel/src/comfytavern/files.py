"""Crash-safe file replacement: a reader (or a restart after ``kill -9``) sees the old file or the
new one, never a torn mix. One implementation for every plugin that writes files.

Blocking calls only: run them in worker threads (``anyio.to_thread.run_sync``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

__all__ = ["PRIVATE_DIR_MODE", "TEMP_PREFIX", "fsync_dir", "private_dir", "sweep_temp_files", "write_atomic"]

#: Temporary files start with a dot so listings skip them.
TEMP_PREFIX = ".tmp-"
#: Folders the server creates for its data (projects, user data, the database) are reachable by
#: the server's own user only, like the key files: they hold workflows, cards, avatars, sessions.
PRIVATE_DIR_MODE = 0o700


def private_dir(path: Path) -> None:
    """Create ``path`` and every missing parent with mode 0700; existing folders are left as their
    owner set them. (``Path.mkdir(mode, parents=True)`` would create the parents with the
    default mode, e.g. 0755.)"""
    missing: list[Path] = []
    folder = Path(path)
    while not os.path.lexists(folder):
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for item in reversed(missing):
        try:
            item.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:  # created meanwhile by another writer
            pass


def fsync_dir(path: Path) -> None:
    """Make renames and creations inside ``path`` durable (a no-op where directories can't be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data``: temp file in the same folder, fsync, rename, fsync folder.

    The rename is atomic because the temporary file lives on the same filesystem as the target.
    The temporary file is created 0600 (``mkstemp``), so a secret is never readable by others,
    even briefly; ``mode`` sets the final permissions (default: 0600 stays).
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=".part")
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def sweep_temp_files(folder: Path, *, older_than: float = 3600.0) -> int:
    """Remove temporary files a crashed writer left in ``folder``; returns how many.

    Only files older than ``older_than`` seconds go, so a write in progress is never touched.
    """
    removed = 0
    cutoff = time.time() - older_than
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(TEMP_PREFIX) or not entry.is_file(follow_symlinks=False):
            continue
        with contextlib.suppress(OSError):
            if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
    return removed
