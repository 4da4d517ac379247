"""Configuration: layering, strictness, and messages that name the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfytavern.config import ConfigError, env_overrides, load_config


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_defaults_without_a_file() -> None:
    cfg = load_config(None, environ={})
    assert cfg.server.port == 3233
    assert cfg.server.host == "127.0.0.1"
    assert cfg.server.cors_origins == ["http://localhost:5573"]
    assert cfg.execution.max_concurrent_workflows == 5
    assert cfg.auth.mode == "local"
    assert cfg.storage.projects == "filesystem"


def test_layering_defaults_file_env_cli(tmp_path: Path) -> None:
    file = write(tmp_path / "config.json", {"server": {"port": 4000, "host": "0.0.0.0"}, "execution": {"max_concurrent_workflows": 2}})
    env = {"CT_SERVER__PORT": "5000", "CT_EXECUTION__HISTORY_SIZE": "7"}
    cfg = load_config(file, environ=env, overrides={"server": {"port": 6000}})
    assert cfg.server.port == 6000  # CLI beats env beats file
    assert cfg.server.host == "0.0.0.0"  # file beats default
    assert cfg.execution.history_size == 7  # env beats default
    assert cfg.execution.max_concurrent_workflows == 2
    cfg = load_config(file, environ=env)
    assert cfg.server.port == 5000


def test_env_aliases_and_lists() -> None:
    out = env_overrides({"CT_PORT": "1234", "CT_DISABLE_PLUGINS": "a, b", "CT_STRICT_PLUGINS": "1", "CT_AUTH_MODE": "multi-user", "OTHER": "x"})
    assert out == {
        "server": {"port": 1234},
        "plugins": {"disabled": ["a", "b"], "strict": True},
        "auth": {"mode": "multi-user"},
    }


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"server": {"port": "abc"}}, "$.server.port"),
        ({"server": {"prot": 1}}, "unknown field `prot` - at `$.server`"),
        ({"srever": {}}, "unknown field `srever`"),
        ({"execution": {"max_concurrent_workflows": 0}}, "$.execution.max_concurrent_workflows"),
        ({"execution": {"max_nodes": 0}}, "$.execution.max_nodes: must be positive"),
        ({"execution": {"max_edges": -1}}, "$.execution.max_edges: must be positive"),
        ({"server": {"port": 70000}}, "$.server.port"),
        ({"plugins": {"disabled": "x"}}, "$.plugins.disabled"),
        ({"logging": {"level": "LOUD"}}, "$.logging.level"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, data: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path / "config.json", data), environ={})
    assert fragment in str(info.value)


def test_bad_env_value_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"\$\.server\.port"):
        load_config(None, environ={"CT_SERVER__PORT": "not-a-number"})


def test_malformed_json_file(tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(bad, environ={})


def test_relative_data_paths_follow_the_config_file(tmp_path: Path) -> None:
    file = write(tmp_path / "config.json", {"data": {"root": "store"}})
    cfg = load_config(file, environ={})
    assert cfg.data_path("projects") == (tmp_path / "store" / "projects").resolve()
    assert cfg.data_path("database") == (tmp_path / "store" / "data" / "comfytavern.sqlite").resolve()


def test_repository_config_json_is_valid() -> None:
    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / "config.json", environ={})
    assert cfg.server.port == 3233
