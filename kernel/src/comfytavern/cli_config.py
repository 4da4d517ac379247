"""The configuration a ``comfytavern`` command runs with: ``--config`` plus the command-line overrides.

Its own module so the command modules (:mod:`comfytavern.cli`, :mod:`comfytavern.cli_checks`,
:mod:`comfytavern.cli_plugins`) share it without importing each other.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from comfytavern.config import Config, ConfigError, load_config

__all__ = ["CONFIG_ENV", "OVERRIDES_ENV", "build_config", "cli_overrides"]

#: Environment used to hand the effective CLI overrides to a reloading or restarted server.
OVERRIDES_ENV = "CT_CLI_OVERRIDES"
CONFIG_ENV = "CT_CONFIG"


def cli_overrides(args: argparse.Namespace) -> dict[str, Any]:
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
    return load_config(path, overrides=cli_overrides(args))
