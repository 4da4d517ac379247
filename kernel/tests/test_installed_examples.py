"""End to end with real distributions: the documented example plugin and node pack, and a broken
plugin, installed by pip into a folder on PYTHONPATH; the real CLI and a real server process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = [
    REPO / "docs" / "examples" / "hello-plugin",
    REPO / "docs" / "examples" / "echo-pack",
    Path(__file__).resolve().parent / "fixtures" / "broken-plugin",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
         "--no-build-isolation", "--target", str(target), *map(str, EXAMPLES)],
        check=True,
        capture_output=True,
    )
    return target


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    config = {
        "storage": {"projects": None, "accounts": None, "runs": None},
        "nodes": {"custom_paths": []},
        "plugins": {"settings": {"hello": {"greeting": "Bonjour"}}},
        "logging": {"format": "json"},
    }
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return tmp_path


def env_with(site: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CT_")}
    env["PYTHONPATH"] = str(site) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def cli(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "comfytavern", *args], cwd=cwd, env=env_with(site), capture_output=True, text=True, timeout=60
    )


def test_plugins_command_lists_real_distributions(site: Path, workdir: Path) -> None:
    result = cli(site, workdir, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["hello"]["status"] == "loaded"
    assert (rows["hello"]["distribution"], rows["hello"]["version"]) == ("comfytavern-hello", "1.0.0")
    assert rows["echo"]["kind"] == "node_pack" and rows["echo"]["status"] == "loaded"
    assert rows["broken-example"]["status"] == "error"
    assert "needs a library that is not installed" in rows["broken-example"]["error"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(site: Path, workdir: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "comfytavern", "serve", "--port", str(port), "--data-dir", str(workdir / "data")],
        cwd=workdir,
        env=env_with(site),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"server exited with {proc.returncode}: {out}")
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("server did not become ready")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        if proc.stdout:
            proc.stdout.close()


def test_server_starts_despite_a_broken_plugin(server: str) -> None:
    assert httpx.get(server + "/healthz").status_code == 200
    rows = {row["name"]: row for row in httpx.get(server + "/kernel/plugins").json()["plugins"]}
    assert rows["broken-example"]["status"] == "error"
    assert "ImportError" in rows["broken-example"]["error"]
    assert rows["echo"]["nodeCount"] == 1
    first = httpx.get(server + "/api/hello").json()
    second = httpx.get(server + "/api/hello").json()
    assert first == {"message": "Bonjour, 本地用户", "served": 1}
    assert second["served"] == 2


def test_version_commands(site: Path, workdir: Path) -> None:
    from comfytavern import __version__

    assert cli(site, workdir, "version").stdout.strip() == f"comfytavern {__version__}"
    exe = Path(sys.executable).with_name("comfytavern")
    result = subprocess.run([str(exe), "version"], capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == f"comfytavern {__version__}"


def test_check_config(site: Path, workdir: Path) -> None:
    # The configuration loads, but an installed plugin fails: an error (exit 1), reported once.
    broken = cli(site, workdir, "check-config")
    assert broken.returncode == 1, broken.stderr
    assert broken.stderr.count("plugin broken-example (comfytavern-broken-example)") == 1
    assert "needs a library that is not installed" in broken.stderr
    disabled = workdir / "without-broken.json"
    config = json.loads((workdir / "config.json").read_text(encoding="utf-8"))
    config["plugins"]["disabled"] = ["broken-example"]
    disabled.write_text(json.dumps(config), encoding="utf-8")
    ok = cli(site, workdir, "check-config", "--config", str(disabled))
    assert ok.returncode == 0, ok.stderr
    assert "configuration OK" in ok.stdout
    bad = workdir / "bad.json"
    bad.write_text('{"server": {"port": "eighty"}}', encoding="utf-8")
    result = cli(site, workdir, "check-config", "--config", str(bad))
    assert result.returncode == 2
    assert "$.server.port" in result.stderr
    missing = cli(site, workdir, "check-config", "--config", str(workdir / "nope.json"))
    assert missing.returncode == 2 and "not found" in missing.stderr


def test_serve_refuses_a_bad_configuration(site: Path, workdir: Path) -> None:
    (workdir / "config.json").write_text('{"auth": {"mode": "no-such-mode"}, "storage": {"projects": null, "accounts": null, "runs": null}}', encoding="utf-8")
    result = cli(site, workdir, "serve", "--port", str(free_port()))
    assert result.returncode == 2
    assert "no auth mode named 'no-such-mode'" in result.stderr


def test_served_websocket_uses_the_coalescing_protocol(server: str) -> None:
    """The real CLI server speaks WebSocket (through the coalescing protocol) and survives bad frames."""
    import msgspec
    from websockets.sync.client import connect

    with connect(server.replace("http", "ws") + "/ws", origin="http://localhost:5573") as ws:
        ws.send("{not json")
        reply = msgspec.json.decode(ws.recv(timeout=10))
        assert reply["type"] == "error"
        ws.send(msgspec.json.encode({"type": "NO_SUCH_TYPE", "payload": {}}).decode())
        assert msgspec.json.decode(ws.recv(timeout=10))["type"] == "error"
    assert httpx.get(server + "/healthz").status_code == 200
