"""Regex rules with JavaScript semantics, run safely.

The editor's rules are written for JavaScript's ``text.replace(new RegExp(pattern, flags), repl)``:
only the first match is replaced unless the ``g`` flag is set, and the replacement uses ``$1``,
``$<name>``, ``$&``, ``$$``, ``$``` and ``$'``. We reproduce that with the ``regex`` module, whose
match timeout stops catastrophic patterns (Python's ``re`` cannot be interrupted, and a stuck
worker thread would never come back). SillyTavern regex scripts (``scriptName``/``findRegex``)
are converted on load.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import regex

from comfytavern_nodes_tavern.errors import TavernError

__all__ = [
    "MATCH_TIMEOUT_SECONDS",
    "RegexRule",
    "apply_rules",
    "compile_js",
    "merge_rules",
    "normalise_rule",
    "parse_rule_list",
    "search",
]

#: Longest time one rule may spend on one text before the run fails with a clear error.
MATCH_TIMEOUT_SECONDS = 2.0
_FLAG_BITS = {"i": regex.IGNORECASE, "m": regex.MULTILINE, "s": regex.DOTALL, "u": 0, "d": 0, "g": 0}
_NAMED_GROUP = regex.compile(r"(?<!\\)\(\?<([A-Za-z_][A-Za-z0-9_]*)>")
_BACKREF = regex.compile(r"\\k<([A-Za-z_][A-Za-z0-9_]*)>")
_SLASHED = regex.compile(r"^/(.*)/([a-z]*)$", regex.DOTALL)


@dataclass(frozen=True)
class RegexRule:
    """One rule as the editor's RegexEditorModal stores it."""

    name: str
    pattern: str
    replacement: str = ""
    flags: str = ""
    description: str | None = None
    enabled: bool = True

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "pattern": self.pattern,
            "replacement": self.replacement,
            "flags": self.flags,
            "enabled": self.enabled,
        }
        if self.description is not None:
            out["description"] = self.description
        return out


def compile_js(pattern: str, flags: str, where: str) -> tuple[regex.Pattern[str], bool]:
    """Compile a JavaScript-style pattern; returns the pattern and whether ``g`` was given."""
    bits = 0
    for flag in flags:
        if flag == "y":
            raise TavernError(f"{where}: the sticky flag 'y' is not supported")
        if flag not in _FLAG_BITS:
            raise TavernError(f"{where}: unknown regex flag {flag!r}")
        bits |= _FLAG_BITS[flag]
    translated = _BACKREF.sub(r"(?P=\1)", _NAMED_GROUP.sub(r"(?P<\1>", pattern))
    try:
        return regex.compile(translated, bits | regex.VERSION0), "g" in flags
    except (regex.error, ValueError, OverflowError) as exc:
        raise TavernError(f"{where}: invalid regular expression {pattern!r}: {exc}") from None


def _group_of(group: int | str) -> Callable[[Any], str]:
    """A template part that inserts capture group ``group`` (empty when it did not take part)."""
    return lambda match: match.group(group) or ""


def _js_replacement(template: str, compiled: regex.Pattern[str]) -> Callable[[Any], str]:
    """A replacement function implementing JavaScript's ``$`` patterns (backslashes are literal)."""
    parts: list[Callable[[Any], str] | str] = []
    literal: list[str] = []
    i, n = 0, len(template)
    groups = compiled.groups
    names = compiled.groupindex

    def flush() -> None:
        if literal:
            parts.append("".join(literal))
            literal.clear()

    while i < n:
        ch = template[i]
        if ch != "$" or i + 1 >= n:
            literal.append(ch)
            i += 1
            continue
        nxt = template[i + 1]
        if nxt == "$":
            literal.append("$")
            i += 2
        elif nxt == "&":
            flush()
            parts.append(lambda m: m.group(0))
            i += 2
        elif nxt == "`":
            flush()
            parts.append(lambda m: m.string[: m.start()])
            i += 2
        elif nxt == "'":
            flush()
            parts.append(lambda m: m.string[m.end() :])
            i += 2
        elif nxt.isdigit():
            two = template[i + 1 : i + 3]
            if len(two) == 2 and two.isdigit() and 1 <= int(two) <= groups:
                number, width = int(two), 2
            elif 1 <= int(nxt) <= groups:
                number, width = int(nxt), 1
            else:
                literal.append(ch)
                i += 1
                continue
            flush()
            parts.append(_group_of(number))
            i += 1 + width
        elif nxt == "<" and names:
            end = template.find(">", i + 2)
            name = template[i + 2 : end] if end > 0 else ""
            if end > 0 and name in names:
                flush()
                parts.append(_group_of(name))
                i = end + 1
            else:
                literal.append(ch)
                i += 1
        else:
            literal.append(ch)
            i += 1
    flush()
    if len(parts) == 1 and isinstance(parts[0], str):
        text = parts[0]
        return lambda m: text
    frozen = tuple(parts)
    return lambda m: "".join(p if isinstance(p, str) else p(m) for p in frozen)


