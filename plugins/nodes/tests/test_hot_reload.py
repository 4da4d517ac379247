"""Hot reload for real: node modules written to a custom folder, edited, reloaded over HTTP."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from comfytavern.kernel import Kernel
from comfytavern.nodes.reload import NodeReloadError
from comfytavern_testing import client_for

Build = Callable[..., Kernel]


def run(kernel: Kernel, full_type: str, registry: Any = None) -> Any:
    item = (registry or kernel.registry.current).get(full_type)
    assert item is not None, f"{full_type} is not registered"
    return item.execute({}, None)


def test_edit_reload_changes_behaviour_and_old_snapshot_keeps_old_code(
    build: Build, custom: Path, module_text: Any, write_file: Any, recorder: Any
) -> None:
    source = write_file(custom / "hot.py", module_text("v1"))
    kernel = build()
    with client_for(kernel) as client:
        assert any(n["type"] == "Echo" and n["namespace"] == "hot" for n in client.get("/api/nodes").json())
        before = kernel.registry.current
        assert run(kernel, "hot:Echo") == {"out": "v1"}

        write_file(source, module_text("v2"))  # same length, same second: no stale bytecode
        response = client.post("/api/nodes/reload", json={})
        assert response.status_code == 200
        body = response.json()
        assert body["success"] is True and body["count"] == len(kernel.registry.current)
        assert "node types" in body["message"]

        assert run(kernel, "hot:Echo") == {"out": "v2"}
        assert run(kernel, "hot:Echo", before) == {"out": "v1"}  # a run holding the old snapshot
        assert kernel.registry.current.generation == before.generation + 1
        assert recorder.of_type("NODES_RELOADED")[-1] == body
    assert not list(custom.rglob("*.pyc"))  # folder modules never leave bytecode behind


def test_a_run_in_flight_finishes_on_the_code_it_started_with(
    build: Build, custom: Path, write_file: Any
) -> None:
    """An async node suspended across a reload resumes with its module's old globals."""
    template = textwrap.dedent(
        """
        from comfytavern import Output, node

        NAMESPACE = "slow"
        VERSION = "{version}"

        def label():
            return "code " + VERSION

        @node(type="Wait", category="test", display_name="Wait", outputs={{"out": Output(data_flow_type="STRING")}})
        async def wait(inputs, ctx):
            await inputs["gate"].wait()
            return {{"out": label()}}

        NODES = [wait]
        """
    )
    source = write_file(custom / "slow.py", template.format(version="one"))
    kernel = build()

    async def scenario() -> tuple[Any, Any]:
        snapshot = kernel.registry.current  # what a run captures when it starts
        gate = anyio.Event()
        results: dict[str, Any] = {}

        async def old_run() -> None:
            results["old"] = await snapshot.get("slow:Wait").execute({"gate": gate}, None)

        async with anyio.create_task_group() as tg:
            tg.start_soon(old_run)
            await anyio.sleep(0.01)
            write_file(source, template.format(version="two"))
            await kernel.reload_nodes_async()
            gate.set()
        done = anyio.Event()
        done.set()
        new = await kernel.registry.current.get("slow:Wait").execute({"gate": done}, None)
        return results["old"], new

    old, new = anyio.run(scenario)
    assert old == {"out": "code one"}
    assert new == {"out": "code two"}


def test_package_submodule_edits_are_picked_up(build: Build, custom: Path, write_file: Any) -> None:
    write_file(custom / "pkg" / "helpers.py", 'GREETING = "hello"\n')
    write_file(
        custom / "pkg" / "__init__.py",
        textwrap.dedent(
            """
            from comfytavern import Output, node
            from .helpers import GREETING

            @node(type="Greet", category="test", display_name="Greet", outputs={"out": Output(data_flow_type="STRING")})
            def greet(inputs, ctx):
                return {"out": GREETING}

            def register_nodes():
                return [greet]
            """
        ),
    )
    kernel = build()
    assert run(kernel, "pkg:Greet") == {"out": "hello"}  # namespace defaults to the module name
    write_file(custom / "pkg" / "helpers.py", 'GREETING = "howdy"\n')
    kernel.reload_nodes()
    assert run(kernel, "pkg:Greet") == {"out": "howdy"}


