"""Every built-in node, as served, against the original's ``GET /api/nodes`` (both eras).

In the native dialect (``2025-10``) every field of the later reference must match: display names,
slot labels, descriptions, widget configs, flags, modes. In the seed dialect every node of the
seed-era reference must match that era's values (``STREAM`` slots, plain suggestions). Our
additions are listed below and must be documented; nothing else may differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from comfytavern_testing import NO_STORAGE, client_for, make_kernel

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs"

#: Slots this server adds to a node of the original (path -> the docs page that documents it).
ADDITIONS = {
    "APISettings.inputs.credential_service": "nodes-llm.md",
    "GenericLlmRequest.inputs.api_settings": "nodes-llm.md",
}
#: Seed-era nodes served in their later form in both dialects (a different node at the seed).
SEED_LATER_FORM = {"GenericLlmRequest": "nodes-llm.md"}


def _reference(name: str) -> dict[str, dict[str, Any]]:
    return {d["type"]: d for d in json.loads((HERE / "reference" / name).read_text(encoding="utf-8"))}


def _empty(value: Any) -> bool:
    return value in (False, None, {}, [])


def mismatches(ours: Any, theirs: Any, path: str) -> list[str]:
    """Differences; an absent key equals ``false``/``{}``/``[]`` (the wire omits defaults)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        out: list[str] = []
        for key in theirs.keys() | ours.keys():
            sub = f"{path}.{key}"
            if key not in ours:
                if not _empty(theirs[key]):
                    out.append(f"{sub}: missing (reference {theirs[key]!r:.120})")
            elif key not in theirs:
                if not _empty(ours[key]) and sub not in ADDITIONS:
                    out.append(f"{sub}: not in the reference ({ours[key]!r:.120})")
            else:
                out += mismatches(ours[key], theirs[key], sub)
        return out
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        return [m for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) for m in mismatches(a, b, f"{path}[{i}]")]
    return [] if ours == theirs else [f"{path}: ours {ours!r:.120}, reference {theirs!r:.120}"]


def _slot_order(ours: dict[str, Any], theirs: dict[str, Any], name: str) -> list[str]:
    out = []
    for group in ("inputs", "outputs", "configSchema"):
        mine = [k for k in (ours.get(group) or {}) if f"{name}.{group}.{k}" not in ADDITIONS]
        if mine != list(theirs.get(group) or {}):
            out.append(f"{name}.{group}: slot order {mine} != {list(theirs.get(group) or {})}")
    return out


def _served(tmp_path: Path, dialect: str) -> dict[str, dict[str, Any]]:
    kernel = make_kernel(tmp_path, storage=NO_STORAGE, editor={"dialect": dialect})
    with client_for(kernel) as client:
        listing = client.get("/api/nodes").json()
    return {d["type"]: d for d in listing if d["namespace"] == "core"}


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return _served(tmp_path_factory.mktemp("native"), "2025-10")


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return _served(tmp_path_factory.mktemp("seed"), "seed-2025-06")


def test_the_built_in_nodes_are_the_references() -> None:
    latest, seed_era = _reference("nodes-latest.json"), _reference("nodes-seed-era.json")
    assert set(seed_era) <= set(latest)
    assert len(latest) == 25 and len(seed_era) == 21


@pytest.mark.parametrize("node_type", sorted(_reference("nodes-latest.json")))
def test_native_definition_matches_the_later_reference(native: dict[str, dict[str, Any]], node_type: str) -> None:
    theirs = _reference("nodes-latest.json")[node_type]
    assert node_type in native, f"{node_type} is not served"
    ours = native[node_type]
    problems = mismatches(ours, theirs, node_type) + _slot_order(ours, theirs, node_type)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("node_type", sorted(_reference("nodes-seed-era.json")))
def test_seed_definition_matches_the_seed_era_reference(seed: dict[str, dict[str, Any]], node_type: str) -> None:
    theirs = _reference("nodes-seed-era.json")[node_type]
    ours = seed[node_type]
    if node_type in SEED_LATER_FORM:
        # Served in its later form: at least the identity and every later slot's seed translation.
        assert (ours["displayName"], ours["category"]) == (theirs["displayName"], theirs["category"])
        assert "isStream" not in json.dumps(ours)
        return
    problems = mismatches(ours, theirs, node_type) + _slot_order(ours, theirs, node_type)
    assert not problems, "\n".join(problems)


def test_every_served_core_node_is_in_the_reference(native: dict[str, dict[str, Any]]) -> None:
    assert set(native) == set(_reference("nodes-latest.json"))


def test_additions_are_served_and_documented(native: dict[str, dict[str, Any]]) -> None:
    for path, page in {**ADDITIONS, **SEED_LATER_FORM}.items():
        node_type, *rest = path.split(".")
        value: Any = native[node_type]
        for key in rest:
            value = value[key]
        text = (DOCS / page).read_text(encoding="utf-8")
        assert f"`core:{node_type}`" in text and (not rest or f"`{rest[-1]}`" in text), f"{path} is not documented in {page}"
        assert "addition" in text.lower(), f"{page} does not list additions"


def test_mismatches_reports_what_differs() -> None:
    assert mismatches({"a": 1, "b": {"c": "x"}}, {"a": 1, "b": {"c": "x"}, "required": False}, "n") == []
    assert mismatches({"a": 2}, {"a": 1}, "n") == ["n.a: ours 2, reference 1"]
    assert mismatches({}, {"a": "label"}, "n") == ["n.a: missing (reference 'label')"]
    assert mismatches({"x": True}, {}, "n") == ["n.x: not in the reference (True)"]
