"""Helpers for testing plugins and node packs (no global state, real app, lifespans run).

The library ``comfytavern-testing`` (``libs/testing``; the kernel's ``testing`` extra pulls it in),
kept out of the kernel so the server itself ships no test code.

::

    from comfytavern_testing import make_kernel, client_for

    def test_hello(tmp_path):
        kernel = make_kernel(tmp_path, plugins=[MyPlugin()])
        with client_for(kernel) as client:
            assert client.get("/api/hello").status_code == 200
"""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from comfytavern.app import create_app
from comfytavern.config import Config, deep_merge, load_config
from comfytavern.kernel import Kernel
from comfytavern.services import CONFIG, Services

__all__ = [
    "config_services",
    "HEADER_AUTH_MODE",
    "NO_STORAGE",
    "client_for",
    "header_auth_plugin",
    "live_server",
    "make_config",
    "make_dist",
    "make_kernel",
    "on_path",
    "editor_build",
    "seed_frontend_dist",
]

#: Storage left unconfigured, for tests that need no storage plugin.
NO_STORAGE: dict[str, Any] = {"projects": None, "accounts": None, "runs": None}



#: The auth mode name registered by :func:`header_auth_plugin`.
HEADER_AUTH_MODE = "test-header"


def header_auth_plugin(
    *,
    header: str = "x-user",
    query_param: str | None = None,
    admins: Sequence[str] = (),
    scopes_header: str | None = None,
) -> Any:
    """A plugin with the auth mode ``test-header``, for acting as several users in tests.

    The user is the ``header`` value (or, when given, the ``query_param`` — handy for WebSockets);
    users in ``admins`` are administrators; a ``scopes_header`` (comma-separated) makes the caller
    an API key with those scopes. No user means unauthenticated. Select it with
    ``auth={"mode": HEADER_AUTH_MODE}``. Never install it in a real server.
    """
    from starlette.requests import HTTPConnection

    from comfytavern.auth import Principal
    from comfytavern.hookspecs import hookimpl
    from comfytavern.records import AuthMode

    class HeaderAuth:
        name = HEADER_AUTH_MODE

        async def authenticate(self, conn: HTTPConnection) -> Principal | None:
            user = conn.headers.get(header) or (conn.query_params.get(query_param) if query_param else None)
            if not user:
                return None
            scopes = conn.headers.get(scopes_header) if scopes_header else None
            if scopes is not None:
                granted = frozenset(s for s in scopes.split(",") if s)
                return Principal(id=user, username=user, via="key", scopes=granted)
            return Principal(id=user, username=user, is_admin=user in admins, via="session")

        def routes(self) -> list[Any]:
            return []

    class HeaderAuthPlugin:
        name = "test-header-auth"

        @hookimpl
        def register_auth_modes(self, kernel: Any) -> list[AuthMode]:
            return [AuthMode(HEADER_AUTH_MODE, factory=lambda kernel, settings: HeaderAuth())]

    return HeaderAuthPlugin()


def make_config(data_dir: Path, **overrides: Any) -> Config:
    """A configuration rooted in ``data_dir`` that ignores the process environment."""
    base: dict[str, Any] = {"data": {"root": str(data_dir)}, "nodes": {"custom_paths": []}}
    return load_config(None, environ={}, overrides=deep_merge(base, overrides))


def config_services(config: Config) -> Services:
    """Services with only ``CONFIG`` provided: what a node sees in a unit test (``ctx.services``)."""
    services = Services()
    services.provide(CONFIG, config)
    return services


