"""Chat messages: parsing the JSON text the editor passes around, and building requests.

The nodes exchange histories as JSON strings (``ChatHistory`` slots), as in the original. Input
that is not a valid message list is an error that names the slot, never silently dropped.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from comfytavern_nodes_llm.errors import LlmConfigError

__all__ = [
    "ROLES",
    "dump_messages",
    "image_url",
    "parse_messages",
    "parse_params",
    "transcript",
    "user_message",
]

#: Roles accepted in a message list.
ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})
_PASS_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id")
_BASE64 = re.compile(r"^[A-Za-z0-9+/\s]+={0,2}\s*$")


def _check_message(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, Mapping):
        raise LlmConfigError(f"{where} must be an object with 'role' and 'content', got {type(item).__name__}")
    role = item.get("role")
    if role not in ROLES:
        raise LlmConfigError(f"{where} has role {role!r}; expected one of {', '.join(sorted(ROLES))}")
    content = item.get("content")
    if content is None and not item.get("tool_calls"):
        raise LlmConfigError(f"{where} has no 'content'")
    if content is not None and not isinstance(content, str | list):
        raise LlmConfigError(f"{where} 'content' must be text or a list of parts")
    return {key: item[key] for key in _PASS_KEYS if key in item}


def parse_messages(value: Any, *, slot: str, allow_single: bool = False) -> list[dict[str, Any]]:
    """A message list from a JSON string or a list (blank text is an empty list).

    ``allow_single`` also accepts one message object (what ``CreateMessage`` may produce).
    """
    if value is None:
        return []
    if isinstance(value, str):
        if not value.strip():
            return []
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise LlmConfigError(f"{slot} is not valid JSON ({getattr(exc, 'msg', exc)} at position {getattr(exc, 'pos', '?')})") from None
    if allow_single and isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, list):
        raise LlmConfigError(f"{slot} must be a JSON array of messages, got {type(value).__name__}")
    return [_check_message(item, f"{slot}[{i}]") for i, item in enumerate(value)]


def dump_messages(messages: Sequence[Mapping[str, Any]]) -> str:
    """Messages as the JSON text the ``ChatHistory`` slots carry: compact like JavaScript's
    ``JSON.stringify`` (what the editor and ``core:MergeMessages`` produce), non-ASCII readable."""
    return json.dumps(list(messages), ensure_ascii=False, separators=(",", ":"))


def parse_params(value: Any, *, slot: str) -> dict[str, Any]:
    """An object of extra request parameters from a JSON string or a mapping."""
    if value is None:
        return {}
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise LlmConfigError(f"{slot} is not valid JSON ({getattr(exc, 'msg', exc)} at position {getattr(exc, 'pos', '?')})") from None
    if not isinstance(value, Mapping):
        raise LlmConfigError(f"{slot} must be a JSON object, got {type(value).__name__}")
    for reserved in ("messages", "stream"):
        if reserved in value:
            raise LlmConfigError(f"{slot} must not set {reserved!r}; the node sets it")
    return dict(value)


def _sniff_image(data: bytes) -> str:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/jpeg"


def image_url(value: str, *, slot: str = "image") -> str:
    """An ``image_url`` for a URL, a data URL, or bare base64 (its type sniffed from the bytes)."""
    text = value.strip()
    lowered = text[:16].lower()
    if lowered.startswith(("http://", "https://", "data:image/")):
        return text
    if not _BASE64.match(text[:4096]):
        raise LlmConfigError(f"{slot} must be an http(s) URL, a data: URL or base64 image data")
    try:
        head = base64.b64decode(text[:64] + "=" * (-len(text[:64]) % 4), validate=False)
    except (binascii.Error, ValueError):
        raise LlmConfigError(f"{slot} is not valid base64 image data") from None
    compact = "".join(text.split())
    return f"data:{_sniff_image(head)};base64,{compact}"


def user_message(text: str, image: str | None = None) -> dict[str, Any]:
    """A user message, with an image part when one is given (vision models)."""
    if image and image.strip():
        return {
            "role": "user",
            "content": [
                {"type": "text", "text": text},
                {"type": "image_url", "image_url": {"url": image_url(image)}},
            ],
        }
    return {"role": "user", "content": text}


_LABELS = {"system": "System", "user": "User", "assistant": "Assistant", "tool": "Tool", "developer": "Developer"}


def _plain(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, Mapping):
                if part.get("type") == "text":
                    parts.append(str(part.get("text", "")))
                elif part.get("type") == "image_url":
                    parts.append("[image]")
        return " ".join(parts)
    return ""


def transcript(messages: Sequence[Mapping[str, Any]]) -> str:
    """A readable transcript (``OpenAIChat.full_conversation``)."""
    return "\n\n".join(f"{_LABELS.get(str(m.get('role')), str(m.get('role')))}: {_plain(m.get('content'))}" for m in messages)
