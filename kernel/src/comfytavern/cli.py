"""The ``comfytavern`` command: serve, check-config, plugins, install, version, plus plugins' commands.

``check-config`` lives in :mod:`comfytavern.cli_checks`, ``plugins`` and ``install`` in
:mod:`comfytavern.cli_plugins`.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from comfytavern.cli_config import CONFIG_ENV, OVERRIDES_ENV, build_config, cli_overrides
from comfytavern.config import Config, ConfigError, load_config
from comfytavern.services import RESTART_REQUESTED, UVICORN_SERVER
from comfytavern.version import __version__

__all__ = ["app_factory", "build_config", "main", "uvicorn_config"]

#: The uvicorn WebSocket protocol class that coalesces outgoing frames (see engine/transport.py).
WS_PROTOCOL = "comfytavern.engine.transport:CoalescingWebSocketProtocol"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=os.environ.get(CONFIG_ENV, "config.json"),
        help="path to config.json (default: ./config.json; env CT_CONFIG)",
    )
    parser.add_argument("--data-dir", help="base folder for every data path (data.root)")


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
    # Start-up builds ~80,000 objects (modules, plugins, the node registry) and no garbage:
    # collecting while it runs costs ~25 ms of the start (measured) and finds nothing. The
    # collector is back on once they are frozen below (or on any early return).
    gc.disable()
    try:
        return _serve(args)
    finally:
        gc.enable()


def _serve(args: argparse.Namespace) -> int:
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
        gc.enable()  # this process only supervises the reloading one
        os.environ[OVERRIDES_ENV] = json.dumps(cli_overrides(args))
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
    from comfytavern import handoff

    # After a restart: the previous process's listening sockets, answered by a stand-in until
    # this process serves on them (see comfytavern.handoff).
    sockets = handoff.adopt(config.server.host, config.server.port)
    holder: dict[str, Any] = {}
    stand_in = (
        handoff.StandIn(sockets, until=lambda: bool(getattr(holder.get("server"), "started", False))).start()
        if sockets
        else None
    )
    try:
        kernel = Kernel(config)
    except (StartupError, ConfigError) as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    app = create_app(kernel)
    server = uvicorn.Server(uvicorn_config(app, config))
    kernel.services.provide(UVICORN_SERVER, server)
    holder["server"] = server
    # What start-up built (modules, plugins, the node registry: ~50,000 tracked objects) lives as
    # long as the process. Frozen out of the collector's generations, it is no longer traversed
    # by every full collection, which otherwise stalls the event loop for 10-100 ms under load.
    # (No gc.collect() first: it found ~20 unreachable objects here and costs ~15 ms of the start.)
    gc.freeze()
    # Collections less often. The young generation's threshold counts containers alive at once:
    # a 1000-node run keeps ~10,000 (its prepared graph) until it ends, so at 10,000 nearly every
    # such run paid a young collection that traversed its own live graph and found nothing
    # (measured: 136 young collections over ~140 runs, ~0.7 ms each; none at 50,000). Garbage
    # without cycles is freed by reference counting whatever the threshold. Earlier measurement,
    # 2000 queued runs with 1000 open sockets: 898 young, 81 middle and 8 full collections of
    # ~40 ms each with the defaults; 66, 2 and 1 with (10_000, 20, 100).
    gc.set_threshold(50_000, 20, 100)
    gc.enable()
    if sockets:
        addresses = ", ".join(f"{s.getsockname()[0]}:{s.getsockname()[1]}" for s in sockets)
        handoff.log.info("serving on the listening socket(s) kept across the restart: %s", addresses)
        server.run(sockets=sockets)
    else:
        server.run()
    if stand_in is not None:
        stand_in.stop()
    restart = kernel.services.lookup(RESTART_REQUESTED)
    if restart:
        restart()
    return 0


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"comfytavern {__version__}")
    return 0


def _plugin_commands(argv: Sequence[str]) -> tuple[Any, list[Any]]:
    """Build a kernel (quietly: plugin load errors belong to ``check-config``) for its commands."""
    from comfytavern.cli_checks import quiet_logs
    from comfytavern.kernel import Kernel

    pre = argparse.ArgumentParser(add_help=False)
    _common(pre)
    known, _ = pre.parse_known_args(argv)
    config = build_config(known)
    with quiet_logs():
        kernel = Kernel(config)
        return kernel, kernel.commands()


BUILTINS = {"serve", "check-config", "plugins", "install", "version"}


def _parser() -> tuple[argparse.ArgumentParser, Any]:
    from comfytavern.cli_checks import cmd_check_config
    from comfytavern.cli_plugins import cmd_install, cmd_plugins, configure_install

    parser = argparse.ArgumentParser(
        prog="comfytavern",
        description="ComfyTavern Server",
        epilog="Run `comfytavern COMMAND --help` for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    serve = sub.add_parser("serve", help="run the HTTP/WebSocket server")
    _common(serve)
    serve.add_argument("--host", help="listen address (server.host)")
    serve.add_argument("--port", type=int, help="listen port (server.port)")
    serve.add_argument("--reload", action="store_true", help="restart on code changes (development)")
    serve.set_defaults(func=_cmd_serve)

    check = sub.add_parser("check-config", help="check the configuration, plugins and node packs without starting")
    _common(check)
    check.set_defaults(func=cmd_check_config)

    plugins = sub.add_parser("plugins", help="list plugins and node packs (folder packs too) with their status")
    _common(plugins)
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.set_defaults(func=cmd_plugins)

    install = sub.add_parser(
        "install",
        help="install a plugin or node pack into this server's Python environment",
        description="Runs pip of the Python that runs the server, then says whether a node reload "
        "or a server restart makes the change live.",
    )
    configure_install(install)
    install.set_defaults(func=cmd_install)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=_cmd_version)
    return parser, sub


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``comfytavern``: the exit code (Ctrl+C: 130, like any shell command)."""
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str]) -> int:
    parser, sub = _parser()
    kernel = None
    first = next((a for a in argv if not a.startswith("-")), None)
    if first is None or first not in BUILTINS:
        # Plugin commands (create-user, worker...) come from a kernel; `comfytavern` and
        # `comfytavern --help` list them too.
        try:
            kernel, commands = _plugin_commands(argv)
        except Exception as exc:  # noqa: BLE001 - report any start-up problem plainly
            if first is not None:
                print(f"cannot load plugin commands: {exc}", file=sys.stderr)
                return 2
            parser.epilog = f"Plugin commands are not listed: {exc}"
            commands = []
        for command in commands:
            p = sub.add_parser(command.name, help=command.help)
            _common(p)
            command.configure(p)
            p.set_defaults(func=None, plugin_command=command)
    if first is None and not any(a in ("-h", "--help") for a in argv):
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
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
