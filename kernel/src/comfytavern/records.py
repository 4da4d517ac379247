"""Typed records returned by the registration hooks (conda style).

New fields are always added with defaults, so plugins written against an older kernel keep
working within a major version.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from comfytavern.auth import AuthBackend
    from comfytavern.kernel import Kernel

__all__ = ["AuthMode", "CliCommand", "HttpMiddleware", "MiddlewareLayer", "StorageBackend", "StorageKind", "STORAGE_KINDS"]

StorageKind = Literal["projects", "accounts", "runs"]
MiddlewareLayer = Literal["outer", "inner"]
STORAGE_KINDS: tuple[StorageKind, ...] = ("projects", "accounts", "runs")


@dataclass(frozen=True)
class AuthMode:
    """An auth mode, selected by ``auth.mode`` in the configuration.

    ``factory(kernel, settings)`` builds the backend once at start-up; ``settings`` is
    ``auth.settings[<name>]`` (an empty dict when absent). The backend may define async
    ``open()``/``close()``, which the kernel awaits in its lifespan.
    """

    name: str
    factory: Callable[[Kernel, Mapping[str, Any]], AuthBackend]
    description: str = ""


@dataclass(frozen=True)
class StorageBackend:
    """A storage backend for one kind of data (``projects``, ``accounts`` or ``runs``).

    Selected by ``storage.<kind>`` in the configuration. ``factory(kernel, settings)`` returns the
    store (implementing the kind's Protocol in :mod:`comfytavern.storage`); async
    ``open()``/``close()`` on it are awaited by the kernel's lifespan.
    """

    name: str
    kind: StorageKind
    factory: Callable[[Kernel, Mapping[str, Any]], Any]
    description: str = ""


@dataclass(frozen=True)
class CliCommand:
    """A ``comfytavern <name>`` sub-command contributed by a plugin.

    ``configure`` adds arguments to the sub-parser; ``run(kernel, args)`` returns an exit code
    (it may be a coroutine function; it then runs inside the kernel's lifespan, so storage is open).
    """

    name: str
    help: str
    run: Callable[[Kernel, argparse.Namespace], int | Awaitable[int]]
    configure: Callable[[argparse.ArgumentParser], None] = field(default=lambda parser: None)


@dataclass(frozen=True)
class HttpMiddleware:
    """An ASGI middleware a plugin wraps around every route, built as ``cls(app, **options)``.

    ``layer`` places it among the kernel's own: ``outer`` runs just inside the request context
    (request id, client address), before the host check, body limit, CORS and auth, so it sees
    every request and every response, refused ones included (metrics); ``inner`` runs after auth,
    next to the routes, and sees only requests auth let through and bodies as routes produced them
    (body translations). Within a layer, plugins wrap in load order (the first is outermost).
    """

    cls: Callable[..., Any]
    options: Mapping[str, Any] = field(default_factory=dict)
    layer: MiddlewareLayer = "inner"
