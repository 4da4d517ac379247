"""Helpers for testing plugins and node packs (no global state, real app, lifespans run).

::

    from comfytavern.testing import make_kernel, client_for

    def test_hello(tmp_path):
        kernel = make_kernel(tmp_path, plugins=[MyPlugin()])
        with client_for(kernel) as client:
            assert client.get("/api/hello").status_code == 200
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from comfytavern.app import create_app
from comfytavern.config import Config, load_config
from comfytavern.kernel import Kernel

__all__ = ["client_for", "make_config", "make_kernel"]


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def make_config(data_dir: Path, **overrides: Any) -> Config:
    """A configuration rooted in ``data_dir`` that ignores the process environment."""
    base: dict[str, Any] = {"data": {"root": str(data_dir)}, "nodes": {"custom_paths": []}}
    return load_config(None, environ={}, overrides=_merge(base, overrides))


def make_kernel(
    data_dir: Path,
    *,
    plugins: Sequence[Any] = (),
    node_packs: Sequence[Any] = (),
    load_entrypoints: bool = True,
    **overrides: Any,
) -> Kernel:
    """A kernel with every installed plugin (unless ``load_entrypoints=False``) plus ``plugins``."""
    return Kernel(
        make_config(data_dir, **overrides),
        plugins=plugins,
        node_packs=node_packs,
        load_entrypoints=load_entrypoints,
    )


def client_for(kernel: Kernel, **kwargs: Any) -> TestClient:
    """A TestClient for the kernel's app; use it in ``with`` so lifespans run."""
    kwargs.setdefault("base_url", "http://127.0.0.1:3233")
    return TestClient(create_app(kernel), **kwargs)
