"""JSON encoding that never fails on a node's output value.

Node outputs may hold anything (bytes, sets, custom objects). Events and stored records must
still encode: unknown objects become a small descriptive placeholder instead of an exception.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

import msgspec

__all__ = ["safe_encoder", "to_jsonable"]


def _fallback(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, PurePath):
        return str(obj)
    if hasattr(obj, "__aiter__"):
        return {"type": "stream", "repr": type(obj).__name__}
    text = repr(obj)
    return {"type": "unserializable", "class": type(obj).__name__, "repr": text[:200]}


safe_encoder = msgspec.json.Encoder(enc_hook=_fallback)


def to_jsonable(value: Any) -> Any:
    """``value`` converted to plain JSON types (with the same fallback)."""
    return msgspec.json.decode(safe_encoder.encode(value))
