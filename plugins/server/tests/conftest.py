"""Shared fixtures: a kernel with every installed plugin, and a real uvicorn server on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.requests import HTTPConnection

from comfytavern import AuthMode, Principal, hookimpl
from comfytavern.config import ConfigError
from comfytavern.kernel import Kernel, StartupError
from comfytavern.records import STORAGE_KINDS
from comfytavern_testing import live_server, make_config


def full_kernel(data_dir: Path, **overrides: Any) -> Kernel:
    """Every installed plugin with the default storage backends, dropping (to ``null``) only the
    kinds whose default backend is not installed or cannot start here, so the assembled app is
    as complete as the current checkout allows."""
    storage: dict[str, Any] = dict(overrides.pop("storage", {}))
    for _ in range(len(STORAGE_KINDS) + 1):
        try:
            return Kernel(make_config(data_dir, storage=storage, **overrides))
        except (StartupError, ConfigError) as exc:
            failing = next((k for k in STORAGE_KINDS if f"$.storage.{k}" in str(exc) or f"{k} storage" in str(exc)), None)
            if failing is None or storage.get(failing, "x") is None:
                raise
            storage[failing] = None
    raise AssertionError("unreachable")


@pytest.fixture
def kernel(tmp_path: Path) -> Kernel:
    """The assembled server: every installed plugin, local auth mode."""
    return full_kernel(tmp_path)


@pytest.fixture
def make_full_kernel(tmp_path: Path) -> Any:
    """``make_full_kernel(**config_overrides)`` -> a kernel with every installed plugin."""
    return lambda **overrides: full_kernel(tmp_path, **overrides)


@pytest.fixture
def serve() -> Any:
    """``with serve(app) as base_url:`` runs the app on a real loopback socket."""
    return live_server


#: Bearer tokens understood by the ``test-token`` auth mode below.
TOKENS: dict[str, Principal] = {
    "admin-session": Principal(id="admin", username="admin", is_admin=True, via="session"),
    "user-session": Principal(id="u1", username="alice", via="session"),
    "user-key-server": Principal(id="u1", username="alice", via="key", scopes=frozenset({"server:read"})),
    "user-key-star": Principal(id="u1", username="alice", via="key", scopes=frozenset({"*"})),
    "admin-key-projects": Principal(id="admin", username="admin", is_admin=True, via="key", scopes=frozenset({"projects:read"})),
    "admin-key-server": Principal(id="admin", username="admin", is_admin=True, via="key", scopes=frozenset({"server:write"})),
}


class TokenAuth:
    """A real auth mode (selected by name through the kernel) that maps fixed bearer tokens to
    principals, so access rules can be tested without the account plugins."""

    name = "test-token"

    async def authenticate(self, conn: HTTPConnection) -> Principal | None:
        header = conn.headers.get("authorization", "")
        return TOKENS.get(header.removeprefix("Bearer ").strip()) if header.startswith("Bearer ") else None

    def routes(self) -> list[Any]:
        return []


class TokenAuthPlugin:
    name = "test-token-auth"

    @hookimpl
    def register_auth_modes(self, kernel: Any) -> list[AuthMode]:
        return [AuthMode("test-token", factory=lambda kernel, settings: TokenAuth())]


@pytest.fixture
def token_kernel(tmp_path: Path) -> Any:
    """``token_kernel(**config_overrides)``: every installed plugin, auth mode ``test-token``."""

    def build(**overrides: Any) -> Kernel:
        storage = overrides.pop("storage", {"projects": None, "accounts": None, "runs": None})
        return Kernel(
            make_config(tmp_path, auth={"mode": "test-token"}, storage=storage, **overrides),
            plugins=[TokenAuthPlugin()],
        )

    return build


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def auth_header() -> Any:
    return bearer
