"""What a running node receives besides its inputs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from comfytavern.auth import Principal
from comfytavern.services import CredentialResolver, ServiceKey, Services

__all__ = ["CredentialResolver", "NodeContext"]

T = TypeVar("T")

async def _no_credentials(user_id: str, service: str) -> str | None:
    return None


async def _no_progress(value: float, maximum: float | None) -> None:
    return None


@dataclass(slots=True)
class NodeContext:
    """Per-node execution context.

    ``services`` are the kernel's typed services (``kernel.services``): plugins provide shared
    objects there (an HTTP client, the storage) and nodes look them up by key
    (``ctx.services.require(CONFIG)``, ``ctx.service(CONFIG)``).

    One is made for every node that runs, so it has slots and holds no per-node closure: the
    engine passes itself as ``_reporter`` (with the node's index) instead of a bound partial.
    """

    prompt_id: str
    node_id: str
    user: Principal
    config_values: Mapping[str, Any] = field(default_factory=dict)
    mode_id: str | None = None
    interface_inputs: Mapping[str, Any] = field(default_factory=dict)
    interface_outputs: Mapping[str, Any] = field(default_factory=dict)
    services: Services = field(default_factory=Services)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    _progress: Callable[[float, float | None], Awaitable[None]] = _no_progress
    _credentials: CredentialResolver = _no_credentials
    #: The engine's progress sink, ``_reporter.report_progress(_node_index, value, maximum)``;
    #: ``None`` = use ``_progress``.
    _reporter: Any = None
    _node_index: int = -1

    @property
    def user_id(self) -> str:
        return self.user.id

    async def progress(self, value: float, maximum: float | None = None) -> None:
        """Report progress of a long node (sent to the editor as ``NODE_PROGRESS``)."""
        reporter = self._reporter
        if reporter is not None:
            await reporter.report_progress(self._node_index, value, maximum)
        else:
            await self._progress(value, maximum)

    async def credential(self, service: str) -> str | None:
        """The run owner's stored secret for ``service``, or ``None``. Never log it."""
        return await self._credentials(self.user.id, service)

    def service(self, key: ServiceKey[T]) -> T:
        """The service ``key`` (:class:`~comfytavern.services.MissingService`, a ``LookupError``, if absent)."""
        return self.services.require(key)
