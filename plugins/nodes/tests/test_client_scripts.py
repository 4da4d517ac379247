"""Client scripts through both URLs, and every way a path can be wrong."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from comfytavern.kernel import Kernel
from comfytavern_testing import client_for

Build = Callable[..., Kernel]

NEW_URL = "/api/nodes/core/RandomNumber/client-script/client-scripts/RandomNumberNode.js"
LEGACY_URL = "/client-scripts/RandomNumberNode.js"
ORIGIN = "http://localhost:5573"


def _script_file(kernel: Kernel) -> Path:
    item = kernel.registry.current.get("core:RandomNumber")
    assert item is not None and item.source_dir is not None
    return item.source_dir / "client-scripts" / "RandomNumberNode.js"


@pytest.mark.parametrize("url", [NEW_URL, LEGACY_URL])
def test_random_number_script_loads_cross_origin(build: Build, url: str) -> None:
    kernel = build()
    with client_for(kernel) as client:
        response = client.get(url, headers={"Origin": ORIGIN})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/javascript; charset=utf-8"
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == _script_file(kernel).read_bytes()
    assert b"export function setupClientNode" in response.content


def test_the_url_the_editor_builds_from_the_definition(build: Build) -> None:
    kernel = build()
    with client_for(kernel) as client:
        definition = next(n for n in client.get("/api/nodes").json() if n["type"] == "RandomNumber")
        url = f"/api/nodes/{definition['namespace']}/{definition['type']}/client-script/{definition['clientScriptUrl']}"
        assert url == NEW_URL
        assert client.get(url).status_code == 200


def test_folder_pack_client_scripts(build: Build, custom: Path, write_file: Any) -> None:
    write_file(custom / "client-scripts" / "Widget.js", "export function setupClientNode() { return {}; }\n")
    write_file(
        custom / "widget.py",
        'from comfytavern import node\n'
        '@node(type="Widget", category="t", display_name="W", client_script_url="client-scripts/Widget.js")\n'
        "def widget(inputs, ctx):\n    return {}\nNODES = [widget]\n",
    )
    with client_for(build()) as client:
        new = client.get("/api/nodes/widget/Widget/client-script/client-scripts/Widget.js")
        legacy = client.get("/client-scripts/Widget.js")
    assert new.status_code == legacy.status_code == 200
    assert new.content == legacy.content == b"export function setupClientNode() { return {}; }\n"


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("/api/nodes/core/NoSuchNode/client-script/client-scripts/x.js", 404, "node type core:NoSuchNode is not registered"),
        ("/api/nodes/core/RandomNumber/client-script/client-scripts/missing.js", 404, "not found"),
        ("/api/nodes/core/RandomNumber/client-script/client-scripts/RandomNumberNode.txt", 400, "only .js"),
        ("/api/nodes/core/RandomNumber/client-script/utilities.py", 400, "only .js"),
        ("/api/nodes/core/RandomNumber/client-script/client-scripts/%2e%2e/%2e%2e/evil.js", 400, "'..'"),
        ("/api/nodes/core/RandomNumber/client-script/..%2f..%2fevil.js", 400, "'..'"),
        ("/api/nodes/core/RandomNumber/client-script/%2fetc%2fpasswd.js", 400, "must not be empty"),
        ("/api/nodes/core/RandomNumber/client-script/client-scripts//RandomNumberNode.js", 400, "must not be empty"),
        ("/api/nodes/core/RandomNumber/client-script/client-scripts%5cRandomNumberNode.js", 400, "not allowed"),
        ("/api/nodes/core/RandomNumber/client-script/.hidden.js", 400, "must not start with a dot"),
        ("/api/nodes/core/RandomNumber/client-script/client-scripts/%00.js", 400, "not allowed"),
        ("/client-scripts/%2e%2e/utilities.js", 400, "'..'"),
        ("/client-scripts/RandomNumberNode.py", 400, "only .js"),
        ("/client-scripts/nope.js", 404, "not found"),
    ],
)
def test_bad_client_script_paths(build: Build, url: str, status: int, message: str) -> None:
    with client_for(build()) as client:
        response = client.get(url)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_a_symlink_out_of_the_pack_is_rejected(build: Build, custom: Path, tmp_path: Path, write_file: Any) -> None:
    secret = write_file(tmp_path / "outside" / "secret.js", "const secret = 1;\n")
    scripts = custom / "client-scripts"
    scripts.mkdir()
    (scripts / "link.js").symlink_to(secret)
    write_file(custom / "pack.py", 'from comfytavern import node\n@node(type="P", category="t", display_name="P")\n'
               "def p(inputs, ctx):\n    return {}\nNODES = [p]\n")
    with client_for(build()) as client:
        for url in ("/api/nodes/pack/P/client-script/client-scripts/link.js", "/client-scripts/link.js"):
            response = client.get(url)
            assert response.status_code == 400, url
            assert "escapes" in response.json()["error"]


def test_a_node_without_a_source_folder_has_no_scripts(tmp_path: Path) -> None:
    from comfytavern import Node, NodeDefinition
    from comfytavern_testing import make_kernel

    bare = Node(NodeDefinition(type="Bare", namespace="mem", category="t", display_name="Bare"), None)

    class Pack:
        name = "mem-pack"
        NODES = [bare]

    kernel = make_kernel(
        tmp_path,
        node_packs=[Pack()],
        plugins_config={"enabled": ["auth-local", "nodes-routes"]},
        storage={"projects": None, "accounts": None, "runs": None},
    )
    with client_for(kernel) as client:
        response = client.get("/api/nodes/mem/Bare/client-script/x.js")
    assert response.status_code == 404
    assert response.json() == {"error": "node type mem:Bare has no client scripts"}
