"""Contract: the seven tavern definitions match the reference catalogue key for key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

import comfytavern_nodes_tavern
from comfytavern_testing import make_kernel

#: The original's ``GET /api/nodes`` entries for these seven nodes (from the seed-era and the latest
#: catalogues in the reference material), kept with the tests so they run anywhere.
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TYPES = ["CharacterCardLoader", "WorldBookLoader", "PresetLoader", "RegexRuleLoader", "HistoryLoader", "ApplyRegex", "ContextBuilder"]


def _without_false_required(value: Any) -> Any:
    """The kernel omits fields at their default (``required: false``); the editor reads absent as false."""
    if isinstance(value, dict):
        return {k: _without_false_required(v) for k, v in value.items() if not (k == "required" and v is False)}
    if isinstance(value, list):
        return [_without_false_required(v) for v in value]
    return value


@pytest.mark.parametrize("catalogue", ["reference-tavern-nodes-seed-era.json", "reference-tavern-nodes-latest.json"])
def test_definitions_match_reference(tmp_path: Path, catalogue: str) -> None:
    path = FIXTURES / catalogue
    reference = {n["type"]: n for n in json.loads(path.read_text(encoding="utf-8"))}
    kernel = make_kernel(tmp_path, storage={"projects": None, "accounts": None, "runs": None})
    for node_type in TYPES:
        node = kernel.registry.current.get(f"core:{node_type}")
        assert node is not None, node_type
        ours = msgspec.to_builtins(node.definition)
        assert ours == _without_false_required(reference[node_type]), node_type


def test_pack_exports_exactly_the_seven_nodes() -> None:
    assert comfytavern_nodes_tavern.NAMESPACE == "core"
    assert sorted(n.definition.type for n in comfytavern_nodes_tavern.register_nodes()) == sorted(TYPES)
