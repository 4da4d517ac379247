"""A NodeContext for the run owner ``alice`` with a real configuration rooted in tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from comfytavern import NodeContext, Principal
from comfytavern_testing import config_services, make_config


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "users" / "alice"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def make_ctx(tmp_path: Path) -> Callable[..., NodeContext]:
    def make(config_values: dict[str, Any] | None = None, **config_overrides: Any) -> NodeContext:
        config = make_config(tmp_path, **config_overrides)
        return NodeContext(
            prompt_id="p1",
            node_id="n1",
            user=Principal(id="alice", username="Alice"),
            config_values=config_values or {},
            services=config_services(config),
        )

    return make
