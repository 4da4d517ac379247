"""Hook tracing for plugin authors: ``COMFYTAVERN_TRACE_HOOKS=1`` logs every hook call.

In the spirit of Datasette's ``DATASETTE_TRACE_PLUGINS``: each call of a hook implementation is
logged on the ``comfytavern.hooks`` logger (INFO) with the hook, the plugin, how long it took and
the size of what it returned (``len()`` of a sequence, ``-`` for ``None`` or a single object), so
"why is my route missing / my start-up slow" has an answer without a debugger. Off by default;
when off, the cost is one environment lookup per batch of calls.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sized
from typing import Any

__all__ = ["TRACE_ENV", "enabled", "result_size", "trace"]

TRACE_ENV = "COMFYTAVERN_TRACE_HOOKS"
log = logging.getLogger("comfytavern.hooks")

_FALSE = {"", "0", "false", "no", "off"}


def enabled() -> bool:
    """Whether hook calls are traced now (read on every batch, so tests can switch it)."""
    return os.environ.get(TRACE_ENV, "").strip().lower() not in _FALSE


def result_size(result: Any) -> str:
    """``len(result)`` for a sized result (a list of routes...), ``-`` otherwise."""
    if isinstance(result, Sized) and not isinstance(result, (str, bytes)):
        return str(len(result))
    return "-"


def trace(hook: str, plugin: str, started: float, result: Any = None, error: BaseException | None = None) -> None:
    """Log one finished call that began at ``time.perf_counter() == started``."""
    elapsed_ms = (time.perf_counter() - started) * 1000.0
    if error is not None:
        log.info("hook %s plugin=%s %.3f ms raised %s", hook, plugin, elapsed_ms, type(error).__name__)
    else:
        log.info("hook %s plugin=%s %.3f ms result_size=%s", hook, plugin, elapsed_ms, result_size(result))
