"""The ``comfytavern`` command as a newcomer meets it: help, exit codes, Ctrl+C, check-config,
plugins (folder packs too). Real processes where the behaviour depends on the process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from comfytavern.cli import main

PLUGIN_COMMANDS = ("worker", "create-user", "set-password", "list-users", "create-key")
BUILTIN_COMMANDS = ("serve", "check-config", "plugins", "install", "version")


def run_cli(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CT_")}
    return subprocess.run([sys.executable, "-m", "comfytavern", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def listing(tmp_path: Path) -> list[str]:
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))


def write_config(folder: Path, config: dict[str, Any], name: str = "config.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("CT_") and not n.startswith("CT_TEST_")]:
        monkeypatch.delenv(name)
    return tmp_path


# -- help and exit codes ---------------------------------------------------------------------
def test_no_command_prints_every_command_and_exits_2(tmp_path: Path) -> None:
    result = run_cli(tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    for command in (*BUILTIN_COMMANDS, *PLUGIN_COMMANDS):
        assert f"    {command} " in result.stderr or f"    {command}\n" in result.stderr, command
    assert listing(tmp_path) == []  # nothing written


def test_help_lists_plugin_commands_and_exits_0(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in (*BUILTIN_COMMANDS, *PLUGIN_COMMANDS):
        assert command in out, command


def test_help_still_works_when_the_configuration_is_broken(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_config(here, {"auth": {"mode": "no-such-mode"}})
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "serve" in out and "Plugin commands are not listed" in out and "no-such-mode" in out


def test_an_unknown_command_is_a_usage_error(here: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_ctrl_c_stops_serve_with_130_and_no_traceback(tmp_path: Path) -> None:
    write_config(tmp_path, {"storage": {"projects": None, "accounts": None, "runs": None}})
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CT_")}
    proc = subprocess.Popen([sys.executable, "-m", "comfytavern", "serve", "--port", str(port)], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=30)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output


def test_ctrl_c_in_any_command_exits_130(here: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import comfytavern.cli as cli

    def interrupted(args: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_version", interrupted)
    assert main(["version"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"


# -- check-config ----------------------------------------------------------------------------
NO_STORAGE = {"projects": None, "accounts": None, "runs": None}


def test_check_config_without_a_file_says_so(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config"]) == 0
    captured = capsys.readouterr()
    assert "no config.json" in captured.out and "using the defaults" in captured.out
    assert "configuration OK" in captured.out
    assert listing(here) == []  # no database, no folders


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"plugins": {"settings": {"static-frontnd": {"dist": "x"}}}},
         "$.plugins.settings.static-frontnd: no plugin or node pack named 'static-frontnd' is installed, "
         "so these settings are ignored; did you mean 'static-frontend'?"),
        ({"plugins": {"settings": {"server-routes": {"public_metrix": True}}}}, "unknown field `public_metrix`"),
        ({"plugins": {"settings": {"server-routes": {"public_metrics": "yes"}}}}, "$.plugins.settings.server-routes"),
        ({"plugins": {"settings": {"static-frontend": {"dist": "no-such-build"}}}}, "static-frontend.dist"),
        ({"auth": {"settings": {"local-pasword": {}}}}, "did you mean 'local-password'?"),
        ({"storage": {**NO_STORAGE, "settings": {"postgress": {}}}}, "did you mean 'postgres'?"),
        # A node pack's own settings (the llm pack declares SETTINGS): typo and wrong type.
        ({"plugins": {"settings": {"llm": {"max_retrie": 3}}}},
         "$.plugins.settings.llm: node pack 'llm' does not accept these settings: Object contains unknown field `max_retrie`"),
        ({"plugins": {"settings": {"llm": {"read_timeout_seconds": "slow"}}}}, "Expected `float`, got `str` - at `$.read_timeout_seconds`"),
        ({"plugins": {"settings": {"llm": {"read_timeout_seconds": -1}}}}, "$.plugins.settings.llm"),
    ],
)
def test_check_config_reports_what_serve_would_leave_broken(
    here: Path, capsys: pytest.CaptureFixture[str], config: dict[str, Any], needle: str
) -> None:
    write_config(here, config)
    before = listing(here)
    assert main(["check-config"]) == 1
    err = capsys.readouterr().err
    assert needle in err
    assert err.count("error: ") == 1, err  # each problem once, no duplicate log line
    assert "configuration has 1 problem" in err
    assert listing(here) == before


def test_check_config_accepts_good_node_pack_settings(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_config(here, {"plugins": {"settings": {"llm": {"max_retries": 0, "read_timeout_seconds": 30}}}})
    assert main(["check-config"]) == 0, capsys.readouterr().err


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"auth": {"mode": "multi-usr"}}, "no auth mode named 'multi-usr'"),
        ({"storage": {"runs": "postgress"}}, "no runs storage backend named 'postgress' is installed (installed: postgres, sqlite)"),
        ({"server": {"port": "eighty"}}, "$.server.port"),
        ({"sever": {}}, "sever"),
    ],
)
def test_check_config_refuses_what_serve_refuses(here: Path, capsys: pytest.CaptureFixture[str], config: dict[str, Any], needle: str) -> None:
    write_config(here, config)
    assert main(["check-config"]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("configuration error") == 1


def test_check_config_reports_each_pack_failure_once(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = here / "custom_nodes"
    folder.mkdir()
    (folder / "broken.py").write_text("raise RuntimeError('this pack is broken')\n", encoding="utf-8")
    (folder / "nocat.py").write_text(
        "from comfytavern import node\n@node(type='X', display_name='x')\ndef x(i, c):\n    return {}\nNODES = [x]\n",
        encoding="utf-8",
    )
    assert main(["check-config"]) == 1
    err = capsys.readouterr().err
    assert err.count("this pack is broken") == 1
    assert err.count("missing required field 'category'") == 1
    assert "node folder custom_nodes/broken" in err and "configuration has 2 problems" in err


def test_plugins_lists_folder_packs_with_their_errors(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = here / "custom_nodes"
    folder.mkdir()
    (folder / "broken.py").write_text("import no_such_module_here\n", encoding="utf-8")
    (folder / "good.py").write_text(
        "from comfytavern import Output, node\n"
        "@node(type='Y', category='c', display_name='y', outputs={'o': Output('STRING')})\n"
        "def y(i, c):\n    return {'o': 'y'}\nNODES = [y]\n",
        encoding="utf-8",
    )
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    broken = next(i for i, line in enumerate(lines) if "custom_nodes/broken" in line)
    assert lines[broken].startswith("error") and "no_such_module_here" in lines[broken + 1]
    assert any(line.startswith("loaded") and "custom_nodes/good" in line and "(1 node)" in line for line in lines)
    assert main(["plugins", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["custom_nodes/broken"]["kind"] == "node_folder" and rows["custom_nodes/broken"]["status"] == "error"
    assert rows["custom_nodes/good"]["nodeCount"] == 1


def test_plugins_still_lists_distributions_when_the_server_would_not_start(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_config(here, {"auth": {"mode": "nope"}})
    assert main(["plugins", "--json"]) == 0
    captured = capsys.readouterr()
    assert "would not start" in captured.err
    assert any(r["name"] == "core" for r in json.loads(captured.out))


# -- install ---------------------------------------------------------------------------------
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server_env(tmp_path: Path) -> Path:
    """A fresh virtual environment that sees this one's packages (a .pth file), so installing
    into it never touches the environment running the tests. Returns its python."""
    import site
    import venv

    target = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(target)
    python = target / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # "import" lines of a .pth run at start-up: addsitedir also reads the editable installs' .pth files
    lines = [f"import site; site.addsitedir({path!r})" for path in site.getsitepackages()]
    (Path(purelib) / "outer.pth").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return python


def install(python: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CT_") and k != "PYTHONPATH"}
    return subprocess.run([str(python), "-m", "comfytavern", "install", *args,
                           "--pip-arg=--no-deps", "--pip-arg=--no-build-isolation", "--pip-arg=--quiet"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_install_into_the_servers_environment_and_say_what_to_do(server_env: Path, tmp_path: Path) -> None:
    pack = install(server_env, tmp_path, str(REPO / "docs" / "examples" / "echo-pack"))
    assert pack.returncode == 0, pack.stderr
    assert f"installing into {server_env.parent.parent}" in pack.stdout
    assert "installed comfytavern-nodes-echo" in pack.stdout
    assert "reload the nodes" in pack.stdout and "no restart needed" in pack.stdout
    # it went into the server's environment, not the one running this test
    import importlib.metadata as md

    with pytest.raises(md.PackageNotFoundError):
        md.version("comfytavern-nodes-echo")
    check = subprocess.run([str(server_env), "-c", "import importlib.metadata as m; print(m.version('comfytavern-nodes-echo'))"],
                           capture_output=True, text=True)
    assert check.stdout.strip() == "1.0.0"

    plugin = install(server_env, tmp_path, str(REPO / "docs" / "examples" / "hello-plugin"))
    assert plugin.returncode == 0, plugin.stderr
    assert "plugin comfytavern-hello load at start-up" in plugin.stdout and "restart the server" in plugin.stdout

    again = install(server_env, tmp_path, str(REPO / "docs" / "examples" / "echo-pack"))
    assert again.returncode == 0 and "nothing new was installed" in again.stdout

    missing = install(server_env, tmp_path, str(tmp_path / "no-such-folder"))
    assert missing.returncode == 1
    assert "install failed: pip exited with" in missing.stderr


def test_what_to_do_after_an_install() -> None:
    from comfytavern.cli_plugins import InstallReport, what_to_do

    pack = frozenset({"comfytavern.node_packs"})
    plugin = frozenset({"comfytavern.plugins"})
    none: frozenset[str] = frozenset()
    before = {"lib": ("1.0", False, none), "old-pack": ("1.0", False, pack)}
    assert what_to_do(InstallReport(before, {**before, "p": ("1", False, pack)}))[0] == "reload"
    assert what_to_do(InstallReport(before, {**before, "p": ("1", False, pack), "newlib": ("2", False, none)}))[0] == "reload"
    assert what_to_do(InstallReport(before, {**before, "old-pack": ("2.0", False, pack)}))[0] == "reload"
    assert what_to_do(InstallReport(before, {**before, "p": ("1", True, pack)}))[0] == "restart"  # editable
    assert what_to_do(InstallReport(before, {**before, "x": ("1", False, plugin)}))[0] == "restart"
    assert what_to_do(InstallReport(before, {**before, "lib": ("1.1", False, none)}))[0] == "restart"  # upgraded library
    assert what_to_do(InstallReport(before, {**before, "newlib": ("2", False, none)}))[0] == "nothing"
    assert what_to_do(InstallReport(before, dict(before)))[0] == "nothing"
