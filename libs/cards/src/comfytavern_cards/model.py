"""Character Card V1/V2/V3 as one normalised model that never loses a field.

The V2 spec says editors "MUST NOT destroy unknown key-value pairs", and msgspec Structs drop
unknown fields, so a card is kept as the dict it was read from (``raw``) plus a normalised
V3-shaped ``data`` dict: every V2/V3 field present with its spec default, every unknown key kept.
Exports start from ``raw`` and write ``data`` back, as SillyTavern does.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from comfytavern_cards.errors import InvalidCardError
from comfytavern_cards.strict import check_card_types, check_pygmalion_types, check_v1_types

__all__ = [
    "V1_FIELDS",
    "CharacterCard",
    "parse_card",
]

#: The six fields every version has (mandatory strings in V1).
V1_FIELDS: tuple[str, ...] = ("name", "description", "personality", "scenario", "first_mes", "mes_example")
_STRING_FIELDS: tuple[str, ...] = V1_FIELDS + (
    "creator_notes",
    "system_prompt",
    "post_history_instructions",
    "creator",
    "character_version",
)
_LIST_FIELDS: tuple[str, ...] = ("alternate_greetings", "tags", "group_only_greetings")
_SPECS: dict[str, Literal[2, 3]] = {"chara_card_v2": 2, "chara_card_v3": 3}

SourceFormat = Literal["chara_card_v3", "chara_card_v2", "v1", "pygmalion"]


@dataclass(frozen=True)
class CharacterCard:
    """A parsed card. ``raw`` is the JSON object as read; ``data`` the normalised V3-shaped data."""

    raw: Mapping[str, Any]
    data: Mapping[str, Any]
    version: Literal[1, 2, 3]
    source_format: SourceFormat
    spec_version: str | None = None

    @property
    def name(self) -> str:
        return str(self.data.get("name") or "")

    def to_v2(self) -> dict[str, Any]:
        """The ``chara`` (V2) object: raw keys kept, V1 fields mirrored at the top level (as ST)."""
        return self._export("chara_card_v2", "2.0")

    def to_v3(self) -> dict[str, Any]:
        """The ``ccv3`` (V3) object; a newer 3.x ``spec_version`` read from the card is kept."""
        version = "3.0"
        if self.version == 3 and self.spec_version and _as_float(self.spec_version) >= 3.0:
            version = self.spec_version
        return self._export("chara_card_v3", version)

    def _export(self, spec: str, spec_version: str) -> dict[str, Any]:
        out = copy.deepcopy(dict(self.raw))
        data = copy.deepcopy(dict(self.data))
        for key in V1_FIELDS:
            out[key] = data[key]
        out["spec"] = spec
        out["spec_version"] = spec_version
        out["data"] = data
        return out


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _string(value: Any, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise InvalidCardError(f"{where} must be a string, not {type(value).__name__}")


def _string_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list):
        raise InvalidCardError(f"{where} must be a list of strings, not {type(value).__name__}")
    return [_string(item, f"{where}[{i}]") for i, item in enumerate(value) if item is not None]


def _normalise_data(data: dict[str, Any], prefix: str) -> dict[str, Any]:
    for key in _STRING_FIELDS:
        data[key] = _string(data.get(key), f"{prefix}.{key}")
    for key in _LIST_FIELDS:
        data[key] = _string_list(data.get(key), f"{prefix}.{key}")
    extensions = data.get("extensions")
    if extensions is None:
        data["extensions"] = {}
    elif not isinstance(extensions, dict):
        raise InvalidCardError(f"{prefix}.extensions must be an object")
    book = data.get("character_book")
    if book is not None:
        if not isinstance(book, dict):
            raise InvalidCardError(f"{prefix}.character_book must be an object")
        entries = book.get("entries", [])
        if not isinstance(entries, (list, dict)):
            raise InvalidCardError(f"{prefix}.character_book.entries must be a list")
    return data


def _from_v1(obj: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {key: obj.get(key) for key in V1_FIELDS}
    # SillyTavern's V1 files carry these at the top level; charaFormatData moves them into data.
    if obj.get("creatorcomment") is not None:
        data["creator_notes"] = obj.get("creatorcomment")
    if obj.get("tags") is not None:
        data["tags"] = obj.get("tags")
    extensions: dict[str, Any] = {}
    for key in ("talkativeness", "fav"):
        if obj.get(key) is not None:
            extensions[key] = obj[key]
    data["extensions"] = extensions
    return data


def _from_pygmalion(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": obj.get("char_name"),
        "description": obj.get("char_persona"),
        "personality": "",
        "scenario": obj.get("world_scenario"),
        "first_mes": obj.get("char_greeting"),
        "mes_example": obj.get("example_dialogue"),
    }


def parse_card(obj: Any, *, strict: bool = False) -> CharacterCard:
    """Validate and normalise a decoded card JSON (V1, V2, V3 or Pygmalion/Gradio).

    Raises :class:`InvalidCardError` naming the offending field. Newer 3.x spec versions are
    accepted (the V3 spec asks for a warning, not a rejection). ``strict`` (uploads) refuses
    spec'd fields of the wrong type instead of coercing them (:mod:`comfytavern_cards.strict`).
    """
    if not isinstance(obj, dict):
        raise InvalidCardError("a character card must be a JSON object")
    spec = obj.get("spec")
    if spec is not None and spec not in _SPECS:
        raise InvalidCardError(f"unsupported card spec {spec!r} (expected chara_card_v2 or chara_card_v3)")
    raw_data = obj.get("data")
    if spec in _SPECS or (spec is None and isinstance(raw_data, dict) and "name" in raw_data):
        if not isinstance(raw_data, dict):
            raise InvalidCardError("data must be an object")
        if strict:
            check_card_types(raw_data, spec_version=obj.get("spec_version"))
        data = copy.deepcopy(raw_data)
        for key in V1_FIELDS:  # ST cards mirror V1 fields at the top level
            if data.get(key) in (None, "") and isinstance(obj.get(key), str):
                data[key] = obj[key]
        version: Literal[1, 2, 3] = _SPECS.get(spec, 2) if isinstance(spec, str) else 2
        source: SourceFormat = "chara_card_v3" if version == 3 else "chara_card_v2"
        spec_version = obj.get("spec_version")
        spec_version_text = str(spec_version) if spec_version is not None else None
    elif "char_name" in obj:
        if strict:
            check_pygmalion_types(obj)
        data, version, source, spec_version_text = _from_pygmalion(obj), 1, "pygmalion", None
    elif "name" in obj:
        if strict:
            check_v1_types(obj)
        data, version, source, spec_version_text = _from_v1(obj), 1, "v1", None
    else:
        raise InvalidCardError("not a character card: no name field")
    normalised = _normalise_data(data, "data" if version > 1 else "card")
    return CharacterCard(
        raw=copy.deepcopy(obj),
        data=normalised,
        version=version,
        source_format=source,
        spec_version=spec_version_text,
    )