def test_unchanged_packs_are_not_reimported(build: Build, custom: Path, module_text: Any, write_file: Any) -> None:
    write_file(custom / "a.py", module_text("a", namespace="a"))
    write_file(custom / "b.py", module_text("b", namespace="b"))
    kernel = build()
    a_before, b_before = kernel.registry.current.get("a:Echo"), kernel.registry.current.get("b:Echo")
    write_file(custom / "b.py", module_text("B", namespace="b"))
    kernel.reload_nodes()
    # Same function object: module a was not imported again; module b was.
    assert kernel.registry.current.get("a:Echo").execute is a_before.execute
    assert kernel.registry.current.get("b:Echo").execute is not b_before.execute
    # The core pack (an entry point) was not touched either.
    assert kernel.registry.current.get("core:TextMerge") is not None


def test_added_and_removed_modules(build: Build, custom: Path, module_text: Any, write_file: Any, plugin_rows: Any) -> None:
    kernel = build()
    assert kernel.registry.current.get("new:Echo") is None
    source = write_file(custom / "new.py", module_text("fresh", namespace="new"))
    kernel.reload_nodes()
    assert run(kernel, "new:Echo") == {"out": "fresh"}
    row = plugin_rows(kernel)["custom_nodes/new"]
    assert row["kind"] == "node_folder" and row["status"] == "loaded" and row["nodeCount"] == 1
    assert row["module"] == "custom_nodes/new.py" and row["namespace"] == "new"
    source.unlink()
    kernel.reload_nodes()
    assert kernel.registry.current.get("new:Echo") is None
    assert "custom_nodes/new" not in plugin_rows(kernel)


def test_broken_pack_is_reported_and_others_load(
    build: Build, custom: Path, module_text: Any, write_file: Any
) -> None:
    write_file(custom / "good.py", module_text("ok", namespace="good"))
    broken = write_file(custom / "broken.py", "import this_module_does_not_exist\n")
    kernel = build()
    with client_for(kernel) as client:
        types = {f"{n['namespace']}:{n['type']}" for n in client.get("/api/nodes").json()}
        assert "good:Echo" in types and "core:TextMerge" in types
        listed = {row["name"]: row for row in client.get("/kernel/plugins").json()["plugins"]}
        assert listed["custom_nodes/broken"]["status"] == "error"
        assert "this_module_does_not_exist" in listed["custom_nodes/broken"]["error"]
        assert listed["custom_nodes/good"]["status"] == "loaded"

        body = client.post("/api/nodes/reload").json()
        assert body["success"] is True and "1 failed to load: custom_nodes/broken" in body["message"]

        write_file(broken, module_text("fixed", namespace="broken"))
        assert client.post("/api/nodes/reload").json()["success"] is True
        listed = {row["name"]: row for row in client.get("/kernel/plugins").json()["plugins"]}
        assert listed["custom_nodes/broken"]["status"] == "loaded"
        assert run(kernel, "broken:Echo") == {"out": "fixed"}


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x = 1\n", "exposes no nodes"),
        ("NODES = 5\n", "NODES must be a list"),
        ("NODES = [1]\n", "expected a node made with comfytavern.node"),
        ("raise RuntimeError('boom at import')\n", "boom at import"),
        ("def register_nodes():\n    raise ValueError('no nodes today')\n", "no nodes today"),
        ("NAMESPACE = 3\nNODES = []\n", "NAMESPACE must be a string"),
        (
            "from comfytavern import hookimpl\nNODES = []\n@hookimpl\ndef register_routes(kernel):\n    return []\n",
            "may only implement register_nodes; it also implements register_routes",
        ),
    ],
)
def test_bad_folder_modules_fail_alone(
    build: Build, custom: Path, write_file: Any, plugin_rows: Any, source: str, message: str
) -> None:
    write_file(custom / "bad.py", source)
    kernel = build()
    row = plugin_rows(kernel)["custom_nodes/bad"]
    assert row["status"] == "error" and message in row["error"]
    assert kernel.registry.current.get("core:TextMerge") is not None


