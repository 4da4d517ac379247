"""Core tavern nodes: SillyTavern-compatible loaders and prompt assembly.

Nodes (namespace ``core``): ``CharacterCardLoader``, ``WorldBookLoader``, ``PresetLoader``,
``RegexRuleLoader``, ``HistoryLoader`` (category ``Loaders``), ``ApplyRegex`` and
``ContextBuilder`` (category ``Processors``). See ``docs/nodes-tavern.md``.
"""

from __future__ import annotations

from comfytavern import Node, hookimpl
from comfytavern.services import CONFIG, ServiceUse, uses
from comfytavern_nodes_tavern.loaders import (
    character_card_loader,
    history_loader,
    preset_loader,
    regex_rule_loader,
    world_book_loader,
)
from comfytavern_nodes_tavern.processors import apply_regex, context_builder

__all__ = ["NAMESPACE", "NODES", "register_nodes", "register_services"]

NAMESPACE = "core"

NODES: tuple[Node, ...] = (
    apply_regex,
    context_builder,
    preset_loader,
    world_book_loader,
    character_card_loader,
    history_loader,
    regex_rule_loader,
)


@hookimpl
def register_nodes() -> list[Node]:
    return list(NODES)


@hookimpl
def register_services() -> list[ServiceUse]:
    return [uses(CONFIG)]
