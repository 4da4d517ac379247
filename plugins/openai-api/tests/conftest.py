"""A real server (every installed plugin and node pack, the default configuration: auth ``local``,
workflow files, SQLite accounts and history) on a loopback socket, the loopback fake OpenAI
server of the LLM node pack as the upstream, and helpers to store chat-model workflows."""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from comfytavern.kernel import Kernel
from comfytavern_testing import fake_openai, live_server, make_kernel

# The fake server's fixtures, for this folder's tests.
fake_server = fake_openai.fake_server
fake = fake_openai.fake

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "docs" / "examples" / "openai-chat-model" / "chat-model.json"






def chat_workflow(base_url: str, model: str, **changes: Any) -> dict[str, Any]:
    """The documented example workflow, pointed at ``base_url`` with the upstream model ``model``."""
    doc = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    for node in doc["nodes"]:
        if node["id"] == "api":
            node["inputValues"]["base_url"] = base_url
        if node["id"] == "llm":
            node["inputValues"]["activated_model_id"] = model
    doc.pop("id")
    doc.update(copy.deepcopy(changes))
    return doc


@dataclass
class Server:
    """The running server and a loopback client for setting it up (local mode: no login)."""

    base: str
    kernel: Kernel

    @property
    def v1(self) -> str:
        return f"{self.base}/v1"

    def key(self, scopes: list[str] | None = None) -> str:
        made = httpx.post(f"{self.base}/api/users/me/service-keys", json={"scopes": scopes or ["runs:write"]}, timeout=10)
        assert made.status_code == 201, made.text
        return str(made.json()["secret"])

    def save(self, doc: dict[str, Any], project: str = "chat", headers: dict[str, str] | None = None) -> str:
        """Store ``doc`` in ``project``; returns the model id ``<project>/<workflowId>``."""
        meta = httpx.get(f"{self.base}/api/projects/{project}/metadata", headers=headers, timeout=10)
        if meta.status_code == 404:
            created = httpx.post(f"{self.base}/api/projects", json={"name": project}, headers=headers, timeout=10)
            assert created.status_code == 201, created.text
        saved = httpx.post(f"{self.base}/api/projects/{project}/workflows", json=doc, headers=headers, timeout=10)
        assert saved.status_code == 201, saved.text
        return f"{project}/{saved.json()['id']}"

    def history(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.base}/api/history", timeout=10).json()["items"])

    def run(self, prompt_id: str, wait: float = 10) -> dict[str, Any]:
        return dict(httpx.get(f"{self.base}/api/prompt/{prompt_id}?wait={wait}", timeout=wait + 10).json())


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """``server_factory(**config_sections)`` starts another real server (its own data folder)."""
    started = iter(range(1000))
    with contextlib.ExitStack() as stack:

        def start(**overrides: Any) -> Server:
            folder = tmp_path / f"server-{next(started)}"
            folder.mkdir()
            plugins = overrides.pop("plugins", None)  # the config section, not plugin objects
            kernel = make_kernel(folder, plugins_config=plugins, **overrides)
            return Server(stack.enter_context(live_server(kernel)), kernel)

        yield start


@pytest.fixture
def server(server_factory: Callable[..., Server]) -> Server:
    """A real server with the default configuration."""
    return server_factory()


@pytest.fixture
def model_factory(server: Server, fake: Any) -> Callable[..., str]:
    """``model_factory(upstream_model, **doc_changes)`` stores a chat workflow, returns its id."""

    def make(upstream: str = "echo", **changes: Any) -> str:
        return server.save(chat_workflow(fake.base_url, upstream, **changes))

    return make


@pytest.fixture
def chat_doc() -> Callable[..., dict[str, Any]]:
    """:func:`chat_workflow` as a fixture (test modules cannot import conftest in importlib mode)."""
    return chat_workflow
