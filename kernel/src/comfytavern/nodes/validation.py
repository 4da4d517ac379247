"""Checks a pack's nodes before they can enter a registry snapshot.

A node that would break the editor or the routes (a ``:`` in its type, an unknown default mode,
a client script that does not exist, a definition that cannot be encoded as JSON) fails its
whole pack at load time, with a message naming the node, instead of failing later for every user.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgspec

from comfytavern.nodes.client_scripts import ScriptPathError, client_script_path
from comfytavern.nodes.definition import Node

__all__ = ["NAME_PATTERN", "node_problems", "pack_problems"]

#: Node types and namespaces: they appear in ``namespace:type`` ids and in URL path segments.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def _name_problem(value: Any, what: str) -> str | None:
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        return (
            f"{what} {value!r} is not valid: use letters, digits, '_', '-' and '.', "
            "starting with a letter, digit or '_'"
        )
    return None


def node_problems(item: Any, default_namespace: str) -> list[str]:
    """Everything wrong with one contributed item (an empty list when it is fine)."""
    if not isinstance(item, Node):
        return [f"contributed {type(item).__name__}, expected a node made with comfytavern.node"]
    d = item.definition
    label = f"node {d.type!r}"
    problems: list[str] = []
    namespace = d.namespace or default_namespace
    for value, what in ((d.type, "type"), (namespace, "namespace")):
        problem = _name_problem(value, what)
        if problem:
            problems.append(f"{label}: {problem}")
    if not d.category:
        problems.append(f"{label}: category must not be empty")
    if not d.display_name:
        problems.append(f"{label}: display_name must not be empty")
    if item.execute is not None and not callable(item.execute):
        problems.append(f"{label}: execute is not callable")
    if d.modes:
        if d.default_mode_id is not None and d.default_mode_id not in d.modes:
            problems.append(f"{label}: default_mode_id {d.default_mode_id!r} is not one of its modes")
        unknown = sorted(set(item.mode_executes) - set(d.modes))
        if unknown:
            problems.append(f"{label}: executes given for unknown modes {unknown}")
    elif d.default_mode_id is not None or d.mode_config_key is not None:
        problems.append(f"{label}: default_mode_id/mode_config_key need modes")
    if d.client_script_url is not None:
        problems.extend(_client_script_problems(item, label))
    try:
        msgspec.json.encode(d)
    except (TypeError, ValueError, OverflowError) as exc:
        problems.append(f"{label}: the definition cannot be encoded as JSON ({exc})")
    return problems


def _client_script_problems(item: Node, label: str) -> list[str]:
    url = item.definition.client_script_url or ""
    if item.source_dir is None:
        return [f"{label}: client_script_url is set but the node's source folder is unknown"]
    try:
        path = client_script_path(item.source_dir, url)
    except ScriptPathError as exc:
        return [f"{label}: client_script_url {url!r}: {exc}"]
    if not path.is_file():
        return [
            f"{label}: client script {url!r} does not exist next to the module that defines the node"
        ]
    return []


def pack_problems(items: Iterable[Any], default_namespace: str) -> list[str]:
    """Problems of every item plus types defined twice within the same pack."""
    problems: list[str] = []
    seen: set[str] = set()
    for item in items:
        found = node_problems(item, default_namespace)
        problems.extend(found)
        if found or not isinstance(item, Node):
            continue
        full = f"{item.definition.namespace or default_namespace}:{item.definition.type}"
        if full in seen:
            problems.append(f"node type {full!r} is defined twice in this pack")
        seen.add(full)
    return problems
