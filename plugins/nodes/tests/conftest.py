"""Kernels with a real custom node folder in ``tmp_path`` and an observer recording hub events."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from comfytavern import HubEvent, hookimpl
from comfytavern.kernel import Kernel
from comfytavern_testing import make_kernel

NO_STORAGE = {"projects": None, "accounts": None, "runs": None}
#: Hermetic: only what these tests need, whatever else is installed in the environment.
ENABLED = ["auth-local", "nodes-routes", "core", "custom_nodes"]
ORIGIN = "http://localhost:5573"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Recorder:
    """An in-process plugin that keeps every hub event (how WebSocket clients hear them)."""

    name = "test-recorder"

    def __init__(self) -> None:
        self.events: list[HubEvent] = []

    @hookimpl
    def on_execution_event(self, event: HubEvent) -> None:
        self.events.append(event)

    def of_type(self, kind: str) -> list[Any]:
        return [e.payload for e in self.events if e.type == kind]


def echo_module(value: str, *, namespace: str = "hot", type_: str = "Echo", extra: str = "") -> str:
    """A folder node module whose node returns ``value`` (edit ``value`` to change behaviour)."""
    return textwrap.dedent(
        f'''
        from comfytavern import Output, node

        NAMESPACE = "{namespace}"
        {extra}

        @node(type="{type_}", category="test", display_name="Echo", outputs={{"out": Output(data_flow_type="STRING")}})
        def echo(inputs, ctx):
            return {{"out": "{value}"}}

        NODES = [echo]
        '''
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def custom(tmp_path: Path) -> Path:
    """The kernel's custom node folder (``<data root>/custom_nodes``)."""
    folder = tmp_path / "custom_nodes"
    folder.mkdir()
    return folder


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def build(tmp_path: Path, custom: Path, recorder: Recorder) -> Callable[..., Kernel]:
    def factory(*, plugins_config: dict[str, Any] | None = None, enable: tuple[str, ...] = (), **overrides: Any) -> Kernel:
        settings: dict[str, Any] = {"enabled": [*ENABLED, *enable]}
        settings.update(plugins_config or {})
        overrides.setdefault("storage", NO_STORAGE)
        overrides.setdefault("nodes", {"custom_paths": ["custom_nodes"]})
        return make_kernel(tmp_path, plugins=[recorder], plugins_config=settings, **overrides)

    return factory


def rows(kernel: Kernel) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in kernel.plugin_rows()}


@pytest.fixture
def plugin_rows() -> Callable[[Kernel], dict[str, dict[str, Any]]]:
    return rows


@pytest.fixture
def module_text() -> Callable[..., str]:
    return echo_module


@pytest.fixture
def write_file() -> Callable[[Path, str], Path]:
    return write
