"""Typed service contracts between plugins: a key per service, ``provide(KEY, value)`` / ``require(KEY)``.

Plugins must not import each other, so whatever one plugin offers another (the scheduler, the
credential resolver, a shared run queue) goes through the kernel's :class:`Services`. Each service
is a :class:`ServiceKey` parametrised by the Protocol (or kernel class) its value satisfies, so mypy
checks every lookup, and a misspelt key is an import error instead of a runtime ``KeyError``
(fps's ``put(value, Type)`` / ``get(Type)`` in spirit; hand-written because fps's container is
async and tied to its module tree).

Who provides and who uses each service is *declared* by the ``register_services`` hook
(:func:`provides`, :func:`requires`, :func:`uses`), shown by ``comfytavern plugins`` and
``GET /kernel/plugins``, and checked at start-up: a required service nobody provides stops it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, cast

if TYPE_CHECKING:
    from comfytavern.config import Config
    from comfytavern.engine.queue import RunQueue
    from comfytavern.engine.scheduler import Scheduler
    from comfytavern.events import EventHub
    from comfytavern.revocation import Revocations

__all__ = [
    "CHARACTERS",
    "CONFIG",
    "CREDENTIALS",
    "HUB",
    "KERNEL_SERVICES",
    "METRICS",
    "RESTART_REQUESTED",
    "REVOCATIONS",
    "RUN_QUEUE",
    "SCHEDULER",
    "UVICORN_SERVER",
    "WS_EVENT_TRANSLATOR",
    "CharacterCatalog",
    "CredentialResolver",
    "MetricsService",
    "MissingService",
    "ServiceCatalog",
    "ServiceKey",
    "ServiceUse",
    "Services",
    "WsEventTranslator",
    "provides",
    "requires",
    "uses",
]

T = TypeVar("T")
Role = Literal["provides", "requires", "uses"]


class ServiceKey(Generic[T]):
    """The identity of one service; ``T`` is the type every provider's value satisfies.

    Keys compare by identity: two keys with the same name are two services (a plugin's private
    key cannot collide with a kernel key by accident).
    """

    __slots__ = ("doc", "name")

    def __init__(self, name: str, doc: str = "") -> None:
        self.name = name
        self.doc = doc

    def __repr__(self) -> str:
        return f"ServiceKey({self.name!r})"


class MissingService(LookupError):
    """A required service is not provided on this server (the message names it)."""


@dataclass(frozen=True)
class ServiceUse:
    """One declaration returned by ``register_services``: this plugin provides/requires/uses ``key``."""

    key: ServiceKey[Any]
    role: Role


def provides(key: ServiceKey[Any]) -> ServiceUse:
    """Declare that the plugin puts ``key`` into :class:`Services` (usually in its lifespan)."""
    return ServiceUse(key, "provides")


def requires(key: ServiceKey[Any]) -> ServiceUse:
    """Declare that the plugin cannot work without ``key``: start-up stops if nobody provides it."""
    return ServiceUse(key, "requires")


def uses(key: ServiceKey[Any]) -> ServiceUse:
    """Declare an optional use: the plugin looks ``key`` up and copes when it is absent."""
    return ServiceUse(key, "uses")


class Services:
    """The kernel's service container (``kernel.services``; nodes see it as ``ctx.services``)."""

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: dict[ServiceKey[Any], Any] = {}

    def provide(self, key: ServiceKey[T], value: T) -> None:
        """Publish ``value`` as ``key`` (replacing an earlier provider's value)."""
        self._values[key] = value

    def withdraw(self, key: ServiceKey[T], value: T | None = None) -> None:
        """Remove ``key``; with ``value``, only if it is still that object (a newer provider stays)."""
        if value is None or self._values.get(key) is value:
            self._values.pop(key, None)

    def require(self, key: ServiceKey[T]) -> T:
        """The value of ``key``; :class:`MissingService` naming it when nobody provided one."""
        try:
            return cast("T", self._values[key])
        except KeyError:
            raise MissingService(f"service {key.name!r} is not available on this server") from None

    def lookup(self, key: ServiceKey[T]) -> T | None:
        """The value of ``key``, or ``None`` for an optional service nobody provided."""
        return cast("T | None", self._values.get(key))

    def setdefault(self, key: ServiceKey[T], factory: Callable[[], T]) -> T:
        """The value of ``key``, created by ``factory`` (and provided) on first use."""
        if key not in self._values:
            self._values[key] = factory()
        return cast("T", self._values[key])

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def keys(self) -> Iterator[ServiceKey[Any]]:
        return iter(list(self._values))

    def values(self) -> Iterator[Any]:
        return iter(list(self._values.values()))


class CredentialResolver(Protocol):
    """Looks up the run owner's stored secret for a service name (e.g. ``openai``)."""

    async def __call__(self, user_id: str, service: str) -> str | None: ...


