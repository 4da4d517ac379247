"""Validation of user-supplied ids and file names before they get anywhere near a path.

Bad names are rejected (never silently rewritten into something that could alias another
object). ``resolve_inside`` is the last line of defence: the final path must stay inside its root.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

__all__ = ["UnsafeName", "check_name", "resolve_inside"]

_WINDOWS_RESERVED = {
    "CON", "PRN", "AUX", "NUL",
    *(f"COM{i}" for i in range(1, 10)),
    *(f"LPT{i}" for i in range(1, 10)),
}
_FORBIDDEN_CHARS = set('/\\:*?"<>|')
MAX_NAME_BYTES = 200


class UnsafeName(ValueError):
    """The name cannot be used as a file or folder name; the message says why."""


def check_name(name: str, *, what: str = "name", max_bytes: int = MAX_NAME_BYTES) -> str:
    """Return ``name`` (NFC-normalised) if it is safe as one path segment, else raise UnsafeName.

    Unicode letters (Chinese included) and spaces are fine; separators, NUL and other control
    characters, ``.``/``..``, leading/trailing dots or spaces, reserved device names and
    over-long names are not.
    """
    if not isinstance(name, str):
        raise UnsafeName(f"{what} must be a string")
    value = unicodedata.normalize("NFC", name)
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafeName(f"{what} is not valid UTF-8 text") from None
    if not value or not value.strip():
        raise UnsafeName(f"{what} must not be empty")
    if value in (".", ".."):
        raise UnsafeName(f"{what} must not be '.' or '..'")
    bad = sorted({c for c in value if c in _FORBIDDEN_CHARS or unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise UnsafeName(f"{what} contains characters that are not allowed: {shown}")
    if value != value.strip() or value.endswith("."):
        raise UnsafeName(f"{what} must not start or end with spaces or end with a dot")
    if value.startswith("."):
        raise UnsafeName(f"{what} must not start with a dot")
    if value.split(".", 1)[0].upper() in _WINDOWS_RESERVED:
        raise UnsafeName(f"{what} {value!r} is a reserved device name")
    if len(encoded) > max_bytes:
        raise UnsafeName(f"{what} is too long (at most {max_bytes} bytes in UTF-8)")
    return value


def resolve_inside(root: Path, *parts: str) -> Path:
    """``root / parts...`` resolved, guaranteed to stay inside ``root`` (else UnsafeName)."""
    base = root.resolve()
    target = base.joinpath(*parts).resolve()
    if target != base and base not in target.parents:
        raise UnsafeName("path escapes its data directory")
    return target
