"""Fixtures for the projects routes: a kernel with only the plugins these tests need (so a broken
plugin elsewhere in the workspace cannot fail them), local auth, filesystem projects storage."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from comfytavern.kernel import Kernel
from comfytavern_testing import client_for, make_config

FIXTURES = Path(__file__).parent / "fixtures"
STORAGE = {"projects": "filesystem", "accounts": None, "runs": None}
PLUGINS = ["auth-local", "storage-files", "projects"]


def build_kernel(data_dir: Path, *, plugins: Sequence[Any] = (), **overrides: Any) -> Kernel:
    config = make_config(data_dir, storage=STORAGE, plugins={"enabled": PLUGINS, "strict": True}, **overrides)
    return Kernel(config, plugins=list(plugins))


@pytest.fixture
def new_kernel() -> Callable[..., Kernel]:
    """``new_kernel(data_dir, plugins=[...], **config)``: a kernel like the default one."""
    return build_kernel


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def kernel(tmp_path: Path) -> Kernel:
    return build_kernel(tmp_path)


@pytest.fixture
def client(kernel: Kernel) -> Iterator[TestClient]:
    with client_for(kernel) as c:
        yield c


@pytest.fixture
def user_dir(kernel: Kernel) -> Path:
    return kernel.config.data_path("projects") / "default_user"


@pytest.fixture
def chat_demo() -> dict[str, Any]:
    """The workflow of comfytavern-backend.md §4.4, as the original editor saved it."""
    return json.loads((FIXTURES / "chat_demo_workflow.json").read_text(encoding="utf-8"))


def _blank_workflow(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "nodes": [], "edges": [], "viewport": {"x": 0, "y": 0, "zoom": 1}, **extra}


@pytest.fixture
def blank() -> Callable[..., dict[str, Any]]:
    """``blank(name, **fields)``: the smallest workflow body the editor sends when saving."""
    return _blank_workflow
