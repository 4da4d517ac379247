"""SillyTavern's basic macros: ``{{char}}``, ``{{user}}``, ``<BOT>``, ``<USER>`` and friends.

Matched case-insensitively, as the V1 spec asks. Unknown ``{{macros}}`` are left as they are.
"""

from __future__ import annotations

from collections.abc import Mapping

import regex

__all__ = ["substitute"]

_MACRO = regex.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}|<(BOT|USER)>", regex.IGNORECASE)


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace known macros; ``values`` keys are lower-case (``char``, ``user``, ``description``...)."""
    if "{{" not in text and "<" not in text:
        return text

    def replace(match: regex.Match[str]) -> str:
        name = (match.group(1) or ("char" if match.group(2).upper() == "BOT" else "user")).lower()
        if name == "newline":
            return "\n"
        value = values.get(name)
        return match.group(0) if value is None else value

    return _MACRO.sub(replace, text)
