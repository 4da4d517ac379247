from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute

from comfytavern import AuthMode, Principal, hookimpl
from comfytavern.engine import testnodes
from comfytavern.kernel import Kernel
from comfytavern.testing import make_config


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class HeaderAuth:
    """Test auth mode: the user is the ``X-User`` header (or ``?user=`` on a WebSocket);
    ``root`` is an administrator; no user means unauthenticated."""

    name = "test-header"

    async def authenticate(self, conn: HTTPConnection) -> Principal | None:
        user = conn.headers.get("x-user") or conn.query_params.get("user")
        if not user:
            return None
        return Principal(id=user, username=user, is_admin=user == "root", via="session")

    def routes(self) -> Sequence[BaseRoute]:
        return []


class HeaderAuthPlugin:
    name = "test-header-auth"

    @hookimpl
    def register_auth_modes(self, kernel: Any) -> list[AuthMode]:
        return [AuthMode("test-header", factory=lambda kernel, settings: HeaderAuth())]


KernelFactory = Callable[..., Kernel]


@pytest.fixture
def kernel_factory(tmp_path: Path) -> KernelFactory:
    """A kernel with the executions plugin, SQLite run history, the engine test nodes and the
    header auth mode; ``extra_plugins`` adds in-test plugins or node packs."""

    def build(*, node_packs: Sequence[Any] = (), enabled: Sequence[str] = (), **overrides: Any) -> Kernel:
        config: dict[str, Any] = {
            "auth": {"mode": "test-header"},
            "storage": {"projects": None, "accounts": None, "runs": "sqlite"},
            "plugins": {"enabled": ["executions", "storage-sqlite", *enabled]},
        }
        for key, value in overrides.items():
            if isinstance(value, Mapping) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        return Kernel(make_config(tmp_path, **config), plugins=[HeaderAuthPlugin()], node_packs=[testnodes, *node_packs])

    return build
