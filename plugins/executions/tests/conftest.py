from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import comfytavern_testnodes as testnodes
from comfytavern.kernel import Kernel
from comfytavern_testing import header_auth_plugin, make_config


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def header_auth() -> Any:
    """The user is the ``X-User`` header (or ``?user=`` on a WebSocket); ``root`` is an administrator."""
    return header_auth_plugin(query_param="user", admins=("root",))


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
        return Kernel(make_config(tmp_path, **config), plugins=[header_auth()], node_packs=[testnodes, *node_packs])

    return build
