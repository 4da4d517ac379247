"""ApplyRegex against outputs hand-checked with JavaScript's String.prototype.replace."""

from __future__ import annotations

import time

import pytest

from comfytavern_nodes_tavern import regex_rules
from comfytavern_nodes_tavern.errors import TavernError
from comfytavern_nodes_tavern.processors import apply_regex


def rule(pattern: str, replacement: str = "", flags: str = "", name: str | None = None, **extra: object) -> dict[str, object]:
    return {"name": name or f"{pattern}/{flags}", "pattern": pattern, "replacement": replacement, "flags": flags, **extra}


def apply(text: str, inline: list | None = None, loaded: list | None = None, make_ctx=None) -> str:  # type: ignore[type-arg]
    out = apply_regex.execute({"inputText": text, "inlineRegexRules": inline, "regexRules": loaded}, None)
    return out["outputText"]


@pytest.mark.parametrize(
    ("text", "r", "expected"),
    [
        ("aaa bbb aaa", rule("a+", "X"), "X bbb aaa"),
        ("aaa bbb aaa", rule("a+", "X", "g"), "X bbb X"),
        ("John Smith", rule(r"(\w+)\s(\w+)", "$2, $1"), "Smith, John"),
        ("price: 5", rule(r"\d", "$$$&"), "price: $5"),
        ("2024-05-01", rule(r"(?<y>\d+)-(?<m>\d+)-(?<d>\d+)", "$<d>/$<m>/$<y>"), "01/05/2024"),
        ("ab", rule("(a)(b)", "$3$1"), "$3a"),
        ("abc", rule("b", "[$`|$']"), "a[a|c]c"),
        ("x", rule("x", r"\1"), r"\1"),
        ("Say Hello", rule("hello", "bye", "i"), "Say bye"),
        ("a\nb", rule("^b", "B", "m"), "a\nB"),
        ("a\nb", rule("a.b", "X", "s"), "X"),
        ("a\nb", rule("a.b", "X"), "a\nb"),
        ("abab", rule(r"(?<x>ab)\k<x>", "Y"), "Y"),
        ("abc", rule("x*", "-", "g"), "-a-b-c-"),
        ("{{char}} smiles", rule(r"\{\{char\}\}", "Seraphina", "g"), "Seraphina smiles"),
        ("名字：小明", rule("小(.)", "大$1"), "名字：大明"),
        ("a1b22", rule(r"(\d)(\d)?", "<$1|$2>", "g"), "a<1|>b<2|2>"),
    ],
)
def test_js_replace_semantics(text: str, r: dict[str, object], expected: str) -> None:
    assert apply(text, [r]) == expected


def test_inline_first_then_loaded_deduplicated_by_name_and_disabled_skipped() -> None:
    inline = [rule("cat", "dog", "g", name="pets"), rule("sun", "moon", name="off", enabled=False)]
    loaded = [rule("cat", "bird", "g", name="pets"), rule("dog", "wolf", name="wild")]
    assert apply("cat sun cat", inline, loaded) == "wolf sun dog"


def test_st_scripts_are_accepted_inline() -> None:
    script = {"scriptName": "st", "findRegex": "/(\\w+)@/g", "replaceString": "<{{match}}>"}
    assert apply("a@ b@", [script]) == "<a@> <b@>"


def test_no_rules_returns_the_text() -> None:
    assert apply("unchanged", None, []) == "unchanged"


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"inputText": 3}, "inputText must be a string"),
        ({"inputText": "x", "inlineRegexRules": [rule("(", "")]}, "invalid regular expression"),
        ({"inputText": "x", "inlineRegexRules": [rule("x", "", "y")]}, "sticky flag"),
        ({"inputText": "x", "inlineRegexRules": [rule("x", "", "q")]}, "unknown regex flag"),
        ({"inputText": "x", "inlineRegexRules": "nope"}, "must be a list"),
        ({"inputText": "x", "regexRules": [42]}, r"regexRules\[0\] must be an object"),
        ({"inputText": "x", "regexRules": [rule("x", 5)]}, "replacement must be a string"),
        ({"inputText": "x", "regexRules": [rule("x", enabled="yes")]}, "enabled must be true or false"),
    ],
)
def test_bad_rules(inputs: dict[str, object], message: str) -> None:
    with pytest.raises(TavernError, match=message):
        apply_regex.execute(inputs, None)


def test_catastrophic_pattern_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(regex_rules, "MATCH_TIMEOUT_SECONDS", 0.2)
    started = time.perf_counter()
    with pytest.raises(TavernError, match="took longer"):
        apply("ab" * 60 + "c", [rule(r"^(.*?)(.*?)(.*?)(.*?)(.*?)\5\4\3\2\1$", "x")])
    assert time.perf_counter() - started < 5
