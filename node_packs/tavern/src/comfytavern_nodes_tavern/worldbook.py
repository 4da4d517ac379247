"""World books (lorebooks): every common shape normalised, and entries activated by keywords.

Accepted shapes: SillyTavern world files (``{"entries": {"0": {"key": [...], "order": ..}}}``),
Character Card V2 ``character_book`` (``{"entries": [{"keys": [...], "insertion_order": ..}]}``,
with SillyTavern's extras under each entry's ``extensions``), and V3 ``{"spec": "lorebook_v3",
"data": {...}}``.

Activation follows SillyTavern: an entry is active when it is constant, or when one of its keys
appears in the last ``scan_depth`` chat messages (default 2), subject to its secondary keys
(selective logic AND ANY / NOT ALL / NOT ANY / AND ALL). Keys are case-insensitive substrings
unless the entry says otherwise; ``/pattern/flags`` keys and ``use_regex`` entries are regular
expressions. With recursive scanning, active entries' content is scanned again (bounded).
Probability and token budgets are not applied: the result is deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import regex

from comfytavern_nodes_tavern.errors import TavernError
from comfytavern_nodes_tavern.regex_rules import compile_js, search

__all__ = ["DEFAULT_SCAN_DEPTH", "Activation", "WorldBook", "WorldEntry", "activate", "parse_world_book"]

DEFAULT_SCAN_DEPTH = 2
MAX_RECURSION_PASSES = 5
Position = Literal["before", "after", "depth"]
Role = Literal["system", "user", "assistant"]
_ROLES: tuple[Role, ...] = ("system", "user", "assistant")
_SLASHED = regex.compile(r"^/(.+)/([a-z]*)$", regex.DOTALL)
#: SillyTavern's numeric positions: 0 before char, 1 after char, 2/3 around the author's note,
#: 4 at a chat depth, 5/6 around the example messages. Without an author's note or a separate
#: example block, 2/3/5/6 are placed after the character definitions.
_ST_POSITIONS: dict[int, Position] = {0: "before", 1: "after", 2: "after", 3: "after", 4: "depth", 5: "after", 6: "after"}
_LOGIC = {0: "and_any", 1: "not_all", 2: "not_any", 3: "and_all"}


@dataclass(frozen=True)
class WorldEntry:
    uid: str
    keys: tuple[str, ...]
    content: str
    secondary_keys: tuple[str, ...] = ()
    selective: bool = False
    logic: str = "and_any"
    constant: bool = False
    enabled: bool = True
    order: float = 100
    position: Position = "before"
    depth: int = 4
    role: Role = "system"
    scan_depth: int | None = None
    case_sensitive: bool | None = None
    whole_words: bool | None = None
    use_regex: bool = False
    exclude_recursion: bool = False
    prevent_recursion: bool = False


@dataclass(frozen=True)
class WorldBook:
    name: str
    entries: tuple[WorldEntry, ...]
    scan_depth: int | None = None
    recursive: bool = False


@dataclass
class Activation:
    """Active entries' content grouped by where it goes, each group in insertion order."""

    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    at_depth: list[tuple[int, Role, str]] = field(default_factory=list)
    active: list[str] = field(default_factory=list)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(k.strip() for k in value.split(",") if k.strip())
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise TavernError(f"{where} must be a list of strings")
    return tuple(k for k in value if k.strip())


def _int(value: Any, where: str, default: int | None) -> int | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TavernError(f"{where} must be a number")
    return int(value)


def _bool(value: Any, default: bool | None) -> bool | None:
    return default if value is None else bool(value)


def _role(value: Any) -> Role:
    if isinstance(value, int) and 0 <= value < 3:
        return _ROLES[value]
    return value if value in _ROLES else "system"


def _entry(raw: Any, where: str, index: int) -> WorldEntry:
    if not isinstance(raw, Mapping):
        raise TavernError(f"{where} must be an object")
    raw_ext = raw.get("extensions")
    ext: Mapping[str, Any] = raw_ext if isinstance(raw_ext, Mapping) else {}
    st_style = "key" in raw or "keysecondary" in raw or "disable" in raw or "uid" in raw
    content = raw.get("content", "")
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise TavernError(f"{where}.content must be a string")
    keys = _strings(raw.get("key") if st_style and "keys" not in raw else raw.get("keys"), f"{where}.keys")
    secondary = _strings(raw.get("keysecondary", raw.get("secondary_keys")), f"{where}.secondary_keys")
    position_value = raw.get("position") if st_style else ext.get("position", raw.get("position"))
    if isinstance(position_value, (int, float)) and not isinstance(position_value, bool):
        position = _ST_POSITIONS.get(int(position_value), "before")
    elif position_value == "after_char":
        position = "after"
    else:
        position = "before"
    enabled = not bool(raw.get("disable")) if st_style else raw.get("enabled", True) is not False
    order = raw.get("order") if st_style else raw.get("insertion_order", raw.get("order"))
    logic_value = raw.get("selectiveLogic", ext.get("selectiveLogic", 0))
    get = (lambda k, e=None: raw.get(k, ext.get(e or k))) if st_style else (lambda k, e=None: ext.get(e or k))
    return WorldEntry(
        uid=str(raw.get("uid", raw.get("id", index))),
        keys=keys,
        content=content,
        secondary_keys=secondary,
        selective=bool(raw.get("selective", bool(secondary))),
        logic=_LOGIC.get(logic_value if isinstance(logic_value, int) else 0, "and_any"),
        constant=bool(raw.get("constant", False)),
        enabled=enabled,
        order=float(_int(order, f"{where}.order", 100) or 0),
        position=position,
        depth=max(_int(get("depth"), f"{where}.depth", 4) or 0, 0),
        role=_role(get("role")),
        scan_depth=_int(get("scanDepth", "scan_depth"), f"{where}.scan_depth", None),
        case_sensitive=_bool(raw.get("case_sensitive", get("caseSensitive", "case_sensitive")), None),
        whole_words=_bool(get("matchWholeWords", "match_whole_words"), None),
        use_regex=bool(raw.get("use_regex", False)),
        exclude_recursion=bool(get("excludeRecursion", "exclude_recursion")),
        prevent_recursion=bool(get("preventRecursion", "prevent_recursion")),
    )


