"""A header-driven auth mode so the tests can act as several users and as scoped API keys."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute
from starlette.testclient import TestClient

from comfytavern import AuthMode, Principal, hookimpl
from comfytavern.kernel import Kernel
from comfytavern.testing import client_for, make_config


class HeaderAuth:
    """``X-User: alice`` is user alice; ``X-Scopes: a,b`` makes it an API key with those scopes."""

    name = "test-header"

    async def authenticate(self, conn: HTTPConnection) -> Principal | None:
        user = conn.headers.get("x-user")
        if not user:
            return None
        scopes = conn.headers.get("x-scopes")
        if scopes is None:
            return Principal(id=user, username=user, via="session")
        return Principal(id=user, username=user, via="key", scopes=frozenset(s for s in scopes.split(",") if s))

    def routes(self) -> Sequence[BaseRoute]:
        return []


class HeaderAuthPlugin:
    name = "test-header-auth"

    @hookimpl
    def register_auth_modes(self, kernel: Any) -> list[AuthMode]:
        return [AuthMode("test-header", factory=lambda kernel, settings: HeaderAuth())]


def kernel_for(tmp_path: Path, **overrides: Any) -> Kernel:
    """Like ``make_kernel`` but config overrides may include the ``plugins`` section."""
    config = make_config(
        tmp_path,
        storage={"projects": None, "accounts": None, "runs": None},
        auth={"mode": "test-header"},
        **overrides,
    )
    return Kernel(config, plugins=[HeaderAuthPlugin()])


@pytest.fixture
def kernel_factory() -> Any:
    """``kernel_factory(tmp_path, **config_overrides)``: a kernel using the header auth mode."""
    return kernel_for


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with client_for(kernel_for(tmp_path), headers={"X-User": "alice"}) as c:
        yield c


@pytest.fixture
def library(tmp_path: Path) -> Path:
    """Alice's library folder under the default layout."""
    path = tmp_path / "data" / "users" / "alice" / "characters"
    path.mkdir(parents=True)
    return path