@pytest.mark.parametrize(
    ("node_args", "message"),
    [
        ('type="a:b"', "type 'a:b' is not valid"),
        ('type="Ok", namespace="bad/ns"', "namespace 'bad/ns' is not valid"),
        ('type="Ok", client_script_url="missing.js"', "client script 'missing.js' does not exist"),
        ('type="Ok", client_script_url="../escape.js"', "client_script_url '../escape.js'"),
        ('type="Ok", default_mode_id="x"', "default_mode_id/mode_config_key need modes"),
    ],
)
def test_invalid_node_definitions_fail_their_pack(
    build: Build, custom: Path, write_file: Any, plugin_rows: Any, node_args: str, message: str
) -> None:
    write_file(
        custom / "invalid.py",
        f'from comfytavern import node\n@node({node_args}, category="t", display_name="T")\n'
        "def n(inputs, ctx):\n    return {}\nNODES = [n]\n",
    )
    kernel = build()
    row = plugin_rows(kernel)["custom_nodes/invalid"]
    assert row["status"] == "error" and message in row["error"]


def test_same_type_twice_in_one_pack(build: Build, custom: Path, module_text: Any, write_file: Any, plugin_rows: Any) -> None:
    write_file(custom / "twice.py", module_text("x", namespace="tw") + "\nNODES = [echo, echo]\n")
    row = plugin_rows(build())["custom_nodes/twice"]
    assert row["status"] == "error" and "'tw:Echo' is defined twice in this pack" in row["error"]


def test_collision_keeps_the_first_and_names_both(
    build: Build, custom: Path, module_text: Any, write_file: Any, plugin_rows: Any
) -> None:
    write_file(custom / "a_first.py", module_text("first", namespace="dup"))
    write_file(custom / "b_second.py", module_text("second", namespace="dup"))
    write_file(custom / "c_core.py", module_text("impostor", namespace="core", type_="TextMerge"))
    kernel = build()
    assert run(kernel, "dup:Echo") == {"out": "first"}
    assert kernel.registry.current.sources["core:TextMerge"] == "core"  # the built-in pack wins
    second = plugin_rows(kernel)["custom_nodes/b_second"]
    assert second["status"] == "loaded"
    assert "'dup:Echo' is defined by both 'custom_nodes/a_first' and 'custom_nodes/b_second'" in second["error"]
    assert "keeping the one from 'custom_nodes/a_first'" in second["error"]
    assert "'core:TextMerge' is defined by both 'core' and 'custom_nodes/c_core'" in plugin_rows(kernel)["custom_nodes/c_core"]["error"]

    with client_for(kernel) as client:
        body = client.post("/api/nodes/reload").json()
    assert "2 duplicate node types ignored" in body["message"]
    # Editing the first pack does not hand its type to the second (a stable priority order).
    write_file(custom / "a_first.py", module_text("FIRST", namespace="dup"))
    kernel.reload_nodes()
    assert run(kernel, "dup:Echo") == {"out": "FIRST"}


def test_failed_reload_keeps_the_old_registry_live(
    build: Build, custom: Path, module_text: Any, write_file: Any, recorder: Any
) -> None:
    write_file(custom / "hot.py", module_text("v1"))
    kernel = build(plugins_config={"strict": True})
    with client_for(kernel) as client:
        before = client.get("/api/nodes")
        snapshot = kernel.registry.current
        write_file(custom / "hot.py", module_text("v2"))
        write_file(custom / "broken.py", "raise ImportError('half-written file')\n")
        response = client.post("/api/nodes/reload")
        assert response.status_code == 500
        body = response.json()
        assert body["success"] is False and "half-written file" in body["error"]
        assert "previous node definitions are still in use" in body["message"]
        assert kernel.registry.current is snapshot
        assert run(kernel, "hot:Echo") == {"out": "v1"}
        after = client.get("/api/nodes", headers={"If-None-Match": before.headers["etag"]})
        assert after.status_code == 304
        assert recorder.of_type("NODES_RELOADED")[-1]["success"] is False
        assert {r["name"] for r in client.get("/kernel/plugins").json()["plugins"]} >= {"custom_nodes/hot"}

        (custom / "broken.py").unlink()
        assert client.post("/api/nodes/reload").status_code == 200
        assert run(kernel, "hot:Echo") == {"out": "v2"}