def parse_world_book(value: Any, where: str) -> WorldBook:
    """Normalise any accepted world-book shape; errors name the entry and field."""
    if not isinstance(value, Mapping):
        raise TavernError(f"{where} must be an object with entries")
    if value.get("spec") == "lorebook_v3" and isinstance(value.get("data"), Mapping):
        value = value["data"]
    entries = value.get("entries")
    if isinstance(entries, Mapping):
        items: Sequence[Any] = list(entries.values())
    elif isinstance(entries, list):
        items = entries
    else:
        raise TavernError(f"{where}.entries must be a list or an object of entries")
    parsed = tuple(_entry(item, f"{where}.entries[{i}]", i) for i, item in enumerate(items))
    name = value.get("name")
    return WorldBook(
        name=name if isinstance(name, str) else "",
        entries=parsed,
        scan_depth=_int(value.get("scan_depth"), f"{where}.scan_depth", None),
        recursive=bool(value.get("recursive_scanning", False)),
    )


def _key_matches(entry: WorldEntry, key: str, text: str, where: str) -> bool:
    slashed = _SLASHED.match(key)
    if entry.use_regex or slashed:
        pattern, flags = (slashed.group(1), slashed.group(2)) if slashed else (key, "")
        if not entry.case_sensitive and "i" not in flags and not slashed:
            flags += "i"
        compiled, _ = compile_js(pattern, flags, f"{where} key {key!r}")
        return search(compiled, text, where)
    if entry.whole_words:
        flags = 0 if entry.case_sensitive else regex.IGNORECASE
        return regex.search(rf"(?:^|\W){regex.escape(key)}(?:$|\W)", text, flags) is not None
    if entry.case_sensitive:
        return key in text
    return key.casefold() in text.casefold()


def _matches(entry: WorldEntry, text: str, where: str) -> bool:
    if not any(_key_matches(entry, k, text, where) for k in entry.keys):
        return False
    if not entry.selective or not entry.secondary_keys:
        return True
    hits = [_key_matches(entry, k, text, where) for k in entry.secondary_keys]
    if entry.logic == "and_any":
        return any(hits)
    if entry.logic == "not_all":
        return not all(hits)
    if entry.logic == "not_any":
        return not any(hits)
    return all(hits)


def activate(books: Sequence[WorldBook], messages: Sequence[Mapping[str, Any]]) -> Activation:
    """Which entries fire for this chat, and where their content goes."""
    texts = [m["content"] if isinstance(m.get("content"), str) else "" for m in messages]

    def window(depth: int) -> str:
        return "\n".join(texts[-depth:]) if depth > 0 else ""

    candidates: list[tuple[WorldBook, int, WorldEntry]] = []
    for b, book in enumerate(books):
        for entry in book.entries:
            if entry.enabled and entry.content.strip():
                candidates.append((book, b, entry))
    active: dict[int, tuple[WorldBook, WorldEntry]] = {}
    for i, (book, _b, entry) in enumerate(candidates):
        depth = entry.scan_depth if entry.scan_depth is not None else (book.scan_depth if book.scan_depth is not None else DEFAULT_SCAN_DEPTH)
        where = f"world book entry {entry.uid}"
        if entry.constant or _matches(entry, window(depth), where):
            active[i] = (book, entry)
    recursion_text = "\n".join(e.content for _, e in active.values() if not e.prevent_recursion)
    for _ in range(MAX_RECURSION_PASSES):
        added = False
        for i, (book, _b, entry) in enumerate(candidates):
            if i in active or not book.recursive or entry.exclude_recursion or not recursion_text:
                continue
            if _matches(entry, recursion_text, f"world book entry {entry.uid}"):
                active[i] = (book, entry)
                if not entry.prevent_recursion:
                    recursion_text += "\n" + entry.content
                added = True
        if not added:
            break
    result = Activation()
    ordered = sorted(active.items(), key=lambda item: (item[1][1].order, item[0]))
    for _, (_, entry) in ordered:
        result.active.append(entry.uid)
        if entry.position == "before":
            result.before.append(entry.content)
        elif entry.position == "after":
            result.after.append(entry.content)
        else:
            result.at_depth.append((entry.depth, entry.role, entry.content))
    return result
