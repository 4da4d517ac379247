"""A header-driven auth mode so the tests can act as several users and as scoped API keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from comfytavern.kernel import Kernel
from comfytavern_testing import client_for, header_auth_plugin, make_config


def header_auth() -> Any:
    """``X-User: alice`` is user alice; ``X-Scopes: a,b`` makes it an API key with those scopes."""
    return header_auth_plugin(scopes_header="x-scopes")


def kernel_for(tmp_path: Path, **overrides: Any) -> Kernel:
    """Like ``make_kernel`` but config overrides may include the ``plugins`` section."""
    config = make_config(
        tmp_path,
        storage={"projects": None, "accounts": None, "runs": None},
        auth={"mode": "test-header"},
        **overrides,
    )
    return Kernel(config, plugins=[header_auth()])


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
