"""Type checks of the spec'd card fields, for cards that are being uploaded.

Reading a library is lenient on purpose (a number where the spec says string becomes that
string, a comma-separated ``tags`` string becomes a list) so that every card SillyTavern shows is
listed. An upload is different: it is validated before it is stored, and a field of the wrong
type is refused with the field's path (HTTP 422) instead of being silently rewritten. ``null`` is
accepted for every optional field (many tools write it for "not set").

Types follow the Character Card V2 and V3 specifications.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from comfytavern_cards.errors import InvalidCardError

__all__ = ["check_card_types", "check_pygmalion_types", "check_v1_types"]

_STRINGS = (
    "name", "description", "personality", "scenario", "first_mes", "mes_example",
    "creator_notes", "system_prompt", "post_history_instructions", "creator", "character_version",
    "nickname",
)
_STRING_LISTS = ("alternate_greetings", "tags", "group_only_greetings", "source")
_NUMBERS = ("creation_date", "modification_date")

_BOOK_FIELDS: dict[str, str] = {
    "name": "string", "description": "string", "scan_depth": "number", "token_budget": "number",
    "recursive_scanning": "boolean", "extensions": "object",
}
_ENTRY_FIELDS: dict[str, str] = {
    "keys": "string list", "secondary_keys": "string list", "content": "string", "extensions": "object",
    "enabled": "boolean", "insertion_order": "number", "case_sensitive": "boolean", "name": "string",
    "priority": "number", "comment": "string", "selective": "boolean", "constant": "boolean",
    "use_regex": "boolean",
}
_ASSET_FIELDS: dict[str, str] = {"type": "string", "uri": "string", "name": "string", "ext": "string"}


def _type_name(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(value), type(value).__name__
    )


def _matches(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "string list":
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    raise AssertionError(kind)


def _check(obj: Mapping[str, Any], fields: Mapping[str, str], where: str) -> None:
    for key, kind in fields.items():
        value = obj.get(key)
        if value is not None and not _matches(value, kind):
            article = "an" if kind[0] in "aeiou" else "a"
            shown = "a list of strings" if kind == "string list" else f"{article} {kind}"
            raise InvalidCardError(f"{where}.{key} must be {shown}, not {_type_name(value)}")


def check_v1_types(obj: Mapping[str, Any], where: str = "card") -> None:
    """The flat V1 fields (and SillyTavern's top-level ``creatorcomment``/``tags``)."""
    _check(obj, {key: "string" for key in _STRINGS[:6]} | {"creatorcomment": "string", "tags": "string list"}, where)


def check_pygmalion_types(obj: Mapping[str, Any], where: str = "card") -> None:
    """Pygmalion/Gradio JSON: every field it defines is a string."""
    fields = ("char_name", "char_persona", "world_scenario", "char_greeting", "example_dialogue")
    _check(obj, dict.fromkeys(fields, "string"), where)


def check_card_types(data: Mapping[str, Any], where: str = "data", *, spec_version: Any = None) -> None:
    """Every spec'd field of a V2/V3 ``data`` object has its spec type (or is ``null``)."""
    if spec_version is not None and not isinstance(spec_version, str):
        raise InvalidCardError(f"spec_version must be a string, not {_type_name(spec_version)}")
    _check(data, dict.fromkeys(_STRINGS, "string"), where)
    _check(data, dict.fromkeys(_STRING_LISTS, "string list"), where)
    _check(data, dict.fromkeys(_NUMBERS, "number"), where)
    _check(data, {"extensions": "object", "character_book": "object"}, where)
    notes = data.get("creator_notes_multilingual")
    if notes is not None:
        if not isinstance(notes, dict):
            raise InvalidCardError(f"{where}.creator_notes_multilingual must be an object, not {_type_name(notes)}")
        _check(notes, dict.fromkeys(notes, "string"), f"{where}.creator_notes_multilingual")
    assets = data.get("assets")
    if assets is not None:
        if not isinstance(assets, list):
            raise InvalidCardError(f"{where}.assets must be a list, not {_type_name(assets)}")
        for index, asset in enumerate(assets):
            if not isinstance(asset, dict):
                raise InvalidCardError(f"{where}.assets[{index}] must be an object, not {_type_name(asset)}")
            _check(asset, _ASSET_FIELDS, f"{where}.assets[{index}]")
    book = data.get("character_book")
    if book is not None:
        _check_book(book, f"{where}.character_book")


def _check_book(book: Mapping[str, Any], where: str) -> None:
    _check(book, _BOOK_FIELDS, where)
    entries = book.get("entries")
    if entries is None:
        return
    if isinstance(entries, dict):  # some tools key the entries by id
        items = [(f"{where}.entries.{key}", entry) for key, entry in entries.items()]
    elif isinstance(entries, list):
        items = [(f"{where}.entries[{index}]", entry) for index, entry in enumerate(entries)]
    else:
        raise InvalidCardError(f"{where}.entries must be a list, not {_type_name(entries)}")
    for path, entry in items:
        if not isinstance(entry, dict):
            raise InvalidCardError(f"{path} must be an object, not {_type_name(entry)}")
        _check(entry, _ENTRY_FIELDS, path)