def test_disabled_folder_packs_are_never_imported(
    build: Build, custom: Path, write_file: Any, tmp_path: Path, plugin_rows: Any
) -> None:
    marker = tmp_path / "imported.txt"
    write_file(custom / "off.py", f"open({str(marker)!r}, 'w').close()\nNODES = []\n")
    kernel = build(plugins_config={"disabled": ["custom_nodes/off"]})
    assert plugin_rows(kernel)["custom_nodes/off"]["status"] == "disabled"
    assert not marker.exists()


def test_missing_folders_are_skipped_and_a_file_is_reported(
    build: Build, tmp_path: Path, write_file: Any, plugin_rows: Any
) -> None:
    write_file(tmp_path / "not_a_folder", "x")
    kernel = build(nodes={"custom_paths": ["custom_nodes", "does_not_exist", "not_a_folder"]})
    rows = plugin_rows(kernel)
    assert "does_not_exist" not in rows
    assert rows["not_a_folder"]["status"] == "error" and "not a folder" in rows["not_a_folder"]["error"]


def test_invalid_module_names_are_reported(build: Build, custom: Path, write_file: Any, plugin_rows: Any) -> None:
    write_file(custom / "my-nodes.py", "NODES = []\n")
    write_file(custom / "_private.py", "raise SystemExit('never imported')\n")
    rows = plugin_rows(build())
    assert "not a valid Python module name" in rows["custom_nodes/my-nodes"]["error"]
    assert "custom_nodes/_private" not in rows


def test_entry_point_pack_hot_reload(build: Build, tmp_path: Path, plugin_rows: Any) -> None:
    """A pip-installed pack (a real dist-info on sys.path): edit, reload, uninstall, reload."""
    from comfytavern_testing import make_dist, on_path

    site = tmp_path / "site"
    make_dist(
        site,
        "comfytavern-nodes-demo",
        entry_points={"comfytavern.node_packs": {"demo": "demo_pack"}},
        modules={"demo_pack/__init__.py": _ep_source("one")},
    )
    with on_path(site):
        kernel = build(enable=("demo",))
        assert run(kernel, "demo:Echo") == {"out": "one"}
        assert plugin_rows(kernel)["demo"]["distribution"] == "comfytavern-nodes-demo"
        (site / "demo_pack" / "__init__.py").write_text(_ep_source("two"), encoding="utf-8")
        kernel.reload_nodes()
        assert run(kernel, "demo:Echo") == {"out": "two"}
        for info in site.glob("*.dist-info"):
            for file in info.iterdir():
                file.unlink()
            info.rmdir()
        kernel.reload_nodes()
        assert kernel.registry.current.get("demo:Echo") is None
        assert "demo" not in plugin_rows(kernel)


def _ep_source(value: str) -> str:
    return textwrap.dedent(
        f"""
        from comfytavern import Output, hookimpl, node

        NAMESPACE = "demo"

        @node(type="Echo", category="test", display_name="Echo", outputs={{"out": Output(data_flow_type="STRING")}})
        def echo(inputs, ctx):
            return {{"out": "{value}"}}

        @hookimpl
        def register_nodes():
            return [echo]
        """
    )


def test_concurrent_reloads_are_serialised(build: Build, custom: Path, module_text: Any, write_file: Any) -> None:
    write_file(custom / "hot.py", module_text("v1"))
    kernel = build()
    start = kernel.registry.current.generation

    async def both() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(kernel.reload_nodes_async)
            tg.start_soon(kernel.reload_nodes_async)

    anyio.run(both)
    assert kernel.registry.current.generation == start + 2


def test_a_stale_staging_is_refused(build: Build, custom: Path, module_text: Any, write_file: Any) -> None:
    write_file(custom / "hot.py", module_text("v1"))
    kernel = build()
    stale = kernel.node_sources.stage()
    kernel.reload_nodes()
    current = kernel.registry.current
    with pytest.raises(NodeReloadError, match="another node reload finished"):
        kernel.node_sources.commit(stale)
    assert kernel.registry.current is current


def test_strict_start_up_with_a_broken_folder_pack_is_a_startup_error(build: Build, custom: Path, write_file: Any) -> None:
    from comfytavern.kernel import StartupError

    write_file(custom / "broken.py", "raise ImportError('not today')\n")
    with pytest.raises(StartupError, match="node packs: .*not today"):
        build(plugins_config={"strict": True})
