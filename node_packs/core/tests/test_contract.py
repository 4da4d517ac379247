"""The served core definitions against the original's (so saved workflows open and run here).

The fixtures are the original's ``GET /api/nodes`` entries for the core nodes of this pack, with
display names and descriptions removed (``tests/test_node_reference.py`` compares those). Everything
a workflow or the editor's widgets depend on must match: slot keys and their order, data-flow types, flags,
match categories, widget config (defaults included), config schema and values, modes, width,
dynamic slots and the client script URL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from comfytavern_testing import make_kernel

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CORE_TYPES = {
    "GroupInput", "GroupOutput", "NodeGroup", "TextMerge", "RandomNumber", "TestWidgets",
    "StreamLogger", "StreamSuffixRelay", "MathOperation", "MatrixOperation", "CreateMessage", "MergeMessages",
}  # fmt: skip
NODE_KEYS = (
    "namespace", "category", "width", "dynamicSlots", "clientScriptUrl", "configValues", "defaultModeId",
    "modeConfigKey", "bypassBehavior", "isPreviewUnsafe", "deprecated", "experimental",
)  # fmt: skip
FLAGS = ("required", "multi", "isStream", "allowDynamicType", "hideHandle")


def _reference(name: str) -> dict[str, dict[str, Any]]:
    return {n["type"]: n for n in json.loads((FIXTURES / name).read_text(encoding="utf-8"))}


def _slot(slot: dict[str, Any]) -> dict[str, Any]:
    """What matters about a slot; absent flags are false (the wire omits defaults)."""
    out = {"dataFlowType": slot["dataFlowType"], "matchCategories": slot.get("matchCategories") or []}
    out.update({flag: bool(slot.get(flag, False)) for flag in FLAGS})
    out["config"] = slot.get("config") or {}
    out["actions"] = slot.get("actions") or []
    return out


def _slots(slots: dict[str, Any] | None) -> list[tuple[str, dict[str, Any]]]:
    return [(key, _slot(value)) for key, value in (slots or {}).items()]  # order matters


def _node(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {key: d.get(key) for key in NODE_KEYS}
    for flag in ("dynamicSlots", "isPreviewUnsafe", "deprecated", "experimental"):
        out[flag] = bool(out[flag])
    out["inputs"] = _slots(d.get("inputs"))
    out["outputs"] = _slots(d.get("outputs"))
    out["configSchema"] = _slots(d.get("configSchema"))
    out["modes"] = [
        (
            mode_id,
            mode.get("id"),
            _slots(mode.get("inputs")),
            _slots(mode.get("outputs")),
            _slots(mode.get("configSchema")),
        )
        for mode_id, mode in (d.get("modes") or {}).items()
    ]
    return out


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The exact bytes ``GET /api/nodes`` serves (the snapshot's encoded definitions)."""
    kernel = make_kernel(
        tmp_path_factory.mktemp("contract"),
        plugins_config={"enabled": ["core", "auth-local"]},
        storage={"projects": None, "accounts": None, "runs": None},
    )
    return {n["type"]: n for n in json.loads(kernel.registry.current.definitions_json) if n["namespace"] == "core"}


def test_every_core_node_is_served(served: dict[str, dict[str, Any]]) -> None:
    assert CORE_TYPES <= set(served)
    assert CORE_TYPES == set(_reference("reference-core-nodes-latest.json"))


@pytest.mark.parametrize("node_type", sorted(CORE_TYPES))
def test_definition_matches_the_original(served: dict[str, dict[str, Any]], node_type: str) -> None:
    ours, theirs = _node(served[node_type]), _node(_reference("reference-core-nodes-latest.json")[node_type])
    for key in theirs:
        assert ours[key] == theirs[key], f"{node_type}.{key} differs"


@pytest.mark.parametrize("node_type", sorted(CORE_TYPES))
def test_required_wire_fields_are_present(served: dict[str, dict[str, Any]], node_type: str) -> None:
    d = served[node_type]
    for key in ("type", "namespace", "category", "displayName", "description", "inputs", "outputs"):
        assert key in d, f"{node_type} lacks {key}"
    assert d["displayName"] and d["description"]
    assert "filePath" not in d and "execute" not in d


def _seed_slot(slot: dict[str, Any]) -> dict[str, Any]:
    """Seed-era slots in today's terms: ``STREAM`` became ``isStream`` on a typed slot."""
    config = dict(slot.get("config") or {})
    if isinstance(config.get("suggestions"), list):
        config["suggestions"] = [s["value"] if isinstance(s, dict) else s for s in config["suggestions"]]
    return {
        "stream": slot["dataFlowType"] == "STREAM" or bool(slot.get("isStream")),
        "required": bool(slot.get("required")),
        "multi": bool(slot.get("multi")),
        "config": config,
        "type": None if slot["dataFlowType"] == "STREAM" or slot.get("isStream") else slot["dataFlowType"],
    }


@pytest.mark.parametrize("node_type", sorted(_reference("reference-core-nodes-seed-era.json")))
def test_seed_era_workflows_still_fit(served: dict[str, dict[str, Any]], node_type: str) -> None:
    """Workflows saved by the seed-era editor reference the same keys with compatible slots."""
    seed = _reference("reference-core-nodes-seed-era.json")[node_type]
    ours = served[node_type]
    for side in ("inputs", "outputs"):
        assert list(ours[side]) == list(seed[side]), f"{node_type}.{side} keys differ"
        for key in seed[side]:
            assert _seed_slot(ours[side][key]) == _seed_slot(seed[side][key]), f"{node_type}.{side}.{key}"
