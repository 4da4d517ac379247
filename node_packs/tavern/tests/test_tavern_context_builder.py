"""ContextBuilder and world-book activation against hand-checked expected message lists."""

from __future__ import annotations

from typing import Any

import pytest

from comfytavern import NodeContext, Principal
from comfytavern_cards import parse_card
from comfytavern_cards.testing import v2_card
from comfytavern_nodes_tavern.errors import TavernError
from comfytavern_nodes_tavern.processors import context_builder
from comfytavern_nodes_tavern.worldbook import activate, parse_world_book

CTX = NodeContext(prompt_id="p", node_id="n", user=Principal(id="alice", username="Alice"))


def build(**inputs: Any) -> list[dict[str, Any]]:
    return context_builder.execute(inputs, CTX)["finalMessages"]


def card(name: str, **data: Any) -> dict[str, Any]:
    return parse_card(v2_card(name, **data)).to_v3()


def sys(text: str) -> dict[str, str]:
    return {"role": "system", "content": text}


def test_default_order_with_a_card_and_no_history() -> None:
    seraphina = card(
        "Seraphina",
        description="{{char}} guards the forest.",
        personality="kind",
        scenario="{{user}} is lost.",
        first_mes="Welcome, {{user}}.",
        mes_example="<START>\n{{user}}: Hi\n{{char}}: Hello\n<start>\n<BOT>: Bye",
    )
    assert build(characterData=seraphina) == [
        sys("Write Seraphina's next reply in a fictional chat between Seraphina and Alice."),
        sys("Seraphina guards the forest."),
        sys("[Seraphina's personality: kind]"),
        sys("[Circumstances and context of the dialogue: Alice is lost.]"),
        sys("[Example Chat]\nAlice: Hi\nSeraphina: Hello"),
        sys("[Example Chat]\nSeraphina: Bye"),
        sys("[Start a new Chat]"),
        {"role": "assistant", "content": "Welcome, Alice."},
    ]


ST_PRESET: dict[str, Any] = {
    "prompts": [
        {"identifier": "main", "role": "system", "content": "Main for {{char}}."},
        {"identifier": "jailbreak", "role": "system", "content": "Stay in character."},
        {"identifier": "worldInfoBefore", "marker": True},
        {"identifier": "charDescription", "marker": True},
        {"identifier": "chatHistory", "marker": True},
        {"identifier": "worldInfoAfter", "marker": True},
        {"identifier": "custom-note", "role": "user", "content": "Note: be brief.", "injection_position": 1, "injection_depth": 1},
        {"identifier": "unused", "content": "never"},
    ],
    "prompt_order": [
        {"character_id": 100000, "order": [{"identifier": "main", "enabled": True}]},
        {
            "character_id": 100001,
            "order": [
                {"identifier": "main", "enabled": True},
                {"identifier": "worldInfoBefore", "enabled": True},
                {"identifier": "charDescription", "enabled": True},
                {"identifier": "worldInfoAfter", "enabled": True},
                {"identifier": "chatHistory", "enabled": True},
                {"identifier": "custom-note", "enabled": True},
                {"identifier": "jailbreak", "enabled": True},
                {"identifier": "unused", "enabled": False},
            ],
        },
    ],
    "new_chat_prompt": "",
    "wi_format": "[Lore: {0}]",
}

ST_WORLD: dict[str, Any] = {
    "entries": {
        "0": {"uid": 0, "key": ["dragon"], "content": "Dragons sleep in the north.", "order": 10, "position": 0, "disable": False},
        "1": {"uid": 1, "key": ["castle"], "content": "The castle is ruined.", "order": 1, "position": 0},
        "2": {"uid": 2, "key": [], "content": "Magic is rare.", "constant": True, "order": 50, "position": 1},
        "3": {"uid": 3, "key": ["DRAGON"], "keysecondary": ["north", "south"], "selective": True, "selectiveLogic": 3,
              "content": "Needs north and south.", "order": 5, "position": 0},
        "4": {"uid": 4, "key": ["sword"], "content": "At depth.", "position": 4, "depth": 0, "role": 2, "order": 1},
        "5": {"uid": 5, "key": ["dragon"], "content": "disabled", "disable": True},
    }
}

HISTORY = [
    {"role": "user", "content": "The castle gate."},
    {"role": "assistant", "content": "Yes."},
    {"role": "user", "content": "Tell me about the dragon and my sword, to the north."},
]


def test_sillytavern_preset_world_book_and_injections() -> None:
    kai = card(
        "Kai",
        description="A smith.",
        system_prompt="{{original}} Kai speaks tersely.",
        character_book={"entries": [{"keys": ["hammer"], "content": "Kai's hammer is old.", "insertion_order": 5, "enabled": True, "position": "after_char"}]},
    )
    assert build(presetData=ST_PRESET, worldBookData=ST_WORLD, characterData=kai, historyMessages=HISTORY) == [
        sys("Main for Kai. Kai speaks tersely."),
        sys("[Lore: Dragons sleep in the north.]"),
        sys("A smith."),
        sys("[Lore: Magic is rare.]"),
        {"role": "user", "content": "The castle gate."},
        {"role": "assistant", "content": "Yes."},
        {"role": "user", "content": "Note: be brief."},
        {"role": "user", "content": "Tell me about the dragon and my sword, to the north."},
        {"role": "assistant", "content": "At depth."},
        sys("Stay in character."),
    ]


