"""The ``comfytavern`` command: serve, check-config, plugins, version, plus plugins' commands."""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from comfytavern.config import Config, ConfigError, load_config
from comfytavern.version import __version__

__all__ = ["app_factory", "build_config", "main", "uvicorn_config"]

#: Environment used to hand the effective CLI overrides to a reloading or restarted server.
OVERRIDES_ENV = "CT_CLI_OVERRIDES"
CONFIG_ENV = "CT_CONFIG"
#: The uvicorn WebSocket protocol class that coalesces outgoing frames (see engine/transport.py).
WS_PROTOCOL = "comfytavern.engine.transport:CoalescingWebSocketProtocol"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=os.environ.get(CONFIG_ENV, "config.json"),
        help="path to config.json (default: ./config.json; env CT_CONFIG)",
    )
    parser.add_argument("--data-dir", help="base folder for every data path (data.root)")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        out.setdefault("data", {})["root"] = os.path.abspath(args.data_dir)
    if getattr(args, "host", None):
        out.setdefault("server", {})["host"] = args.host
    if getattr(args, "port", None) is not None:
        out.setdefault("server", {})["port"] = args.port
    return out


def build_config(args: argparse.Namespace) -> Config:
    path = args.config
    if path != "config.json" and not os.path.exists(path):
        raise ConfigError(f"{path}: configuration file not found")
    return load_config(path, overrides=_overrides(args))


def app_factory() -> Any:
    """Used by ``serve --reload`` (uvicorn imports it in the reloading child)."""
    from comfytavern.app import create_app
    from comfytavern.kernel import Kernel

    overrides = json.loads(os.environ.get(OVERRIDES_ENV, "{}"))
    config = load_config(os.environ.get(CONFIG_ENV, "config.json"), overrides=overrides)
    _configure_logging(config)
    return create_app(Kernel(config))


def _configure_logging(config: Config) -> None:
    from comfytavern.logs import configure_logging

    configure_logging(config)


