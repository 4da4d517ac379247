"""The five loaders: config values reach them, files resolve inside the owner's folder only."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from comfytavern_cards.testing import card_png, v2_card, v3_card
from comfytavern_nodes_tavern import loaders
from comfytavern_nodes_tavern.errors import TavernError


def run(node, ctx):  # type: ignore[no-untyped-def]
    return node.execute({}, ctx)


def test_character_card_loader_png_from_library_and_path(make_ctx, user_dir: Path) -> None:
    library = user_dir / "characters"
    library.mkdir()
    (library / "Alice.png").write_bytes(card_png([("chara", v2_card("Old")), ("ccv3", v3_card("Alice", description="d", x_custom=1))]))
    out = run(loaders.character_card_loader, make_ctx({"cardResource": "Alice.png"}))
    card = out["characterData"]
    assert card["spec"] == "chara_card_v3" and card["name"] == "Alice" and card["data"]["x_custom"] == 1
    assert card["data"]["description"] == "d" and card["description"] == "d"
    same = run(loaders.character_card_loader, make_ctx({"cardResource": "user://characters/Alice.png"}))
    assert same == out
    (user_dir / "cards").mkdir()
    (user_dir / "cards" / "Bob.json").write_text(
        json.dumps({"name": "Bob", "description": "v1", "personality": "", "scenario": "", "first_mes": "hey", "mes_example": ""})
    )
    bob = run(loaders.character_card_loader, make_ctx({"cardResource": "cards/Bob.json"}))["characterData"]
    assert bob["data"]["first_mes"] == "hey" and bob["spec_version"] == "3.0"


def test_card_library_location_follows_the_characters_settings(make_ctx, tmp_path: Path) -> None:
    folder = tmp_path / "elsewhere" / "alice" / "lib"
    folder.mkdir(parents=True)
    (folder / "Moved.json").write_text(json.dumps(v2_card("Moved")))
    ctx = make_ctx({"cardResource": "Moved.json"}, plugins={"settings": {"characters": {"root": "elsewhere", "folder": "lib"}}})
    assert run(loaders.character_card_loader, ctx)["characterData"]["name"] == "Moved"


def test_preset_world_book_history_and_rules(make_ctx, user_dir: Path) -> None:
    (user_dir / "presets").mkdir()
    (user_dir / "presets" / "p.json").write_text(json.dumps({"prompts": [{"identifier": "main", "content": "Hi"}]}))
    out = run(loaders.preset_loader, make_ctx({"presetResource": "presets/p.json"}))
    assert out == {"presetData": {"prompts": [{"identifier": "main", "content": "Hi"}]}}

    (user_dir / "world.yaml").write_text("entries:\n  - keys: [dragon]\n    content: Dragons exist.\n", encoding="utf-8")
    out = run(loaders.world_book_loader, make_ctx({"worldBookResource": "user://world.yaml"}))
    assert out == {"worldBookData": {"entries": [{"keys": ["dragon"], "content": "Dragons exist."}]}}

    chat = [
        {"user_name": "Alice", "character_name": "Bot", "chat_metadata": {}},
        {"name": "Alice", "is_user": True, "mes": "hello"},
        {"name": "Bot", "is_user": False, "is_system": True, "mes": "hidden note"},
        {"name": "Bot", "is_user": False, "mes": "hi there"},
    ]
    (user_dir / "chat.jsonl").write_text("\n".join(json.dumps(line) for line in chat))
    out = run(loaders.history_loader, make_ctx({"historyResource": "chat.jsonl"}))
    assert out == {"historyMessages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi there"}]}
    (user_dir / "h.json").write_text(json.dumps([{"role": "system", "content": "s"}, {"role": "user", "content": [{"type": "text", "text": "x"}]}]))
    assert run(loaders.history_loader, make_ctx({"historyResource": "h.json"}))["historyMessages"][1]["content"] == [{"type": "text", "text": "x"}]

    rules = [
        {"name": "r1", "pattern": "a+", "replacement": "b", "flags": "g"},
        {"scriptName": "st", "findRegex": "/Foo/i", "replaceString": "[{{match}}]", "disabled": True},
    ]
    (user_dir / "rules.json").write_text(json.dumps(rules))
    out = run(loaders.regex_rule_loader, make_ctx({"ruleResource": "rules.json"}))
    assert out == {
        "regexRules": [
            {"name": "r1", "pattern": "a+", "replacement": "b", "flags": "g", "enabled": True},
            {"name": "st", "pattern": "Foo", "replacement": "[$&]", "flags": "i", "enabled": False},
        ]
    }


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "is not set"),
        ("", "is not set"),
        ("system://sdk/config.json", "only files in your own data folder"),
        ("shared://library/x.json", "only files in your own data folder"),
        ("/etc/passwd", "absolute paths are not allowed"),
        ("../bob/secret.json", "must not be '.' or '..'"),
        ("user://../bob/secret.json", "must not be '.' or '..'"),
        ("a//b.json", "not a valid file path"),
        ("missing.json", "not found"),
        ("nul\x00.json", "not allowed"),
    ],
)
def test_bad_resource_values(make_ctx, user_dir: Path, value: object, message: str) -> None:
    with pytest.raises(TavernError, match=message):
        run(loaders.preset_loader, make_ctx({"presetResource": value}))


def test_symlink_escape_is_refused(make_ctx, user_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    os.symlink(outside, user_dir / "link.json")
    with pytest.raises(TavernError, match="escapes"):
        run(loaders.preset_loader, make_ctx({"presetResource": "link.json"}))


def test_other_users_files_are_unreachable(make_ctx, tmp_path: Path, user_dir: Path) -> None:
    bob = tmp_path / "data" / "users" / "bob"
    bob.mkdir(parents=True)
    (bob / "p.json").write_text("{}")
    with pytest.raises(TavernError, match="not found"):
        run(loaders.preset_loader, make_ctx({"presetResource": "p.json"}))


@pytest.mark.parametrize(
    ("node", "key", "filename", "content", "message"),
    [
        (loaders.preset_loader, "presetResource", "p.json", "[1]", "must contain a JSON object"),
        (loaders.preset_loader, "presetResource", "p.json", "{bad", "cannot be parsed"),
        (loaders.world_book_loader, "worldBookResource", "w.json", '{"entries": 3}', "entries must be a list"),
        (loaders.world_book_loader, "worldBookResource", "w.yaml", "a: &x [1]\nb: *x\n", "aliases are not allowed"),
        (loaders.history_loader, "historyResource", "h.json", '[{"role": "robot", "content": "x"}]', r"\[0\]\.role must be one of"),
        (loaders.regex_rule_loader, "ruleResource", "r.json", '[{"name": "x", "pattern": "("}]', "invalid regular expression"),
        (loaders.regex_rule_loader, "ruleResource", "r.json", '[{"pattern": "x"}]', "name must be a non-empty string"),
        (loaders.character_card_loader, "cardResource", "c.json", '{"nope": 1}', "not a usable character card"),
    ],
)
def test_bad_file_contents(make_ctx, user_dir: Path, node, key: str, filename: str, content: str, message: str) -> None:  # type: ignore[no-untyped-def]
    (user_dir / filename).write_text(content)
    with pytest.raises(TavernError, match=message):
        run(node, make_ctx({key: filename}))


def test_broken_png_card(make_ctx, user_dir: Path) -> None:
    (user_dir / "characters").mkdir()
    (user_dir / "characters" / "Broken.png").write_bytes(card_png([("chara", v2_card("B"))])[:30])
    with pytest.raises(TavernError, match="not a usable character card"):
        run(loaders.character_card_loader, make_ctx({"cardResource": "Broken.png"}))
