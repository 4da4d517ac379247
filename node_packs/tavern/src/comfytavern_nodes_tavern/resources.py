"""Loader files: resolved inside the run owner's data folder, read with size limits.

A loader's config value is a path relative to ``<data.user_data>/<userId>/``, optionally written
as a logical ``user://`` path (as the editor's file manager names files). Other schemes
(``system://``, ``shared://``), absolute paths, ``..`` and unsafe names are rejected, never
rewritten: the original let loaders read any server file through ``system://``. For the
character card loader, a bare file name (``Alice.png``, the ``imageName`` the character list
shows) is looked up in the user's card library first.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import msgspec

from comfytavern import NodeContext
from comfytavern.safety import UnsafeName, check_name, resolve_inside
from comfytavern.services import CONFIG
from comfytavern_cards import card_library_dir, user_data_dir
from comfytavern_nodes_tavern.errors import TavernError

__all__ = ["MAX_FILE_BYTES", "read_structured", "resolve_resource"]

#: Largest preset / world book / rules / history file a loader reads.
MAX_FILE_BYTES = 16 * 1024 * 1024

_decoder = msgspec.json.Decoder()


def _segments(value: str, key: str) -> tuple[list[str], bool]:
    text = value.strip()
    scheme, sep, rest = text.partition("://")
    logical = bool(sep)
    if logical:
        if scheme != "user":
            raise TavernError(f"{key}: only files in your own data folder (user://...) can be loaded, not {scheme}://")
        text = rest
    text = text.replace("\\", "/")
    if text.startswith("/") and not logical:
        raise TavernError(f"{key}: absolute paths are not allowed; give a path inside your data folder")
    parts = [p for p in text.strip("/").split("/")]
    if not parts or any(p == "" for p in parts):
        raise TavernError(f"{key}: {value!r} is not a valid file path")
    try:
        return [check_name(p, what="path segment") for p in parts], logical
    except UnsafeName as exc:
        raise TavernError(f"{key}: {exc}") from None


def resolve_resource(ctx: NodeContext, value: Any, *, key: str, card_library: bool = False) -> Path:
    """The file a loader's config value names, guaranteed inside the run owner's folder."""
    if not isinstance(value, str) or not value.strip():
        raise TavernError(f"{key} is not set: choose a file in the node's settings")
    parts, logical = _segments(value, key)
    config = ctx.service(CONFIG)
    try:
        roots: list[Path] = []
        if card_library and not logical and len(parts) == 1:
            roots.append(card_library_dir(config, ctx.user_id))
        roots.append(user_data_dir(config, ctx.user_id))
        for root in roots:
            path = resolve_inside(root, *parts)
            if path.is_file():
                return path
    except UnsafeName as exc:
        raise TavernError(f"{key}: {exc}") from None
    raise TavernError(f"{key}: file {value!r} not found in your data folder")


@functools.cache
def _no_alias_loader() -> Any:
    """Safe YAML without anchors/aliases, so a small file cannot expand into a huge value.

    Built on first use: importing ``yaml`` costs ~10 ms of every server start otherwise."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(None, None, "YAML aliases are not allowed", event.start_mark)
            return super().compose_node(parent, index)

    return NoAliasLoader


def read_bytes(path: Path, key: str, limit: int = MAX_FILE_BYTES) -> bytes:
    with path.open("rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise TavernError(f"{key}: {path.name} is larger than {limit} bytes")
    return data


def read_structured(path: Path, key: str) -> Any:
    """JSON (``.json``), YAML (``.yaml``/``.yml``) or JSON lines (``.jsonl``) by extension."""
    import yaml  # on first use (see _no_alias_loader)

    data = read_bytes(path, key)
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            return yaml.load(data.decode("utf-8-sig"), Loader=_no_alias_loader())  # noqa: S506 - safe loader subclass
        if suffix == ".jsonl":
            return [_decoder.decode(line) for line in data.splitlines() if line.strip()]
        return _decoder.decode(data.removeprefix(b"\xef\xbb\xbf"))
    except (msgspec.DecodeError, json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        raise TavernError(f"{key}: {path.name} cannot be parsed: {exc}") from None
