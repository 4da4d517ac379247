"""SillyTavern-style prompt assembly for chat-completion models.

The preset decides the order: a SillyTavern chat-completion preset (``prompts`` plus
``prompt_order``) is followed as SillyTavern does. Markers are filled from the character card
(``charDescription``, ``charPersonality``, ``scenario``, ``dialogueExamples``), the activated
world-book entries (``worldInfoBefore``/``worldInfoAfter``, plus entries placed at a chat depth)
and the chat history (``chatHistory``). The card's ``system_prompt`` replaces ``main`` and its
``post_history_instructions`` replace ``jailbreak`` unless empty (``{{original}}`` inserts the
preset's text), as the V2 spec says. Without a preset, SillyTavern's default order is used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import regex

from comfytavern_nodes_tavern.errors import TavernError
from comfytavern_nodes_tavern.macros import substitute
from comfytavern_nodes_tavern.messages import ROLES, parse_history
from comfytavern_nodes_tavern.worldbook import Activation, WorldBook, activate, parse_world_book

__all__ = ["DEFAULT_MAIN_PROMPT", "DEFAULT_ORDER", "build_messages"]

DEFAULT_MAIN_PROMPT = "Write {{char}}'s next reply in a fictional chat between {{char}} and {{user}}."
DEFAULT_ENHANCE = (
    "If you have more knowledge of {{char}}, add to the character's lore and personality to enhance "
    "them but keep the Character Sheet's definitions absolute."
)
#: SillyTavern's default prompt order (identifier, enabled).
DEFAULT_ORDER: tuple[tuple[str, bool], ...] = (
    ("main", True),
    ("worldInfoBefore", True),
    ("personaDescription", True),
    ("charDescription", True),
    ("charPersonality", True),
    ("scenario", True),
    ("enhanceDefinitions", False),
    ("nsfw", True),
    ("worldInfoAfter", True),
    ("dialogueExamples", True),
    ("chatHistory", True),
    ("jailbreak", True),
)
_DEFAULT_PROMPTS: dict[str, str] = {"main": DEFAULT_MAIN_PROMPT, "nsfw": "", "jailbreak": "", "enhanceDefinitions": DEFAULT_ENHANCE}
MARKERS = frozenset(
    {
        "worldInfoBefore",
        "worldInfoAfter",
        "charDescription",
        "charPersonality",
        "scenario",
        "personaDescription",
        "dialogueExamples",
        "chatHistory",
    }
)
#: SillyTavern's ``character_id`` for the global prompt order.
GLOBAL_ORDER_ID = 100001
_START = regex.compile(r"<START>", regex.IGNORECASE)


@dataclass(frozen=True)
class Preset:
    prompts: Mapping[str, Mapping[str, Any]]
    order: tuple[tuple[str, bool], ...]
    personality_format: str = "[{{char}}'s personality: {{personality}}]"
    scenario_format: str = "[Circumstances and context of the dialogue: {{scenario}}]"
    wi_format: str = "{0}"
    new_chat_prompt: str = "[Start a new Chat]"
    new_example_chat_prompt: str = "[Example Chat]"
    persona_description: str = ""
    squash_system_messages: bool = False
    user_prompt: str = ""


def _text(value: Any, where: str, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise TavernError(f"{where} must be a string")
    return value


def _order(value: Any, prompts: Mapping[str, Any]) -> tuple[tuple[str, bool], ...]:
    if value is None:
        if prompts:
            return tuple((ident, p.get("enabled", True) is not False) for ident, p in prompts.items())
        return DEFAULT_ORDER
    if not isinstance(value, list):
        raise TavernError("presetData.prompt_order must be a list")
    chosen: Any = None
    if value and all(isinstance(v, Mapping) and "identifier" in v for v in value):
        chosen = value  # a flat order list
    else:
        groups = [v for v in value if isinstance(v, Mapping) and isinstance(v.get("order"), list)]
        preferred = [g for g in groups if g.get("character_id") == GLOBAL_ORDER_ID]
        if preferred or groups:
            chosen = (preferred or groups)[0]["order"]
    if chosen is None:
        raise TavernError("presetData.prompt_order has no order list")
    out: list[tuple[str, bool]] = []
    for i, item in enumerate(chosen):
        if not isinstance(item, Mapping) or not isinstance(item.get("identifier"), str):
            raise TavernError(f"presetData.prompt_order[{i}] must be an object with an identifier")
        out.append((item["identifier"], item.get("enabled", True) is not False))
    return tuple(out)


def parse_preset(value: Any) -> Preset:
    """A SillyTavern chat-completion preset (or ``{}``/``None`` for SillyTavern's defaults)."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise TavernError("presetData must be an object")
    raw_prompts = value.get("prompts", [])
    if not isinstance(raw_prompts, list):
        raise TavernError("presetData.prompts must be a list")
    prompts: dict[str, Mapping[str, Any]] = {}
    for i, item in enumerate(raw_prompts):
        if not isinstance(item, Mapping) or not isinstance(item.get("identifier"), str):
            raise TavernError(f"presetData.prompts[{i}] must be an object with an identifier")
        _text(item.get("content"), f"presetData.prompts[{i}].content")
        if item.get("role") is not None and item.get("role") not in ROLES:
            raise TavernError(f"presetData.prompts[{i}].role must be one of {', '.join(ROLES)}")
        prompts[item["identifier"]] = item
    defaults = Preset(prompts={}, order=())
    return Preset(
        prompts=prompts,
        order=_order(value.get("prompt_order"), prompts),
        personality_format=_text(value.get("personality_format"), "presetData.personality_format", defaults.personality_format),
        scenario_format=_text(value.get("scenario_format"), "presetData.scenario_format", defaults.scenario_format),
        wi_format=_text(value.get("wi_format"), "presetData.wi_format", defaults.wi_format),
        new_chat_prompt=_text(value.get("new_chat_prompt"), "presetData.new_chat_prompt", defaults.new_chat_prompt),
        new_example_chat_prompt=_text(
            value.get("new_example_chat_prompt"), "presetData.new_example_chat_prompt", defaults.new_example_chat_prompt
        ),
        persona_description=_text(value.get("persona_description"), "presetData.persona_description"),
        squash_system_messages=bool(value.get("squash_system_messages", False)),
        user_prompt=_text(value.get("user_prompt"), "presetData.user_prompt"),
    )


def _character(value: Any) -> dict[str, Any]:
    """Card fields from a loaded card (V2/V3 ``data``) or a flat V1-style object."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TavernError("characterData must be an object (a character card)")
    raw_data = value.get("data")
    data: Mapping[str, Any] = raw_data if isinstance(raw_data, Mapping) else {}
    out: dict[str, Any] = {}
    for key in (
        "name",
        "nickname",
        "description",
        "personality",
        "scenario",
        "first_mes",
        "mes_example",
        "system_prompt",
        "post_history_instructions",
    ):
        field = data.get(key)
        if field in (None, ""):
            field = value.get(key)
        out[key] = _text(field, f"characterData.{key}")
    out["character_book"] = data.get("character_book") or value.get("character_book")
    return out


def _wi_text(preset: Preset, contents: list[str], macros: Mapping[str, str]) -> str:
    if not contents:
        return ""
    joined = substitute("\n".join(contents), macros)
    return preset.wi_format.replace("{0}", joined)


def _examples(preset: Preset, text: str) -> list[str]:
    blocks = [b.strip() for b in _START.split(text)]
    return [f"{preset.new_example_chat_prompt}\n{b}" if preset.new_example_chat_prompt else b for b in blocks if b]


def _insert_at_depth(history: list[dict[str, Any]], injections: Sequence[tuple[int, str, str]]) -> list[dict[str, Any]]:
    """Insert ``(depth, role, content)`` counting from the end (depth 0 = after the last message).

    Injections of one depth are joined per role (system, user, assistant), as SillyTavern does;
    deeper ones come first when several land at the same place.
    """
    if not injections:
        return history
    grouped: dict[int, dict[str, list[str]]] = {}
    for depth, role, content in injections:
        grouped.setdefault(max(depth, 0), {}).setdefault(role, []).append(content)
    size = len(history)
    slots: dict[int, list[dict[str, Any]]] = {}
    for depth in sorted(grouped, reverse=True):
        block = [{"role": r, "content": "\n".join(grouped[depth][r])} for r in ROLES if r in grouped[depth]]
        slots.setdefault(max(size - depth, 0), []).extend(block)
    out: list[dict[str, Any]] = []
    for i in range(size + 1):
        out.extend(slots.get(i, ()))
        if i < size:
            out.append(history[i])
    return out


def build_messages(
    preset_data: Any,
    world_book_data: Any,
    character_data: Any,
    history_messages: Any,
    *,
    user_name: str,
) -> list[dict[str, Any]]:
    """The final ``CustomMessage[]`` for an LLM request (see the module docstring)."""
    preset = parse_preset(preset_data)
    char = _character(character_data)
    char_name = char.get("nickname") or char.get("name", "")
    macros: dict[str, str] = {"char": char_name, "user": user_name, "persona": preset.persona_description}
    for key in ("description", "personality", "scenario"):
        macros[key] = substitute(char.get(key, ""), macros)
    macros["mesexamples"] = substitute(char.get("mes_example", ""), macros)

    history = parse_history(history_messages, "historyMessages")
    if not history and char.get("first_mes"):
        history = [{"role": "assistant", "content": substitute(char["first_mes"], macros)}]

    books: list[WorldBook] = []
    if world_book_data is not None and world_book_data != {}:
        books.append(parse_world_book(world_book_data, "worldBookData"))
    if char.get("character_book"):
        books.append(parse_world_book(char["character_book"], "characterData.character_book"))
    lore: Activation = activate(books, history)

    messages: list[dict[str, Any]] = []
    injections: list[tuple[int, str, str]] = []
    chat_index: int | None = None
    chat_disabled = False
    for identifier, enabled in preset.order:
        if not enabled:
            chat_disabled = chat_disabled or identifier == "chatHistory"
            continue
        prompt = preset.prompts.get(identifier, {})
        role = prompt.get("role") or "system"
        if identifier in MARKERS or prompt.get("marker"):
            texts: list[str] = []
            if identifier == "worldInfoBefore":
                texts = [_wi_text(preset, lore.before, macros)]
            elif identifier == "worldInfoAfter":
                texts = [_wi_text(preset, lore.after, macros)]
            elif identifier == "charDescription":
                texts = [macros["description"]]
            elif identifier == "charPersonality" and macros["personality"]:
                texts = [substitute(preset.personality_format, macros)]
            elif identifier == "scenario" and macros["scenario"]:
                texts = [substitute(preset.scenario_format, macros)]
            elif identifier == "personaDescription":
                texts = [substitute(preset.persona_description, macros)]
            elif identifier == "dialogueExamples":
                texts = _examples(preset, macros["mesexamples"])
            elif identifier == "chatHistory":
                if preset.new_chat_prompt:
                    messages.append({"role": "system", "content": substitute(preset.new_chat_prompt, macros)})
                chat_index = len(messages)
                continue
            messages.extend({"role": "system", "content": t} for t in texts if t.strip())
            continue
        original = _text(prompt.get("content"), f"presetData prompt {identifier!r}", _DEFAULT_PROMPTS.get(identifier, ""))
        override_key = {"main": "system_prompt", "jailbreak": "post_history_instructions"}.get(identifier)
        content = original
        if override_key and char.get(override_key, "").strip():
            content = char[override_key].replace("{{original}}", original)
        content = substitute(content, macros).strip()
        if not content:
            continue
        if prompt.get("injection_position") == 1:
            depth = prompt.get("injection_depth", 4)
            injections.append((int(depth) if isinstance(depth, (int, float)) else 4, role, content))
        else:
            messages.append({"role": role, "content": content})

    chat = _insert_at_depth(
        history,
        [*injections, *((d, r, substitute(c, macros)) for d, r, c in lore.at_depth)],
    )
    if not chat_disabled:
        # A preset without a chatHistory marker still gets the chat, at the end.
        at = len(messages) if chat_index is None else chat_index
        messages[at:at] = chat
    if preset.user_prompt.strip():
        messages.append({"role": "user", "content": substitute(preset.user_prompt, macros)})
    if preset.squash_system_messages:
        messages = _squash(messages)
    return messages


def _squash(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for message in messages:
        previous = out[-1] if out else None
        if (
            previous is not None
            and previous["role"] == "system" == message["role"]
            and isinstance(previous["content"], str)
            and isinstance(message["content"], str)
        ):
            out[-1] = {"role": "system", "content": f"{previous['content']}\n{message['content']}"}
        else:
            out.append(message)
    return out