def uvicorn_config(app: Any, config: Config, **overrides: Any) -> Any:
    """The uvicorn settings of ``comfytavern serve``, in one place so test servers run the same.

    ``overrides`` replace single options (tests listen on port 0).
    """
    import uvicorn

    options: dict[str, Any] = {
        "host": config.server.host,
        "port": config.server.port,
        "log_config": None,
        "ws_max_size": 16 * 1024 * 1024,
        # Run events are many small frames: write each loop iteration's frames in one call
        # and skip per-message compression (it costs more than it saves on such frames).
        "ws": WS_PROTOCOL,
        "ws_per_message_deflate": False,
        # comfytavern.logs.RequestContextMiddleware writes the access log (with request ids).
        "access_log": False,
        # The app believes forwarded headers from server.trusted_proxies only (comfytavern.proxies);
        # uvicorn's own default would believe them from any local process.
        "proxy_headers": False,
        # Long-lived streams (SSE, WebSockets) must not hold a shutdown or restart forever.
        "timeout_graceful_shutdown": config.execution.shutdown_timeout_seconds + 5.0,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from comfytavern.app import create_app
    from comfytavern.kernel import Kernel, StartupError

    try:
        config = build_config(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    _configure_logging(config)
    if args.reload:
        os.environ[OVERRIDES_ENV] = json.dumps(_overrides(args))
        os.environ[CONFIG_ENV] = os.path.abspath(args.config)
        uvicorn.run(
            "comfytavern.cli:app_factory",
            factory=True,
            host=config.server.host,
            port=config.server.port,
            reload=True,
            log_config=None,
            ws=WS_PROTOCOL,
            ws_per_message_deflate=False,
            access_log=False,
            proxy_headers=False,
        )
        return 0
    try:
        kernel = Kernel(config)
    except (StartupError, ConfigError) as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    app = create_app(kernel)
    server = uvicorn.Server(uvicorn_config(app, config))
    kernel.services["uvicorn_server"] = server
    from comfytavern.restart import RestartController

    # POST /api/server/restart uses it; it sets "restart_requested" (called below) when claimed.
    kernel.services["restart"] = RestartController(kernel, server)
    server.run()
    restart = kernel.services.get("restart_requested")
    if restart:
        restart()
    return 0


def _cmd_check_config(args: argparse.Namespace) -> int:
    from comfytavern.kernel import Kernel, StartupError

    try:
        config = build_config(args)
        kernel = Kernel(config)
    except (ConfigError, StartupError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    failed = [row for row in kernel.plugin_rows() if row["status"] == "error"]
    print(f"configuration OK ({args.config}); auth mode {config.auth.mode!r}; {len(kernel.registry.current)} nodes")
    for row in failed:
        print(f"warning: plugin {row['name']} failed to load: {row['error']}", file=sys.stderr)
    return 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    """Works even when the configuration would not start (it only loads plugins)."""
    from comfytavern.plugin_manager import NODE_PACK_GROUP, PLUGIN_GROUP, PluginLoader

    try:
        config = build_config(args)
        loader = PluginLoader(enabled=config.plugins.enabled, disabled=config.plugins.disabled)
    except ConfigError as exc:
        print(f"configuration error (listing every installed plugin): {exc}", file=sys.stderr)
        loader = PluginLoader()
    loader.load_entry_points(PLUGIN_GROUP, "plugin")
    loader.load_entry_points(NODE_PACK_GROUP, "node_pack")
    rows = [row.as_dict() for row in loader.rows()]
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    for row in rows:
        line = f"{row['status']:<8} {row['kind']:<10} {row['name']:<24} {row['distribution'] or '-'} {row['version'] or ''}"
        print(line.rstrip())
        if row["error"]:
            print(f"         error: {row['error']}")
    return 0


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"comfytavern {__version__}")
    return 0


def _plugin_commands(argv: Sequence[str]) -> tuple[Any, list[Any]]:
    """Build a kernel only when the command is not a built-in one."""
    from comfytavern.kernel import Kernel

    pre = argparse.ArgumentParser(add_help=False)
    _common(pre)
    known, _ = pre.parse_known_args(argv)
    config = build_config(known)
    kernel = Kernel(config)
    return kernel, kernel.commands()


BUILTINS = {"serve", "check-config", "plugins", "version"}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="comfytavern", description="ComfyTavern Server")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the HTTP/WebSocket server")
    _common(serve)
    serve.add_argument("--host", help="listen address (server.host)")
    serve.add_argument("--port", type=int, help="listen port (server.port)")
    serve.add_argument("--reload", action="store_true", help="restart on code changes (development)")
    serve.set_defaults(func=_cmd_serve)

    check = sub.add_parser("check-config", help="validate the configuration without starting")
    _common(check)
    check.set_defaults(func=_cmd_check_config)

    plugins = sub.add_parser("plugins", help="list plugins and node packs with their status")
    _common(plugins)
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.set_defaults(func=_cmd_plugins)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=_cmd_version)

    kernel = None
    first = next((a for a in argv if not a.startswith("-")), None)
    if first is not None and first not in BUILTINS:
        try:
            kernel, commands = _plugin_commands(argv)
        except Exception as exc:  # noqa: BLE001 - report any start-up problem plainly
            print(f"cannot load plugin commands: {exc}", file=sys.stderr)
            return 2
        for command in commands:
            p = sub.add_parser(command.name, help=command.help)
            _common(p)
            command.configure(p)
            p.set_defaults(func=None, plugin_command=command)

    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if getattr(args, "func", None) is not None:
        return int(args.func(args))
    return _run_plugin_command(kernel, args.plugin_command, args)


def _run_plugin_command(kernel: Any, command: Any, args: argparse.Namespace) -> int:
    import anyio

    if not inspect.iscoroutinefunction(command.run):
        return int(command.run(kernel, args) or 0)

    async def runner() -> int:
        async with kernel.lifespan():
            return int(await command.run(kernel, args) or 0)

    return anyio.run(runner)
