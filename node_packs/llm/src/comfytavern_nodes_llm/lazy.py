"""Modules loaded on first use (:class:`importlib.util.LazyLoader`).

``httpx`` (with its command-line part, which pulls in ``rich`` and ``pygments`` when they are
installed) costs ~50 ms of every server start, and only a running LLM node needs it; the node
definitions themselves do not.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

__all__ = ["lazy_import"]


def lazy_import(name: str) -> ModuleType:
    """``name`` as a module whose code runs on its first attribute access (or the module itself
    when it is already imported)."""
    found = sys.modules.get(name)
    if found is not None:
        return found
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
