"""Editor dialects: the one plugin that knows how the two ComfyTavern editors differ on the wire.

Handlers, node definitions and the engine always speak the later editor's dialect (``2025-10``).
When ``editor.dialect`` names the seed-era editor (``seed-2025-06``, the June 2025 build the seed
documents describe), or ``auto`` recognises it (the first plugin whose ``detect_editor_dialect``
names a dialect decides: the static-frontend plugin reads the build it serves), this plugin
translates at the wire boundary and nowhere else:

- HTTP bodies, by an ``inner`` middleware (after auth; installed only when translating);
- WebSocket run events, by providing ``WS_EVENT_TRANSLATOR`` (the executions plugin applies it).

Disable the plugin and every editor gets the native dialect.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from comfytavern import HttpMiddleware, ServiceKey, ServiceUse, hookimpl, provides
from comfytavern.services import WS_EVENT_TRANSLATOR
from comfytavern_editor_dialect.translate import LATER, SEED, Dialect, DialectMiddleware, resolve_dialect

__all__ = ["DIALECT", "LATER", "SEED", "Dialect", "dialect_for", "lifespan", "register_middleware", "register_services"]

log = logging.getLogger("comfytavern.editor_dialect")

#: The dialect in force on this server (resolved once, on first use).
DIALECT: ServiceKey[Dialect] = ServiceKey("editor_dialect", "the editor wire dialect in force, and why")


def dialect_for(kernel: Any) -> Dialect:
    """The dialect of ``kernel``: ``editor.dialect``, or for ``auto`` what a plugin recognised."""
    existing = kernel.services.lookup(DIALECT)
    if existing is not None:
        return existing  # type: ignore[no-any-return]
    dialect = resolve_dialect(kernel)
    log.info("editor dialect %s (%s)", dialect.name, dialect.reason)
    kernel.services.provide(DIALECT, dialect)
    return dialect


@hookimpl
def register_services() -> Sequence[ServiceUse]:
    return [provides(DIALECT), provides(WS_EVENT_TRANSLATOR)]


@hookimpl
def register_middleware(kernel: Any) -> Sequence[HttpMiddleware]:
    dialect = dialect_for(kernel)
    if dialect.native:
        return []
    return [HttpMiddleware(DialectMiddleware, {"dialect": dialect}, layer="inner")]


@hookimpl
def lifespan(kernel: Any) -> contextlib.AbstractAsyncContextManager[None]:
    @contextlib.asynccontextmanager
    async def run() -> AsyncIterator[None]:
        translator = dialect_for(kernel).ws_translator()
        if translator is None:
            yield
            return
        kernel.services.provide(WS_EVENT_TRANSLATOR, translator)
        try:
            yield
        finally:
            kernel.services.withdraw(WS_EVENT_TRANSLATOR, translator)

    return run()