def search(compiled: regex.Pattern[str], text: str, where: str) -> bool:
    try:
        return compiled.search(text, timeout=MATCH_TIMEOUT_SECONDS) is not None
    except TimeoutError:
        raise TavernError(f"{where}: the pattern took longer than {MATCH_TIMEOUT_SECONDS} s") from None


def _st_script(item: Mapping[str, Any]) -> dict[str, Any]:
    """A SillyTavern regex script (``findRegex: "/pat/flags"``) as an editor rule."""
    find = item.get("findRegex")
    pattern, flags = find, ""
    if isinstance(find, str):
        slashed = _SLASHED.match(find)
        if slashed:
            pattern, flags = slashed.group(1), slashed.group(2)
    replacement = item.get("replaceString", "")
    if isinstance(replacement, str):
        replacement = replacement.replace("{{match}}", "$&")
    return {
        "name": item.get("scriptName"),
        "pattern": pattern,
        "replacement": replacement,
        "flags": flags,
        "enabled": not bool(item.get("disabled", False)),
    }


def normalise_rule(item: Any, where: str) -> RegexRule:
    """Validate one rule (editor shape or SillyTavern script); the message names the problem."""
    if not isinstance(item, Mapping):
        raise TavernError(f"{where} must be an object with name and pattern")
    if "findRegex" in item and "pattern" not in item:
        item = _st_script(item)
    name, pattern = item.get("name"), item.get("pattern")
    replacement = item.get("replacement", "")
    flags = item.get("flags") or ""
    enabled = item.get("enabled", True)
    description = item.get("description")
    if not isinstance(name, str) or not name.strip():
        raise TavernError(f"{where}: name must be a non-empty string")
    if not isinstance(pattern, str) or not pattern:
        raise TavernError(f"{where} ({name}): pattern must be a non-empty string")
    if replacement is None:
        replacement = ""
    if not isinstance(replacement, str):
        raise TavernError(f"{where} ({name}): replacement must be a string")
    if not isinstance(flags, str):
        raise TavernError(f"{where} ({name}): flags must be a string such as 'gi'")
    if not isinstance(enabled, bool):
        raise TavernError(f"{where} ({name}): enabled must be true or false")
    if description is not None and not isinstance(description, str):
        raise TavernError(f"{where} ({name}): description must be a string")
    rule = RegexRule(name, pattern, replacement, flags, description, enabled)
    compile_js(pattern, flags, f"{where} ({name})")
    return rule


def parse_rule_list(value: Any, where: str) -> list[RegexRule]:
    """A list of rules; a single rule object or ``{"rules": [...]}`` is accepted too."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        value = value["rules"] if isinstance(value.get("rules"), list) else [value]
    if not isinstance(value, list):
        raise TavernError(f"{where} must be a list of regex rules")
    return [normalise_rule(item, f"{where}[{i}]") for i, item in enumerate(value)]


def merge_rules(*groups: Iterable[RegexRule]) -> list[RegexRule]:
    """Concatenate in order, keeping the first rule of each name (inline rules come first)."""
    seen: set[str] = set()
    out: list[RegexRule] = []
    for group in groups:
        for rule in group:
            if rule.name in seen:
                continue
            seen.add(rule.name)
            out.append(rule)
    return out


def apply_rules(text: str, rules: Iterable[RegexRule]) -> str:
    """Apply every enabled rule in order, each on the previous rule's output."""
    for rule in rules:
        if not rule.enabled:
            continue
        where = f"regex rule {rule.name!r}"
        compiled, global_ = compile_js(rule.pattern, rule.flags, where)
        replace = _js_replacement(rule.replacement, compiled)
        try:
            text = compiled.sub(replace, text, count=0 if global_ else 1, timeout=MATCH_TIMEOUT_SECONDS)
        except TimeoutError:
            raise TavernError(f"{where}: the pattern took longer than {MATCH_TIMEOUT_SECONDS} s") from None
    return text
