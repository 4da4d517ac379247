"""``comfytavern check-config``: everything ``serve`` would refuse or leave broken, without serving.

``serve`` stops on a configuration error (a mistyped key, an unknown auth mode or storage
backend) but isolates a failing plugin or node pack (the server starts without it). An operator
checking a configuration wants both, so this command builds the kernel *and* the app (which is
where plugins read their settings and register routes, e.g. static-frontend's ``dist``) and
reports, each once:

- configuration errors (exit 2: the server would not start);
- every plugin and node pack that failed to load or register (exit 1);
- settings for a plugin, node pack, auth mode or storage backend that is not installed — a
  mistyped name is otherwise silently ignored (exit 1), with the closest installed name;
- settings of a node pack that declares their type (``SETTINGS = (key, Struct)`` in the pack's
  module) and does not accept them (exit 1). Node packs have no hooks and read their settings
  when a node runs, so without this a typo would only show in the first run.

Nothing is opened or written: no storage is opened and no lifespan runs.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import logging
import os
import re
import sys
from collections.abc import Iterable, Iterator
from importlib import metadata
from typing import Any

from comfytavern.config import Config, ConfigError

__all__ = ["ServerCheck", "check_server", "cmd_check_config", "plain_error", "quiet_logs"]


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """Silence the server's loggers (a failing plugin logs an error; the command reports it once)."""
    logger = logging.getLogger("comfytavern")
    previous = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(previous)


class ServerCheck:
    """What building the kernel and the app found."""

    def __init__(self) -> None:
        self.kernel: Any = None
        #: ``(what, message)``: problems that leave part of the server broken.
        self.problems: list[tuple[str, str]] = []
        #: The server would not start at all (configuration or start-up error).
        self.fatal: str | None = None


def check_server(config: Config) -> ServerCheck:
    """Build kernel and app quietly and collect every problem (see the module docstring)."""
    from comfytavern.app import create_app
    from comfytavern.kernel import Kernel, StartupError
    from comfytavern.plugin_manager import PluginError

    result = ServerCheck()
    with quiet_logs():
        try:
            kernel = Kernel(config)
            create_app(kernel)  # plugins read their settings and register their routes here
        except (ConfigError, StartupError, PluginError) as exc:
            result.fatal = str(exc)
            return result
    result.kernel = kernel
    for row in kernel.plugin_rows():
        if row["status"] == "error":
            what = {"plugin": "plugin", "node_pack": "node pack", "node_folder": "node folder"}.get(row["kind"], row["kind"])
            source = f" ({row['distribution']})" if row.get("distribution") else ""
            result.problems.append((f"{what} {row['name']}{source}", plain_error(row["error"] or "failed")))
    result.problems.extend(_unknown_settings(kernel))
    result.problems.extend(_node_pack_settings(kernel))
    return result


def plain_error(message: str) -> str:
    """A plugin row's error without the exception class paths (``comfytavern.config.ConfigError: ``)."""
    return re.sub(r"\b(?:comfytavern\.)?(?:[a-z_]+\.)*(?:PluginError|ConfigError|StartupError): ", "", message)


def _unknown_settings(kernel: Any) -> Iterable[tuple[str, str]]:
    config = kernel.config
    rows = kernel.plugin_rows()
    names = {r["name"] for r in rows} | {r["distribution"] for r in rows if r.get("distribution")}
    names |= {r["namespace"] for r in rows if r.get("namespace")}
    sections = [
        ("plugins.settings", config.plugins.settings, names, "plugin or node pack"),
        ("auth.settings", config.auth.settings, set(kernel.auth_modes), "auth mode"),
        ("storage.settings", config.storage.settings, {name for _, name in kernel.storage_backends}, "storage backend"),
    ]
    for path, settings, known, what in sections:
        for key in settings:
            if key in known:
                continue
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; installed: {', '.join(sorted(known)) or 'none'}"
            yield (f"$.{path}.{key}", f"no {what} named {key!r} is installed, so these settings are ignored{hint}")


def _node_pack_settings(kernel: Any) -> Iterable[tuple[str, str]]:
    """Validate ``plugins.settings.<key>`` of every loaded node pack that declares ``SETTINGS``."""
    import msgspec

    from comfytavern.plugin_manager import NODE_PACK_GROUP

    loaded = {r["name"] for r in kernel.plugin_rows() if r["kind"] == "node_pack" and r["status"] != "error"}
    for entry in metadata.entry_points(group=NODE_PACK_GROUP):
        module = sys.modules.get(entry.module)
        declared = getattr(module, "SETTINGS", None)
        if entry.name not in loaded or not (isinstance(declared, tuple) and len(declared) == 2):
            continue
        key, type_ = declared
        raw = kernel.config.plugins.settings.get(key)
        if raw is None:
            continue
        try:
            msgspec.convert(raw, type_)
        except (msgspec.ValidationError, ValueError) as exc:
            yield (f"$.plugins.settings.{key}", f"node pack {entry.name!r} does not accept these settings: {exc}")


def cmd_check_config(args: argparse.Namespace) -> int:
    from comfytavern.cli_config import build_config

    if args.config == "config.json" and not os.path.exists(args.config):
        print(f"no config.json in {os.getcwd()}, using the defaults")
    try:
        config = build_config(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    result = check_server(config)
    if result.fatal is not None:
        print(f"configuration error: {result.fatal}", file=sys.stderr)
        return 2
    kernel = result.kernel
    storage = ", ".join(f"{kind}={getattr(config.storage, kind)}" for kind in ("projects", "accounts", "runs"))
    summary = (
        f"auth mode {config.auth.mode!r}; storage {storage}; "
        f"{len(kernel.plugin_rows())} plugins and node packs; {len(kernel.registry.current)} nodes"
    )
    for what, message in result.problems:
        print(f"error: {what}: {message}", file=sys.stderr)
    if result.problems:
        count = len(result.problems)
        print(f"configuration has {count} problem{'s' if count > 1 else ''} ({args.config}); {summary}", file=sys.stderr)
        return 1
    print(f"configuration OK ({args.config}); {summary}")
    return 0
