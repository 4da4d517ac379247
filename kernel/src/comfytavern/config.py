"""Configuration: typed, layered, and strict.

Layering (later wins): built-in defaults < ``config.json`` < ``CT_*`` environment variables < CLI
flags. Every section is a msgspec Struct that forbids unknown fields, so a typo or a wrong type
stops start-up with a message naming the exact key (``$.server.port``).

The layering is written here (a dict merge and an environment-variable reader, about 60 lines)
rather than taken from a settings library: msgspec, which every wire format of the project
already uses, does the typing and the error paths, and the settings libraries (pydantic-settings,
dynaconf) would bring a second validation framework for what is a ``dict`` merge.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

__all__ = [
    "AuthConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "EditorConfig",
    "ExecutionConfig",
    "LoggingConfig",
    "NodesConfig",
    "PluginsConfig",
    "ServerConfig",
    "StorageConfig",
    "deep_merge",
    "load_config",
]

ENV_PREFIX = "CT_"


class ConfigError(Exception):
    """Raised for any invalid configuration; the message names the offending key."""


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = 3233
    #: Origins allowed by CORS (and by the WebSocket/CSRF Origin checks).
    cors_origins: list[str] = msgspec.field(default_factory=lambda: ["http://localhost:5573"])
    #: Host names the server answers to (``*`` = any, ``*.example.org`` = sub-domains,
    #: ``loopback-addresses`` = any loopback IP). ``null``: loopback names when listening on
    #: loopback, any host otherwise. Defends against DNS rebinding.
    allowed_hosts: list[str] | None = None
    #: Largest accepted request body in bytes (413 above it).
    max_body_bytes: int = 10 * 1024 * 1024
    #: Seconds allowed for each plugin lifespan to start or stop.
    lifespan_timeout_seconds: float = 30.0
    #: Peers (IP addresses or networks) whose ``X-Forwarded-For``/``-Proto`` headers are believed:
    #: your reverse proxies. Empty: nobody's (the client address is the connection's).
    trusted_proxies: list[str] = msgspec.field(default_factory=list)


class DataConfig(_Section):
    #: Base folder for every relative data path below (relative to the config file's folder).
    root: str = "."
    #: Per-user project folders: ``<projects>/<userId>/<projectId>/``.
    projects: str = "projects"
    #: Per-user data (avatars, character cards...): ``<user_data>/<userId>/``.
    user_data: str = "data/users"
    #: Global workflow library listed by ``GET /api/workflows``.
    library_workflows: str = "library/workflows"
    #: SQLite database file used by the embedded storage backends.
    database: str = "data/comfytavern.sqlite"


class ExecutionConfig(_Section):
    max_concurrent_workflows: int = 5
    #: Finished runs kept in the persisted history (oldest dropped first).
    history_size: int = 500
    #: Per-node time limit in seconds; ``null`` means no limit.
    node_timeout_seconds: float | None = None
    #: Worker threads for sync nodes, a pool of their own (abandoned threads count until they end).
    node_threads: int = 40
    #: On shutdown or restart: ``interrupt`` running runs, or ``finish`` them (bounded by the timeout).
    on_shutdown: Literal["interrupt", "finish"] = "interrupt"
    shutdown_timeout_seconds: float = 10.0
    #: Longest one write to the run history may take, and at shutdown the time left in all for
    #: the records still queued (a hung store cannot hold the shutdown); what is left is logged.
    history_write_timeout_seconds: float = 10.0
    #: Most nodes one run may have (after node groups are expanded); larger payloads get a 422.
    max_nodes: int = 50_000
    #: Most edges one run may have (after node groups are expanded); larger payloads get a 422.
    max_edges: int = 200_000
    #: Bytes of encoded events kept per active run for late watchers (the oldest dropped beyond).
    replay_max_bytes: int = 8 * 1024 * 1024
    #: Bytes of encoded records of finished runs kept in memory (the history store has them all).
    recent_runs_max_bytes: int = 8 * 1024 * 1024


class NodesConfig(_Section):
    #: Plain folders of node modules (not packaged), relative to ``data.root``.
    custom_paths: list[str] = msgspec.field(default_factory=lambda: ["custom_nodes"])


class AuthConfig(_Section):
    #: Name of the auth mode (``local``, ``local-password``, ``multi-user``, or a plugin's).
    mode: str = "local"
    #: Settings per auth mode name, passed to that mode only.
    settings: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)


class StorageConfig(_Section):
    #: Backend name for projects and workflows.
    projects: str | None = "filesystem"
    #: Backend name for users, sessions, service keys and credentials.
    accounts: str | None = "sqlite"
    #: Backend name for the run history.
    runs: str | None = "sqlite"
    #: Settings per backend name.
    settings: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)


class PluginsConfig(_Section):
    #: If set, only these plugins/node packs load (entry-point or distribution names).
    enabled: list[str] | None = None
    #: These plugins/node packs never load (never imported).
    disabled: list[str] = msgspec.field(default_factory=list)
    #: Re-raise plugin load errors instead of isolating them (for plugin authors).
    strict: bool = False
    #: Settings per plugin name; read by the plugin through ``kernel.plugin_settings``.
    settings: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: ``auto`` = readable on a terminal, JSON lines otherwise.
    format: Literal["auto", "json", "text"] = "auto"


#: The ``editor.dialect`` names: the later editor (native) and the seed-era one. The plugins
#: that recognise a build (static-frontend) and translate (editor-dialect) use these names.
EDITOR_DIALECT_LATER = "2025-10"
EDITOR_DIALECT_SEED = "seed-2025-06"
#: Valid ``editor.dialect`` values (docs/configuration.md).
EDITOR_DIALECTS = ("auto", EDITOR_DIALECT_LATER, EDITOR_DIALECT_SEED)


class EditorConfig(_Section):
    #: Wire dialect spoken to the editor: ``auto`` (recognise the served build) or a dialect name.
    dialect: str = "auto"


class Config(_Section):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    data: DataConfig = msgspec.field(default_factory=DataConfig)
    execution: ExecutionConfig = msgspec.field(default_factory=ExecutionConfig)
    nodes: NodesConfig = msgspec.field(default_factory=NodesConfig)
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    storage: StorageConfig = msgspec.field(default_factory=StorageConfig)
    plugins: PluginsConfig = msgspec.field(default_factory=PluginsConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)
    editor: EditorConfig = msgspec.field(default_factory=EditorConfig)
    #: Folder that relative ``data.root`` is resolved against (the config file's folder).
    base_dir: str = "."

    def data_path(self, which: str) -> Path:
        """Absolute path of a ``data`` entry (``projects``, ``database``...)."""
        root = Path(self.data.root)
        if not root.is_absolute():
            root = Path(self.base_dir) / root
        value = Path(getattr(self.data, which)) if which != "root" else Path(".")
        path = value if value.is_absolute() else root / value
        return path.resolve()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out


def _validate_semantics(cfg: Config) -> None:
    checks: list[tuple[bool, str]] = [
        (1 <= cfg.server.port <= 65535, "$.server.port: must be between 1 and 65535"),
        (cfg.server.max_body_bytes > 0, "$.server.max_body_bytes: must be positive"),
        (
            cfg.execution.max_concurrent_workflows >= 1,
            "$.execution.max_concurrent_workflows: must be at least 1",
        ),
        (cfg.execution.history_size >= 0, "$.execution.history_size: must not be negative"),
        (
            cfg.execution.node_timeout_seconds is None or cfg.execution.node_timeout_seconds > 0,
            "$.execution.node_timeout_seconds: must be positive or null",
        ),
        (
            cfg.execution.history_write_timeout_seconds > 0,
            "$.execution.history_write_timeout_seconds: must be positive",
        ),
        (cfg.execution.node_threads >= 1, "$.execution.node_threads: must be at least 1"),
        (cfg.execution.max_nodes > 0, "$.execution.max_nodes: must be positive"),
        (cfg.execution.replay_max_bytes > 0, "$.execution.replay_max_bytes: must be positive"),
        (cfg.execution.recent_runs_max_bytes > 0, "$.execution.recent_runs_max_bytes: must be positive"),
        (cfg.execution.max_edges > 0, "$.execution.max_edges: must be positive"),
        (bool(cfg.auth.mode), "$.auth.mode: must not be empty"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    if cfg.editor.dialect not in EDITOR_DIALECTS:
        raise ConfigError(
            f"$.editor.dialect: unknown editor dialect {cfg.editor.dialect!r}; valid: {', '.join(EDITOR_DIALECTS)}"
        )
    from comfytavern.proxies import check_trusted_proxies

    try:
        check_trusted_proxies(cfg.server.trusted_proxies)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` laid over it, nested mappings merged key by key (a new dict)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _set_path(target: dict[str, Any], dotted: list[str], value: Any) -> None:
    node = target
    for part in dotted[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[dotted[-1]] = value


def _parse_env_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _split_list(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


#: Short environment aliases, for the switches people reach for most.
_ENV_ALIASES: dict[str, tuple[list[str], Any]] = {
    "CT_HOST": (["server", "host"], str),
    "CT_PORT": (["server", "port"], _parse_env_value),
    "CT_DATA_DIR": (["data", "root"], str),
    "CT_AUTH_MODE": (["auth", "mode"], str),
    "CT_LOAD_PLUGINS": (["plugins", "enabled"], _split_list),
    "CT_DISABLE_PLUGINS": (["plugins", "disabled"], _split_list),
    "CT_STRICT_PLUGINS": (["plugins", "strict"], lambda raw: raw.lower() in {"1", "true", "yes"}),
}


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``CT_SECTION__KEY=value`` (values parsed as JSON when they are JSON) plus the aliases."""
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        if name in _ENV_ALIASES:
            path, parse = _ENV_ALIASES[name]
            _set_path(out, path, parse(raw))
        elif "__" in name:
            path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
            if any(not part for part in path):
                raise ConfigError(f"environment variable {name}: empty key segment")
            _set_path(out, path, _parse_env_value(raw))
    return out


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the effective configuration.

    ``path`` may be missing (defaults only). ``overrides`` are CLI flags or test settings in the same
    nested shape as ``config.json``.
    """
    data: dict[str, Any] = {}
    base_dir = Path.cwd()
    if path is not None:
        file = Path(path)
        if file.exists():
            try:
                loaded = json.loads(file.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise ConfigError(f"{file}: not valid JSON ({exc})") from None
            if not isinstance(loaded, dict):
                raise ConfigError(f"{file}: the top level must be a JSON object")
            data = loaded
        elif path is not None and Path(path).name != "config.json":
            raise ConfigError(f"{file}: configuration file not found")
        base_dir = file.resolve().parent
    data.pop("$schema", None)
    data = deep_merge(data, env_overrides(os.environ if environ is None else environ))
    if overrides:
        data = deep_merge(data, overrides)
    data.setdefault("base_dir", str(base_dir))
    try:
        cfg = msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None
    _validate_semantics(cfg)
    return cfg
