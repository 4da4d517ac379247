"""The isolating loader: real entry-point discovery from (fake) installed distributions."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from comfytavern.kernel import StartupError
from comfytavern.plugin_manager import PluginError
from comfytavern_testing import NO_STORAGE, client_for, make_dist, make_kernel, on_path

GOOD = """
from comfytavern import hookimpl, route, json_response

@hookimpl
def register_routes(kernel):
    async def hello(request):
        return json_response({"hello": "fake"})
    return [route("/api/fake-hello", hello, auth="public")]
"""

PACK = """
from comfytavern import hookimpl, node, Output

NAMESPACE = "fakepack"

@node(type="Seven", category="test", display_name="Seven", outputs={"n": Output("INTEGER")})
def seven(inputs, ctx):
    return {"n": 7}

@hookimpl
def register_nodes():
    return [seven]
"""


@pytest.fixture
def dists(tmp_path: Path):
    root = tmp_path / "site"
    root.mkdir()
    make_dist(root, "ct-good", entry_points={"comfytavern.plugins": {"good": "ct_good"}}, modules={"ct_good/__init__.py": GOOD})
    make_dist(root, "ct-broken", entry_points={"comfytavern.plugins": {"broken": "ct_broken"}},
              modules={"ct_broken/__init__.py": "raise RuntimeError('boom at import')\n"})
    make_dist(
        root,
        "ct-typo",
        entry_points={"comfytavern.plugins": {"typo": "ct_typo"}},
        modules={"ct_typo/__init__.py": "from comfytavern import hookimpl\n\n@hookimpl\ndef register_route(kernel):\n    return []\n"},
    )
    make_dist(root, "ct-nodes-fake", version="2.5", entry_points={"comfytavern.node_packs": {"fakepack": "ct_nodes_fake"}},
              modules={"ct_nodes_fake/__init__.py": PACK})
    make_dist(
        root,
        "ct-nodes-sneaky",
        entry_points={"comfytavern.node_packs": {"sneaky": "ct_nodes_sneaky"}},
        modules={"ct_nodes_sneaky/__init__.py": GOOD.replace("fake-hello", "sneaky")},
    )
    with on_path(root):
        yield root


def rows_by_name(kernel) -> dict[str, dict]:
    return {row["name"]: row for row in kernel.plugin_rows()}


def test_discovery_isolation_and_listing(dists: Path, tmp_path: Path) -> None:
    kernel = make_kernel(tmp_path, storage=NO_STORAGE)
    rows = rows_by_name(kernel)
    assert rows["good"]["status"] == "loaded"
    assert rows["good"]["distribution"] == "ct-good" and rows["good"]["version"] == "1.0"
    assert rows["broken"]["status"] == "error"
    assert "boom at import" in rows["broken"]["error"]
    assert rows["typo"]["status"] == "error"
    assert "did you mean 'register_routes'" in rows["typo"]["error"]
    assert rows["fakepack"]["kind"] == "node_pack" and rows["fakepack"]["status"] == "loaded"
    assert rows["fakepack"]["version"] == "2.5" and rows["fakepack"]["nodeCount"] == 1
    assert rows["sneaky"]["status"] == "error"
    assert "may only implement register_nodes" in rows["sneaky"]["error"]
    assert "fakepack:Seven" in kernel.registry.current
    with client_for(kernel) as client:
        assert client.get("/api/fake-hello").json() == {"hello": "fake"}
        assert client.get("/api/sneaky").status_code == 404
        listing = client.get("/kernel/plugins").json()["plugins"]
        assert {r["name"]: r["status"] for r in listing}["broken"] == "error"


def test_strict_mode_makes_failures_fatal(dists: Path, tmp_path: Path) -> None:
    with pytest.raises(PluginError, match="broken"):
        make_kernel(tmp_path, storage=NO_STORAGE, plugins_config={"strict": True})


def test_disabled_plugins_are_never_imported(dists: Path, tmp_path: Path) -> None:
    kernel = make_kernel(tmp_path, storage=NO_STORAGE, plugins_config={"disabled": ["broken", "ct-nodes-fake"]})
    rows = rows_by_name(kernel)
    assert rows["broken"]["status"] == "disabled" and rows["broken"]["error"] is None
    assert rows["fakepack"]["status"] == "disabled"
    assert "ct_broken" not in sys.modules and "ct_nodes_fake" not in sys.modules
    assert "fakepack:Seven" not in kernel.registry.current


def test_allowlist_loads_only_named_plugins(dists: Path, tmp_path: Path) -> None:
    kernel = make_kernel(tmp_path, storage=NO_STORAGE, plugins_config={"enabled": ["good", "auth-local"]})
    rows = rows_by_name(kernel)
    assert rows["good"]["status"] == "loaded"
    assert rows["broken"]["status"] == "disabled"
    assert rows["fakepack"]["status"] == "disabled"


def test_duplicate_route_names_both_providers(dists: Path, tmp_path: Path) -> None:
    make_dist(dists, "ct-copycat", entry_points={"comfytavern.plugins": {"copycat": "ct_copycat"}}, modules={"ct_copycat/__init__.py": GOOD})
    kernel = make_kernel(tmp_path, storage=NO_STORAGE)
    with pytest.raises(StartupError) as info:
        kernel.plugin_routes()
    message = str(info.value)
    assert "GET /api/fake-hello" in message and "ct-good" in message and "ct-copycat" in message


def test_unknown_auth_mode_lists_installed(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match=r"no auth mode named 'nope' is installed \(installed: .*local"):
        make_kernel(tmp_path, storage=NO_STORAGE, auth={"mode": "nope"})


def test_unknown_storage_backend_lists_installed(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match=r"\$\.storage\.projects: no projects storage backend named 'nowhere'"):
        make_kernel(tmp_path, storage={**NO_STORAGE, "projects": "nowhere"})


def _provider_plugin(tag: str, records: str) -> object:
    from comfytavern import AuthMode, StorageBackend, hookimpl

    class Provider:
        name = tag

        @hookimpl
        def register_auth_modes(self, kernel: object) -> list[AuthMode]:
            if records != "auth":
                return []
            return [AuthMode("twin", lambda kernel, settings: None)]

        @hookimpl
        def register_storage_backends(self, kernel: object) -> list[StorageBackend]:
            if records != "storage":
                return []
            return [StorageBackend("twin", "runs", lambda kernel, settings: object())]

    return Provider()


@pytest.mark.parametrize(("records", "what"), [("auth", "auth mode 'twin'"), ("storage", "runs storage backend 'twin'")])
def test_duplicate_names_name_both_providers(tmp_path: Path, records: str, what: str) -> None:
    with pytest.raises(StartupError) as info:
        make_kernel(tmp_path, storage=NO_STORAGE, plugins=[_provider_plugin("first", records), _provider_plugin("second", records)])
    assert f"{what} is provided by both first and second" in str(info.value)