def test_post_history_instructions_replace_jailbreak() -> None:
    kai = card("Kai", post_history_instructions="[{{original}} Reply as {{char}}.]")
    out = build(presetData=ST_PRESET, characterData=kai, historyMessages=[{"role": "user", "content": "hi"}])
    assert out[-1] == sys("[Stay in character. Reply as Kai.]")


def test_recursive_character_book_with_scan_depth() -> None:
    book = {
        "scan_depth": 1,
        "recursive_scanning": True,
        "entries": [
            {"keys": ["apple"], "content": "Apples grow on the tree of life.", "insertion_order": 2},
            {"keys": ["tree of life"], "content": "The tree of life is guarded.", "insertion_order": 1},
            {"keys": ["guarded"], "content": "Guards never sleep.", "insertion_order": 3, "extensions": {"exclude_recursion": True}},
            {"keys": ["banana"], "content": "Bananas.", "insertion_order": 0},
        ],
    }
    lore = activate([parse_world_book(book, "book")], [{"role": "user", "content": "banana"}, {"role": "assistant", "content": "I like APPLE"}])
    assert lore.before == ["The tree of life is guarded.", "Apples grow on the tree of life."]
    assert lore.after == [] and lore.at_depth == []


def test_key_matching_modes() -> None:
    book = parse_world_book(
        {
            "entries": [
                {"keys": ["/dra+gon/i"], "content": "regex key"},
                {"keys": ["cat"], "content": "whole word", "extensions": {"match_whole_words": True}},
                {"keys": ["Cat"], "content": "case sensitive", "case_sensitive": True},
                {"keys": ["c.t"], "content": "use_regex", "use_regex": True},
                {"keys": ["zzz"], "secondary_keys": ["x"], "selective": True, "content": "primary missing"},
                {"keys": ["concat"], "secondary_keys": ["nope"], "selective": True, "extensions": {"selectiveLogic": 2}, "content": "not any"},
            ]
        },
        "book",
    )
    lore = activate([book], [{"role": "user", "content": "DRAAGON concatenate cot"}])
    assert lore.before == ["regex key", "use_regex", "not any"]


def test_scan_depth_zero_only_constants() -> None:
    book = parse_world_book({"scan_depth": 0, "entries": [{"keys": ["a"], "content": "A"}, {"keys": [], "constant": True, "content": "C"}]}, "b")
    assert activate([book], [{"role": "user", "content": "a"}]).before == ["C"]


def test_options_user_prompt_squash_and_missing_or_disabled_chat() -> None:
    preset = {
        "prompts": [{"identifier": "main", "content": "One."}, {"identifier": "second", "content": "Two {{user}}."}],
        "squash_system_messages": True,
        "user_prompt": "Go on, {{char}}.",
    }
    out = build(presetData=preset, characterData=card("Ann"), historyMessages=[{"role": "user", "content": "hey"}])
    assert out == [sys("One.\nTwo Alice."), {"role": "user", "content": "hey"}, {"role": "user", "content": "Go on, Ann."}]
    disabled = {"prompts": [{"identifier": "main", "content": "M"}], "prompt_order": [{"identifier": "main"}, {"identifier": "chatHistory", "enabled": False}]}
    assert build(presetData=disabled, historyMessages=[{"role": "user", "content": "hey"}]) == [sys("M")]


def test_nothing_connected_gives_the_default_main_prompt() -> None:
    assert build() == [sys("Write 's next reply in a fictional chat between  and Alice."), sys("[Start a new Chat]")]


def test_flat_v1_character_object_is_accepted() -> None:
    out = build(characterData={"name": "Flat", "description": "plain {{char}}"}, presetData={"prompts": [{"identifier": "charDescription", "marker": True}]})
    assert out == [sys("plain Flat")]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"presetData": [1]}, "presetData must be an object"),
        ({"presetData": {"prompts": {}}}, "prompts must be a list"),
        ({"presetData": {"prompts": [{"content": "x"}]}}, r"prompts\[0\] must be an object with an identifier"),
        ({"presetData": {"prompts": [{"identifier": "main", "role": "tool"}]}}, "role must be one of"),
        ({"presetData": {"prompt_order": [{"character_id": 1}]}}, "no order list"),
        ({"characterData": "Kai"}, "characterData must be an object"),
        ({"characterData": {"name": 5}}, "characterData.name must be a string"),
        ({"worldBookData": {"entries": 7}}, "entries must be a list"),
        ({"worldBookData": {"entries": [{"keys": [1], "content": "x"}]}}, r"entries\[0\]\.keys must be a list of strings"),
        ({"worldBookData": {"entries": [{"keys": ["/(/"], "content": "x"}]},
          "historyMessages": [{"role": "user", "content": "q"}]}, "invalid regular expression"),
        ({"historyMessages": [{"role": "user"}]}, "content must be a string"),
    ],
)
def test_bad_inputs(inputs: dict[str, Any], message: str) -> None:
    with pytest.raises(TavernError, match=message):
        build(**inputs)
