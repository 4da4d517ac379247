"""Chat messages (``CustomMessage``: ``{role, content}``) from the shapes chat files come in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from comfytavern_nodes_tavern.errors import TavernError

__all__ = ["ROLES", "parse_history"]

ROLES = ("system", "user", "assistant")


def _message(item: Any, where: str) -> dict[str, Any] | None:
    if not isinstance(item, Mapping):
        raise TavernError(f"{where} must be an object with role and content")
    if "mes" in item and "role" not in item:
        # A SillyTavern chat line: {name, is_user, is_system, mes}. Hidden system notes are not sent.
        if item.get("is_system"):
            return None
        text = item.get("mes")
        if not isinstance(text, str):
            raise TavernError(f"{where}.mes must be a string")
        return {"role": "user" if item.get("is_user") else "assistant", "content": text}
    role, content = item.get("role"), item.get("content")
    if role not in ROLES:
        raise TavernError(f"{where}.role must be one of {', '.join(ROLES)}")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if isinstance(content, list) and all(isinstance(p, Mapping) and isinstance(p.get("type"), str) for p in content):
        return {"role": role, "content": [dict(p) for p in content]}
    raise TavernError(f"{where}.content must be a string or a list of content parts")


def parse_history(value: Any, where: str) -> list[dict[str, Any]]:
    """Validate a history; ``{"messages": [...]}`` and SillyTavern ``.jsonl`` chats are accepted.

    A SillyTavern chat's first line (``user_name``/``character_name``/``chat_metadata``) is its
    header and is dropped.
    """
    if value is None:
        return []
    if isinstance(value, Mapping) and isinstance(value.get("messages"), list):
        value = value["messages"]
    if not isinstance(value, list):
        raise TavernError(f"{where} must be a list of messages")
    items = list(value)
    if items and isinstance(items[0], Mapping) and "chat_metadata" in items[0] and "mes" not in items[0]:
        items = items[1:]
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        message = _message(item, f"{where}[{i}]")
        if message is not None:
            out.append(message)
    return out
