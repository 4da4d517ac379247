"""``comfytavern plugins`` (what is installed and whether it loads) and ``comfytavern install``.

``install`` runs pip of the interpreter that runs the server (``sys.executable -m pip``), so a
plugin lands in the server's own environment whichever ``pip`` is first on ``PATH`` (Datasette and
LLM have the same command). Afterwards it compares the installed distributions and says what
makes the change live:

- only node packs added or upgraded (regular installs): a node reload (the editor's 🔄 button or
  ``POST /api/nodes/reload``) — packs are re-scanned and re-imported while the server runs;
- a plugin, an editable install (Python reads ``.pth`` files at start only) or an upgraded
  library the server may already have imported: a restart (``POST /api/server/restart``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import json
import subprocess
import sys
from typing import Any

from comfytavern.config import ConfigError
from comfytavern.plugin_manager import NODE_PACK_GROUP, PLUGIN_GROUP

__all__ = ["InstallReport", "cmd_install", "cmd_plugins", "configure_install", "installed", "what_to_do"]


# -- plugins -----------------------------------------------------------------------------------
def cmd_plugins(args: argparse.Namespace) -> int:
    """Every plugin and node pack (folder packs included) with status and load error.

    Uses a full kernel when the configuration allows one (folder packs, node counts and route
    registration errors are then known); otherwise lists the installed entry points alone.
    """
    from comfytavern.cli_checks import check_server
    from comfytavern.cli_config import build_config

    rows: list[dict[str, Any]] | None = None
    services: list[dict[str, Any]] = []
    try:
        config = build_config(args)
    except ConfigError as exc:
        print(f"configuration error (listing installed distributions only): {exc}", file=sys.stderr)
    else:
        result = check_server(config)
        if result.fatal is not None:
            print(f"the server would not start ({result.fatal}); listing installed distributions only", file=sys.stderr)
        else:
            rows = result.kernel.plugin_rows()
            services = result.kernel.service_catalog.rows()
    if rows is None:
        rows = _entry_point_rows()
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    for row in rows:
        count = row.get("nodeCount") or 0
        nodes = f" ({count} node{'' if count == 1 else 's'})" if count else ""
        source = row["distribution"] or row.get("module") or "-"
        line = f"{row['status']:<8} {row['kind']:<11} {row['name']:<24} {source} {row['version'] or ''}{nodes}"
        print(line.rstrip())
        if row["error"]:
            print(f"         error: {row['error']}")
    for service in services:
        providers = ", ".join(service["providers"]) or "nobody"
        users = ", ".join(service["users"]) or "nobody"
        print(f"service  {service['service']:<24} provided by {providers}; used by {users}")
    return 0


def _entry_point_rows() -> list[dict[str, Any]]:
    from comfytavern.cli_checks import quiet_logs
    from comfytavern.plugin_manager import PluginLoader

    loader = PluginLoader()
    with quiet_logs():
        loader.load_entry_points(PLUGIN_GROUP, "plugin")
        loader.load_entry_points(NODE_PACK_GROUP, "node_pack")
    return [row.as_dict() for row in loader.rows()]


# -- install -----------------------------------------------------------------------------------
def configure_install(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("requirements", nargs="+", metavar="REQUIREMENT",
                        help="what pip installs: a name, name==version, a folder, a wheel or an URL")
    parser.add_argument("-U", "--upgrade", action="store_true", help="upgrade to the newest version")
    parser.add_argument("-e", "--editable", action="store_true", help="install the folder in editable mode")
    parser.add_argument("--pip-arg", action="append", default=[], metavar="ARG",
                        help="pass one more argument to pip (repeatable), e.g. --pip-arg=--no-deps")


#: ``{normalised name: (version, editable, entry-point groups of ours)}``.
Installed = dict[str, tuple[str, bool, frozenset[str]]]


def installed() -> Installed:
    """The distributions visible to this interpreter now."""
    importlib.invalidate_caches()
    out: Installed = {}
    for dist in md.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if not name or name in out:
            continue
        groups = frozenset(ep.group for ep in dist.entry_points if ep.group in (PLUGIN_GROUP, NODE_PACK_GROUP))
        out[name] = (dist.version, _editable(dist), groups)
    return out


def _editable(dist: md.Distribution) -> bool:
    try:
        raw = dist.read_text("direct_url.json")
        return bool(raw and json.loads(raw).get("dir_info", {}).get("editable"))
    except (OSError, ValueError):
        return False


class InstallReport:
    def __init__(self, before: Installed, after: Installed) -> None:
        self.added = sorted(n for n in after if n not in before)
        self.upgraded = sorted(n for n in after if n in before and after[n][0] != before[n][0])
        self.after = after

    def names(self, group: str) -> list[str]:
        return [n for n in (*self.added, *self.upgraded) if group in self.after[n][2]]


def what_to_do(report: InstallReport) -> tuple[str, str]:
    """``(action, reason)``: ``"nothing"``, ``"reload"`` or ``"restart"``."""
    changed = [*report.added, *report.upgraded]
    if not changed:
        return "nothing", "nothing new was installed"
    plugins = report.names(PLUGIN_GROUP)
    if plugins:
        return "restart", f"plugin{'s' if len(plugins) > 1 else ''} {', '.join(plugins)} load at start-up"
    editable = [n for n in changed if report.after[n][1]]
    if editable:
        return "restart", f"editable install{'s' if len(editable) > 1 else ''} ({', '.join(editable)}) are found at start-up only"
    upgraded_libraries = [n for n in report.upgraded if NODE_PACK_GROUP not in report.after[n][2]]
    if upgraded_libraries:
        return "restart", f"upgraded librar{'ies' if len(upgraded_libraries) > 1 else 'y'} {', '.join(upgraded_libraries)} may already be imported"
    packs = report.names(NODE_PACK_GROUP)
    if packs:
        return "reload", f"node pack{'s' if len(packs) > 1 else ''} {', '.join(packs)} can be loaded while the server runs"
    return "nothing", f"{', '.join(changed)} provide{'s' if len(changed) == 1 else ''} no plugin or node pack"


_ADVICE = {
    "reload": "reload the nodes: the 🔄 button of the editor's node panel, or POST /api/nodes/reload "
    "(administrators); no restart needed",
    "restart": "restart the server: POST /api/server/restart (administrators), or stop and start "
    "`comfytavern serve`",
    "nothing": "no reload or restart needed",
}


def cmd_install(args: argparse.Namespace) -> int:
    command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"]
    if args.upgrade:
        command.append("--upgrade")
    command += list(args.pip_arg)
    for requirement in args.requirements:
        command += ["-e", requirement] if args.editable else [requirement]
    print(f"installing into {sys.prefix}: {' '.join(command[4:])}", flush=True)
    before = installed()
    try:
        finished = subprocess.run(command, check=False)
    except OSError as exc:
        print(f"install failed: cannot run pip ({exc})", file=sys.stderr)
        return 1
    if finished.returncode != 0:
        print(f"install failed: pip exited with {finished.returncode}; see its message above", file=sys.stderr)
        return 1
    report = InstallReport(before, installed())
    for name in report.added:
        print(f"installed {name} {report.after[name][0]}")
    for name in report.upgraded:
        print(f"upgraded {name} to {report.after[name][0]}")
    action, reason = what_to_do(report)
    print(f"{reason}: {_ADVICE[action]}")
    return 0