def make_kernel(
    data_dir: Path,
    *,
    plugins: Sequence[Any] = (),
    node_packs: Sequence[Any] = (),
    load_entrypoints: bool = True,
    plugins_config: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> Kernel:
    """A kernel with every installed plugin (unless ``load_entrypoints=False``) plus ``plugins``.

    ``overrides`` are configuration sections (``auth={...}``, ``storage={...}``); the ``plugins``
    section is passed as ``plugins_config`` because ``plugins`` names the in-process plugin objects.
    """
    if plugins_config is not None:
        overrides["plugins"] = dict(plugins_config)
    return Kernel(
        make_config(data_dir, **overrides),
        plugins=plugins,
        node_packs=node_packs,
        load_entrypoints=load_entrypoints,
    )


class _LoopbackClient(TestClient):
    """WebSockets go to the same host as HTTP (Starlette's own default is ``testserver``), so the
    server's Host-header check sees the same loopback name for both."""

    def websocket_connect(self, url: str, subprotocols: Any = None, **kwargs: Any) -> Any:
        if "://" not in url:
            url = str(self.base_url).replace("http", "ws", 1).rstrip("/") + "/" + url.lstrip("/")
        return super().websocket_connect(url, subprotocols, **kwargs)


def client_for(kernel: Kernel, **kwargs: Any) -> TestClient:
    """A TestClient for the kernel's app on ``http://127.0.0.1:3233``; use it in ``with`` so
    lifespans run."""
    kwargs.setdefault("base_url", "http://127.0.0.1:3233")
    return _LoopbackClient(create_app(kernel), **kwargs)


@contextmanager
def live_server(target: Any, *, host: str = "127.0.0.1", timeout: float = 30.0) -> Iterator[str]:
    """Serve a kernel (or an app made by :func:`create_app`) with the uvicorn settings of
    ``comfytavern serve`` on a free port of ``host``, in a thread; yields the base URL. For tests
    that need real sockets (concurrent clients, peer addresses, proxy headers, close codes)."""
    import uvicorn

    from comfytavern.cli import uvicorn_config

    app = create_app(target) if isinstance(target, Kernel) else target
    kernel = target if isinstance(target, Kernel) else app.state.kernel
    server = uvicorn.Server(uvicorn_config(app, kernel.config, host=host, port=0, lifespan="on"))
    thread = threading.Thread(target=server.run, name="live-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout)


#: Environment variable naming the seed-era editor build (``dist`` folder) for the tests.
SEED_FRONTEND_ENV = "CT_SEED_FRONTEND"
_SEED_FRONTEND = Path("shared") / "frontends" / "comfytavern-2025-06" / "dist"


def editor_build(root: Path, script: str, *, name: str = "index-abc.js") -> Path:
    """A minimal editor build under ``root/dist``: an ``index.html`` loading one module script
    with ``script`` as its text (what build recognition reads); returns the ``dist`` folder."""
    dist = root / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text(
        f'<!doctype html><script type="module" crossorigin src="/assets/{name}"></script>', encoding="utf-8"
    )
    (dist / "assets" / name).write_text(script, encoding="utf-8")
    return dist


def seed_frontend_dist() -> Path | None:
    """The seed-era editor build: ``$CT_SEED_FRONTEND``, else ``shared/frontends/...`` beside the
    repository (or one level up, for a git worktree); ``None`` when there is none."""
    configured = os.environ.get(SEED_FRONTEND_ENV)
    if configured:
        path = Path(configured)
        return path if (path / "index.html").is_file() else None
    root = Path(__file__).resolve().parents[4]  # libs/testing/src/comfytavern_testing/__init__.py
    for base in (root.parent, root.parent.parent):
        if (base / _SEED_FRONTEND / "index.html").is_file():
            return base / _SEED_FRONTEND
    return None


# -- fake installed distributions -------------------------------------------------------------
# importlib.metadata reads ``*.dist-info`` folders from every ``sys.path`` entry exactly as it does
# for pip-installed packages, so these exercise real entry-point discovery without pip.

def make_dist(
    root: Path,
    name: str,
    *,
    version: str = "1.0",
    entry_points: Mapping[str, Mapping[str, str]],
    modules: Mapping[str, str],
) -> None:
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
    lines = []
    for group, entries in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{ep} = {target}" for ep, target in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for rel, source in modules.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")


@contextmanager
def on_path(root: Path) -> Iterator[None]:
    before = set(sys.modules)
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(str(root))
        for mod in set(sys.modules) - before:
            file = getattr(sys.modules[mod], "__file__", None) or ""
            if file.startswith(str(root)):
                del sys.modules[mod]
        importlib.invalidate_caches()