class MetricsService(Protocol):
    """The server's Prometheus metrics; plugins add series to its registry (names start ``ct_``).

    ``registry.counter(name, help, labelnames)`` (also ``gauge``, ``histogram``) returns a metric
    with keyword-label methods (``inc(route=...)``, ``set``, ``observe``); ``track_websocket()``
    counts a socket served outside the app for the duration of a ``with`` block.
    """

    @property
    def registry(self) -> Any: ...

    def track_websocket(self) -> AbstractContextManager[None]: ...

    def render(self) -> str: ...


class CharacterCatalog(Protocol):
    """A user's SillyTavern character cards (the characters plugin's library)."""

    def directory(self, user_id: str) -> Path: ...

    def scan(self, user_id: str) -> tuple[list[Any], list[Any]]: ...


# -- the kernel's service keys -------------------------------------------------------------------
CONFIG: ServiceKey[Config] = ServiceKey("config", "the validated configuration (comfytavern.Config)")
HUB: ServiceKey[EventHub] = ServiceKey("hub", "the event hub every run event goes through")
REVOCATIONS: ServiceKey[Revocations] = ServiceKey("revocations", "announcements of ended credentials")
SCHEDULER: ServiceKey[Scheduler] = ServiceKey("scheduler", "accepts, queues, runs and reports workflow runs")
METRICS: ServiceKey[MetricsService] = ServiceKey("metrics", "the Prometheus metrics of this server")
RUN_QUEUE: ServiceKey[RunQueue] = ServiceKey("run_queue", "a shared queue: runs execute wherever it sends them")
CREDENTIALS: ServiceKey[CredentialResolver] = ServiceKey(
    "credentials", "async (user_id, service) -> the user's stored secret or None"
)
CHARACTERS: ServiceKey[CharacterCatalog] = ServiceKey("characters", "the per-user character card library")
RESTART_REQUESTED: ServiceKey[Callable[[], None]] = ServiceKey(
    "restart_requested", "set once a restart is claimed: the CLI calls it after uvicorn stopped"
)
#: ``(type, payload) -> message`` to send, or ``None`` not to send it.
WsEventTranslator = Callable[[str, Any], "dict[str, Any] | None"]
WS_EVENT_TRANSLATOR: ServiceKey[WsEventTranslator] = ServiceKey(
    "ws_event_translator", "rewrites (or drops) run events for the connected editor on the WebSocket"
)
UVICORN_SERVER: ServiceKey[Any] = ServiceKey("uvicorn_server", "the uvicorn.Server of comfytavern serve")

#: What the kernel itself provides (``kernel``) and the ``serve`` command adds (``cli``), and
#: what kernel mechanisms use; shown with the plugins' declarations.
KERNEL_SERVICES: tuple[tuple[str, ServiceUse], ...] = (
    ("kernel", provides(CONFIG)),
    ("kernel", provides(HUB)),
    ("kernel", provides(REVOCATIONS)),
    ("kernel", provides(SCHEDULER)),
    ("kernel", uses(RUN_QUEUE)),
    ("kernel", uses(CREDENTIALS)),
    ("cli", uses(RESTART_REQUESTED)),
    ("cli", provides(UVICORN_SERVER)),
)


class ServiceCatalog:
    """Who provides, requires and uses each service: the declarations, not the live values."""

    def __init__(self, declarations: Iterable[tuple[str, ServiceUse]]) -> None:
        #: ``(owner, declaration)``: owner is a plugin name, ``kernel`` or ``cli``.
        self.declarations = list(declarations)

    def _owners(self, key: ServiceKey[Any], *roles: Role) -> list[str]:
        return sorted({owner for owner, use in self.declarations if use.key is key and use.role in roles})

    def keys(self) -> list[ServiceKey[Any]]:
        seen: dict[ServiceKey[Any], None] = {}
        for _, use in self.declarations:
            seen.setdefault(use.key, None)
        return sorted(seen, key=lambda key: key.name)

    def missing(self) -> list[str]:
        """One message per required service that nothing installed provides."""
        out = []
        for key in self.keys():
            needed = self._owners(key, "requires")
            if needed and not self._owners(key, "provides"):
                out.append(
                    f"service {key.name!r} is required by {', '.join(needed)} but no installed plugin provides it"
                )
        return out

    def of(self, owner: str) -> dict[str, list[str]]:
        """``{"provides": [...], "uses": [...]}`` of one plugin (required services count as used)."""
        mine = [use for who, use in self.declarations if who == owner]
        return {
            "provides": sorted(use.key.name for use in mine if use.role == "provides"),
            "uses": sorted(use.key.name for use in mine if use.role != "provides"),
        }

    def rows(self) -> list[dict[str, Any]]:
        """One row per service: name, what it is, providers, users (``requiredBy`` a subset of users)."""
        return [
            {
                "service": key.name,
                "description": key.doc,
                "providers": self._owners(key, "provides"),
                "users": self._owners(key, "requires", "uses"),
                "requiredBy": self._owners(key, "requires"),
            }
            for key in self.keys()
        ]
